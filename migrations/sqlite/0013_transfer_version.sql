-- Every committed change moves a transfer's version on by one; a change commits only from the version
-- it was computed on, so two nodes deciding from one state cannot both commit.
ALTER TABLE file_transfers ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
