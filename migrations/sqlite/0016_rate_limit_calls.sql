-- Calls counted by a rolling-window rate limit (the daily summary's), kept here so every node counts
-- the same calls. Calls older than the window are removed as new ones are counted.
CREATE TABLE rate_limit_calls (
    client   TEXT NOT NULL,
    at_us    INTEGER NOT NULL
);
CREATE INDEX rate_limit_calls_by_client ON rate_limit_calls (client, at_us);
CREATE INDEX rate_limit_calls_by_age ON rate_limit_calls (at_us);
