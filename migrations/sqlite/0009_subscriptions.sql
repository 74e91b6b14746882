-- Event subscriptions and their deliveries (claim/ack per subscription). Times are microseconds since
-- the epoch.

-- Events not yet routed to subscriptions: a small table of their sequence numbers, so routing never
-- rewrites the outbox's rows. Events stored before subscriptions existed count as routed.
CREATE TABLE outbox_unrouted (seq INTEGER PRIMARY KEY);

CREATE TABLE subscriptions (
    id                          INTEGER PRIMARY KEY AUTOINCREMENT,
    end_point                   TEXT NOT NULL,
    source_filter               TEXT,
    resource_filter             TEXT NOT NULL,
    subject_filter              TEXT,
    alternative_subject_filter  TEXT,
    type_filter                 TEXT,
    consumer                    TEXT NOT NULL,
    created_by                  TEXT NOT NULL,
    created                     INTEGER NOT NULL,
    secret                      TEXT NOT NULL,
    previous_secret             TEXT,
    previous_secret_until       INTEGER,
    validated                   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX subscriptions_by_consumer ON subscriptions (consumer, id);

-- state: 0 pending, 1 delivered, 2 dead-lettered.
CREATE TABLE deliveries (
    subscription_id   INTEGER NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    seq               INTEGER NOT NULL REFERENCES outbox (seq),
    file_transfer_id  TEXT NOT NULL,
    state             INTEGER NOT NULL DEFAULT 0,
    due_at            INTEGER NOT NULL,
    lease_owner       TEXT,
    lease_until       INTEGER,
    attempts          INTEGER NOT NULL DEFAULT 0,
    first_attempt     INTEGER,
    last_attempt      INTEGER,
    last_status       INTEGER,
    last_latency_ms   INTEGER,
    last_error        TEXT,
    PRIMARY KEY (subscription_id, seq)
) WITHOUT ROWID;
-- A transfer's pending deliveries in order: the head is the only one claimable.
CREATE INDEX deliveries_pending ON deliveries (subscription_id, file_transfer_id, seq) WHERE state = 0;
-- The few dead-lettered deliveries, counted for /metrics.
CREATE INDEX deliveries_dead ON deliveries (subscription_id) WHERE state = 2;
