-- Small files kept in the database, committed with the transition that stores them.
CREATE TABLE inline_files (
    file_transfer_id TEXT PRIMARY KEY NOT NULL REFERENCES file_transfers (id),
    data BLOB NOT NULL
);
