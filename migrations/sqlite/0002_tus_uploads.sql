-- Resumable (tus) upload sessions: the durable offset of each transfer's upload in progress.
CREATE TABLE tus_uploads (
    file_transfer_id  TEXT PRIMARY KEY REFERENCES file_transfers(id),
    length            INTEGER,            -- NULL while deferred (creation-defer-length)
    "offset"          INTEGER NOT NULL,   -- bytes durable on disk
    updated           TEXT NOT NULL
);
