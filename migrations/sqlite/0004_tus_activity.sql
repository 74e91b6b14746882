-- When a resumable upload of the transfer was last terminated (tus DELETE): for 24 h after, the sender's
-- expired token is still accepted to start it again (spec 4.6).
ALTER TABLE file_transfers ADD COLUMN tus_activity TEXT;
