-- The current grant of each upload's lease (part '' for a transfer's own upload): one holder at a time,
-- until `expires_us` on the database's clock (microseconds since the epoch). A released grant's row is
-- removed; an expired one stays until another holder takes the upload over.
CREATE TABLE upload_leases (
    file_transfer_id  TEXT NOT NULL,
    part              TEXT NOT NULL DEFAULT '',
    holder            TEXT NOT NULL,
    token             INTEGER NOT NULL,
    expires_us        INTEGER NOT NULL,
    stop_requested    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (file_transfer_id, part)
);
-- The last fencing token handed out: every grant takes the next, so none is ever handed out twice.
CREATE TABLE lease_counter (last INTEGER NOT NULL);
INSERT INTO lease_counter (last) VALUES (0);
