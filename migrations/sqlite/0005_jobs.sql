-- Durable jobs (spec 7.2): one row per (kind, subject). Times are microseconds since the epoch, so
-- they order as numbers. `version` changes on every schedule, tying a completion to what was claimed
-- (indexed: each schedule takes the highest version plus one).
CREATE TABLE jobs (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    last_error TEXT,
    PRIMARY KEY (kind, subject)
);
CREATE INDEX jobs_due ON jobs (due_at);
CREATE INDEX jobs_version ON jobs (version);
-- The few jobs held by a claimer, for the time the next one becomes claimable.
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE lease_until IS NOT NULL;
