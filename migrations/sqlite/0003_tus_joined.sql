-- 1 for the row of an upload joined from parts (tus concatenation), so a check resumed after a restart
-- knows the path it is on (a joined upload never announces `uploadprocessing`).
ALTER TABLE tus_uploads ADD COLUMN joined INTEGER NOT NULL DEFAULT 0;
