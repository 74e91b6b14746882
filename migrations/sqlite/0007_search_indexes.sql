-- Search walks only the transfers of the resource it names, in its sort order: by the time the
-- filtered status was entered, or by creation when no status is given. Without these a search
-- read every transfer ever made, and its time grew with the history.
CREATE INDEX file_transfers_by_resource_status ON file_transfers(resource_id, status, status_changed);
CREATE INDEX file_transfers_by_resource ON file_transfers(resource_id, created);
