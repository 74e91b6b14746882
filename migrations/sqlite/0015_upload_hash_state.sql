-- The hashes' state (MD5 and SHA-256) after an upload's durable offset, written with the offset, so an
-- upload resumed on a fresh process continues its hashes without reading its stored bytes back. The
-- bytes begin with a format tag; NULL (or a tag this build does not know) means: read the prefix back.
ALTER TABLE tus_uploads ADD COLUMN hash_state BLOB;
