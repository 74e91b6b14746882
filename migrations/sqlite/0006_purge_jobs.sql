-- Purges are durable jobs now (table `jobs`); the column that held the purge time was never read.
DROP INDEX file_transfers_by_purge;
ALTER TABLE file_transfers DROP COLUMN purge_at;
