-- The last bytes before an upload's durable offset, when the blob store keeps them in a part too small
-- to be any part but an object's last (an object store's minimum part size): written with the offset,
-- written again at the head of the next request's first part. NULL when nothing is staged.
ALTER TABLE tus_uploads ADD COLUMN staged BLOB;
