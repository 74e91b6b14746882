-- Broker's metadata. Timestamps are RFC 3339 text in UTC with microseconds, so they sort as text.
-- Status and recipient histories are append-only; the current values are denormalised for search.

CREATE TABLE service_owners (
    id       TEXT PRIMARY KEY,          -- 0192:NNNNNNNNN
    name     TEXT NOT NULL,
    created  TEXT NOT NULL
);

CREATE TABLE resources (
    id                                    TEXT PRIMARY KEY,
    service_owner_id                      TEXT NOT NULL REFERENCES service_owners(id),
    max_file_transfer_size                INTEGER,
    file_transfer_time_to_live_us         INTEGER,
    purge_after_all_confirmed             INTEGER,
    purge_grace_period_us                 INTEGER,
    use_manifest_file_shim                INTEGER,
    external_service_code_legacy          TEXT,
    external_service_edition_code_legacy  INTEGER,
    required_party                        TEXT,
    created                               TEXT NOT NULL
);

CREATE TABLE file_transfers (
    id                   TEXT PRIMARY KEY,
    resource_id          TEXT NOT NULL REFERENCES resources(id),
    file_name            TEXT NOT NULL,
    senders_reference    TEXT,
    sender               TEXT NOT NULL,      -- as given
    sender_org           TEXT NOT NULL,      -- normalised 0192:NNN
    declared_checksum    TEXT,
    checksum             TEXT,
    sha256               TEXT,
    use_virus_scan       INTEGER NOT NULL,
    size                 INTEGER NOT NULL DEFAULT 0,
    status               INTEGER NOT NULL,
    status_text          TEXT,
    status_changed       TEXT NOT NULL,
    created              TEXT NOT NULL,
    expiration_time      TEXT NOT NULL,
    published            TEXT,
    purge_at             TEXT,
    property_list        TEXT NOT NULL,      -- JSON object
    idempotency_key      TEXT,
    idempotency_hash     TEXT
);
CREATE INDEX file_transfers_by_sender ON file_transfers(sender_org, resource_id, created);
CREATE INDEX file_transfers_by_idempotency ON file_transfers(sender_org, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX file_transfers_by_purge ON file_transfers(purge_at) WHERE purge_at IS NOT NULL;
CREATE INDEX file_transfers_by_expiry ON file_transfers(expiration_time);

CREATE TABLE file_transfer_status_history (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    file_transfer_id  TEXT NOT NULL REFERENCES file_transfers(id),
    status            INTEGER NOT NULL,
    text              TEXT,
    changed           TEXT NOT NULL
);
CREATE INDEX status_history_by_transfer ON file_transfer_status_history(file_transfer_id, seq);

CREATE TABLE recipients (
    file_transfer_id  TEXT NOT NULL REFERENCES file_transfers(id),
    recipient         TEXT NOT NULL,        -- 0192:NNN
    position          INTEGER NOT NULL,
    status            INTEGER NOT NULL,     -- highest reached
    status_changed    TEXT NOT NULL,        -- latest event
    PRIMARY KEY (file_transfer_id, recipient)
);
CREATE INDEX recipients_by_actor ON recipients(recipient, status);

CREATE TABLE recipient_status_history (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    file_transfer_id  TEXT NOT NULL REFERENCES file_transfers(id),
    recipient         TEXT NOT NULL,
    status            INTEGER NOT NULL,
    changed           TEXT NOT NULL
);
CREATE INDEX recipient_history_by_transfer ON recipient_status_history(file_transfer_id, seq);

-- Durable outbox: written in the same transaction as the change that causes each event.
CREATE TABLE outbox (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    file_transfer_id  TEXT NOT NULL,
    event             TEXT NOT NULL,
    created           TEXT NOT NULL
);
