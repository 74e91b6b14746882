-- Resumable (tus) uploads in progress: the durable offset of each transfer's upload, or of each part
-- of an upload sent as parallel pieces (tus concatenation). `part` is '' for the transfer's own upload.
CREATE TABLE tus_uploads (
    file_transfer_id  TEXT NOT NULL REFERENCES file_transfers(id),
    part              TEXT NOT NULL DEFAULT '',
    length            INTEGER,            -- NULL while deferred (creation-defer-length)
    "offset"          INTEGER NOT NULL,   -- bytes durable on disk
    updated           TEXT NOT NULL,
    PRIMARY KEY (file_transfer_id, part)
);
