//! The metadata port on SQLite: transfers, their histories, search, service owners and resources.

use super::search::search_statement;
use super::writes::{apply_change, insert_transfer};
use super::{failure, recipient_status_of, status_of, ts, SqliteStore};
use crate::db::*;
use broker_actors::ports::{MetadataStore, TransferChange, TransferRecord};
use broker_actors::state::{Phase, StoredFile, TransferState};
use broker_protocol::time;
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

fn duration_us(d: Option<Duration>) -> Option<i64> {
    d.and_then(|d| d.num_microseconds())
}

fn resource_from_row(row: &rusqlite::Row) -> rusqlite::Result<ResourceRow> {
    Ok(ResourceRow {
        id: row.get("id")?,
        service_owner_id: row.get("service_owner_id")?,
        max_file_transfer_size: row.get("max_file_transfer_size")?,
        file_transfer_time_to_live: row
            .get::<_, Option<i64>>("file_transfer_time_to_live_us")?
            .map(Duration::microseconds),
        purge_after_all_confirmed: row.get("purge_after_all_confirmed")?,
        purge_grace_period: row
            .get::<_, Option<i64>>("purge_grace_period_us")?
            .map(Duration::microseconds),
        use_manifest_file_shim: row.get("use_manifest_file_shim")?,
        external_service_code_legacy: row.get("external_service_code_legacy")?,
        external_service_edition_code_legacy: row.get("external_service_edition_code_legacy")?,
        required_party: row.get("required_party")?,
    })
}

/// A recipient's row: the organisation, its status code and when that changed.
type RecipientColumns = (String, i64, String);

/// A transfer's recipients in the order they were named.
fn recipients(conn: &Connection, id: &str) -> Result<Vec<RecipientColumns>, StoreError> {
    conn.prepare_cached(
        "SELECT recipient, status, status_changed FROM recipients WHERE file_transfer_id = ? ORDER BY position",
    )
    .and_then(|mut s| {
        s.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(failure)
}

/// One page of a history table: `sql` takes the transfer id, the `seq` to start after and the page
/// size, and yields `seq`, then three more columns.
type HistoryRow = (i64, Value, Value, String);

fn history_page(
    conn: &Connection,
    sql: &str,
    id: Uuid,
    after: i64,
    limit: u32,
) -> Result<Vec<HistoryRow>, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(params![id.to_string(), after, limit], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(failure)
}

fn integer(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Integer(i) => Ok(*i),
        other => Err(failure(format!("expected an integer, found {other:?}"))),
    }
}

fn text(v: Value) -> Result<Option<String>, StoreError> {
    match v {
        Value::Null => Ok(None),
        Value::Text(t) => Ok(Some(t)),
        other => Err(failure(format!("expected text, found {other:?}"))),
    }
}

/// The columns of `load_transfer`'s query, in order.
struct LoadedRow {
    resource_id: String,
    sender: String,
    status: i64,
    size: i64,
    md5: Option<String>,
    sha256: Option<String>,
    declared_md5: Option<String>,
    use_virus_scan: bool,
    expiration_time: String,
    purge_after_all_confirmed: Option<bool>,
    purge_grace_period_us: Option<i64>,
    version: i64,
}

/// The columns of `transfer`'s query, in order.
type ViewRow = (
    (
        String,
        String,
        Option<String>,
        String,
        String,
        Option<String>,
    ),
    (Option<String>, bool, i64, i64, Option<String>, String),
    (String, String, Option<String>, String),
);

impl SqliteStore {
    /// A transfer's row read by `sql` (its one parameter the transfer's id) with its recipients, in
    /// one read; None when there is no such transfer.
    fn transfer_row<T>(
        &self,
        sql: &str,
        id: &str,
        columns: impl FnOnce(&rusqlite::Row) -> rusqlite::Result<T>,
    ) -> Result<Option<(T, Vec<RecipientColumns>)>, StoreError> {
        self.read(|conn| {
            let row = conn
                .prepare_cached(sql)
                .and_then(|mut s| s.query_row(params![id], columns).optional())
                .map_err(failure)?;
            row.map(|row| Ok((row, recipients(conn, id)?))).transpose()
        })
    }
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn load_transfer(&self, id: Uuid) -> Result<Option<TransferRecord>, StoreError> {
        let key = id.to_string();
        let found = self.transfer_row(
            "SELECT f.resource_id, f.sender, f.status, f.size, f.checksum, f.sha256, f.declared_checksum,
                            f.use_virus_scan, f.expiration_time, r.purge_after_all_confirmed, r.purge_grace_period_us,
                            f.version
                     FROM file_transfers f JOIN resources r ON r.id = f.resource_id WHERE f.id = ?",
            &key,
            |r| {
                Ok(LoadedRow {
                    resource_id: r.get(0)?,
                    sender: r.get(1)?,
                    status: r.get(2)?,
                    size: r.get(3)?,
                    md5: r.get(4)?,
                    sha256: r.get(5)?,
                    declared_md5: r.get(6)?,
                    use_virus_scan: r.get(7)?,
                    expiration_time: r.get(8)?,
                    purge_after_all_confirmed: r.get(9)?,
                    purge_grace_period_us: r.get(10)?,
                    version: r.get(11)?,
                })
            },
        )?;
        let Some((row, recipient_rows)) = found else {
            return Ok(None);
        };
        let stored = || StoredFile {
            size: row.size as u64,
            md5: row.md5.clone().unwrap_or_default(),
            sha256: row.sha256.clone().unwrap_or_default(),
        };
        let phase = match status_of(row.status)? {
            FileTransferStatus::Initialized => Phase::Initialized,
            FileTransferStatus::UploadStarted => Phase::UploadStarted,
            // Without its hashes the file is still being verified in the background.
            FileTransferStatus::UploadProcessing if row.sha256.is_none() => Phase::Verifying,
            FileTransferStatus::UploadProcessing => Phase::UploadProcessing(stored()),
            FileTransferStatus::Published => Phase::Published(stored()),
            FileTransferStatus::AllConfirmedDownloaded => Phase::AllConfirmedDownloaded(stored()),
            FileTransferStatus::Purged => Phase::Purged,
            FileTransferStatus::Failed => Phase::Failed,
            FileTransferStatus::Cancelled => Phase::Cancelled,
        };
        let recipients = recipient_rows
            .into_iter()
            .map(|(org, status, _)| Ok((org, recipient_status_of(status)?)))
            .collect::<Result<_, StoreError>>()?;
        let grace = row.purge_grace_period_us.map(Duration::microseconds);
        Ok(Some(TransferRecord {
            id,
            resource_id: row.resource_id,
            sender: row.sender,
            state: TransferState {
                phase,
                recipients,
                declared_md5: row.declared_md5,
                use_virus_scan: row.use_virus_scan,
                purge_after_all_confirmed: row.purge_after_all_confirmed.unwrap_or(true),
            },
            purge_grace_period: grace.unwrap_or(Duration::hours(DEFAULT_GRACE_PERIOD_HOURS)),
            expiration_time: ts(&row.expiration_time)?,
            version: row.version as u64,
        }))
    }

    async fn commit_change(&self, change: TransferChange) -> Result<Option<u64>, StoreError> {
        let id = change.id;
        // A small file held for this transfer is stored by the transition that stores its file.
        let inline = change
            .stored_file
            .as_ref()
            .and_then(|_| self.staged.get(id));
        let storing = inline.is_some();
        let began = self
            .write(move |conn| apply_change(conn, change, inline))
            .await?;
        if storing {
            self.staged.remove(id);
        }
        Ok(began)
    }

    async fn health(&self) -> Result<(), StoreError> {
        let select_one = |conn: &Connection| {
            conn.prepare_cached("SELECT 1")
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                .map(|_| ())
                .map_err(failure)
        };
        self.read(select_one)?;
        // The writer thread must answer too, or every write would fail while reads still work.
        self.write(select_one).await
    }

    async fn create_service_owner(
        &self,
        id: &str,
        name: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, name, at) = (id.to_string(), name.to_string(), time::format(&at));
        self.write(move |conn| {
            let inserted = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO service_owners (id, name, created) VALUES (?, ?, ?)",
                )
                .and_then(|mut s| s.execute(params![id, name, at]))
                .map_err(failure)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn service_owner(&self, id: &str) -> Result<Option<ServiceOwnerRow>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT id, name FROM service_owners WHERE id = ?")
                .and_then(|mut s| {
                    s.query_row(params![id], |r| {
                        Ok(ServiceOwnerRow {
                            id: r.get(0)?,
                            name: r.get(1)?,
                        })
                    })
                    .optional()
                })
                .map_err(failure)
        })
    }

    async fn resource(&self, id: &str) -> Result<Option<ResourceRow>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT * FROM resources WHERE id = ?")
                .and_then(|mut s| s.query_row(params![id], resource_from_row).optional())
                .map_err(failure)
        })
    }

    async fn save_resource(&self, r: ResourceRow, at: Timestamp) -> Result<bool, StoreError> {
        let at = time::format(&at);
        self.write(move |conn| {
            let updated = conn
                .prepare_cached(
                    "INSERT INTO resources (id, service_owner_id, max_file_transfer_size, file_transfer_time_to_live_us,
                        purge_after_all_confirmed, purge_grace_period_us, use_manifest_file_shim,
                        external_service_code_legacy, external_service_edition_code_legacy, required_party, created)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT(id) DO UPDATE SET
                        max_file_transfer_size = excluded.max_file_transfer_size,
                        file_transfer_time_to_live_us = excluded.file_transfer_time_to_live_us,
                        purge_after_all_confirmed = excluded.purge_after_all_confirmed,
                        purge_grace_period_us = excluded.purge_grace_period_us,
                        use_manifest_file_shim = excluded.use_manifest_file_shim,
                        external_service_code_legacy = excluded.external_service_code_legacy,
                        external_service_edition_code_legacy = excluded.external_service_edition_code_legacy,
                        required_party = excluded.required_party
                     WHERE resources.service_owner_id = excluded.service_owner_id",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        r.id,
                        r.service_owner_id,
                        r.max_file_transfer_size,
                        duration_us(r.file_transfer_time_to_live),
                        r.purge_after_all_confirmed,
                        duration_us(r.purge_grace_period),
                        r.use_manifest_file_shim,
                        r.external_service_code_legacy,
                        r.external_service_edition_code_legacy,
                        r.required_party,
                        at
                    ])
                })
                .map_err(failure)?;
            Ok(updated == 1)
        })
        .await
    }

    async fn create_transfer(
        &self,
        t: NewTransfer,
        events: Vec<CloudEvent>,
        jobs: Vec<(JobKey, Timestamp)>,
    ) -> Result<Created, StoreError> {
        let created = self
            .write(move |conn| insert_transfer(conn, t, events, jobs))
            .await?;
        Ok(created)
    }

    async fn transfer(&self, id: Uuid) -> Result<Option<TransferView>, StoreError> {
        let key = id.to_string();
        let found = self.transfer_row(
            "SELECT resource_id, file_name, senders_reference, sender, sender_org, checksum, sha256, use_virus_scan,
                            size, status, status_text, status_changed, created, expiration_time, published, property_list
                     FROM file_transfers WHERE id = ?",
            &key,
            |r| -> rusqlite::Result<ViewRow> {
                Ok((
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
                    (r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?),
                    (r.get(12)?, r.get(13)?, r.get(14)?, r.get(15)?),
                ))
            },
        )?;
        let Some((row, recipient_rows)) = found else {
            return Ok(None);
        };
        let (
            (resource_id, file_name, senders_reference, sender, sender_org, checksum),
            (sha256, use_virus_scan, size, status, status_text, status_changed),
            (created, expiration_time, published, property_list),
        ) = row;
        Ok(Some(TransferView {
            id,
            resource_id,
            file_name,
            senders_reference,
            sender,
            sender_org,
            checksum,
            sha256,
            use_virus_scan,
            size,
            status: status_of(status)?,
            status_text,
            status_changed: ts(&status_changed)?,
            created: ts(&created)?,
            expiration_time: ts(&expiration_time)?,
            published: published.as_deref().map(ts).transpose()?,
            property_list: serde_json::from_str(&property_list).map_err(failure)?,
            recipients: recipient_rows
                .into_iter()
                .map(|(recipient, status, changed)| {
                    Ok(RecipientRow {
                        recipient,
                        status: recipient_status_of(status)?,
                        changed: ts(&changed)?,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        }))
    }

    async fn idempotent_transfer(
        &self,
        sender_org: &str,
        key: &str,
        since: Timestamp,
    ) -> Result<Option<(Uuid, Option<String>)>, StoreError> {
        let row = self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, idempotency_hash FROM file_transfers
                 WHERE sender_org = ? AND idempotency_key = ? AND created > ? ORDER BY created DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![sender_org, key, time::format(&since)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .optional()
            })
            .map_err(failure)
        })?;
        row.map(|(id, hash)| Ok((id.parse().map_err(failure)?, hash)))
            .transpose()
    }

    async fn status_history(
        &self,
        id: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, FileTransferStatusEntry)>, StoreError> {
        let rows = self.read(|conn| {
            history_page(
                conn,
                "SELECT seq, status, text, changed FROM file_transfer_status_history
                 WHERE file_transfer_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                id,
                after,
                limit,
            )
        })?;
        rows.into_iter()
            .map(|(seq, status, status_text, changed)| {
                let status = status_of(integer(&status)?)?;
                Ok((
                    seq,
                    FileTransferStatusEntry {
                        file_transfer_status: status,
                        file_transfer_status_text: text(status_text)?
                            .unwrap_or_else(|| status.default_text().to_string()),
                        file_transfer_status_changed: ts(&changed)?,
                    },
                ))
            })
            .collect()
    }

    async fn recipient_history(
        &self,
        id: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, RecipientStatusEntry)>, StoreError> {
        let rows = self.read(|conn| {
            history_page(
                conn,
                "SELECT seq, recipient, status, changed FROM recipient_status_history
                 WHERE file_transfer_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                id,
                after,
                limit,
            )
        })?;
        rows.into_iter()
            .map(|(seq, recipient, status, changed)| {
                let status = recipient_status_of(integer(&status)?)?;
                Ok((
                    seq,
                    RecipientStatusEntry {
                        recipient: text(recipient)?.unwrap_or_default(),
                        recipient_file_transfer_status_code: status,
                        recipient_file_transfer_status_text: status.text().to_string(),
                        recipient_file_transfer_status_changed: ts(&changed)?,
                    },
                ))
            })
            .collect()
    }

    async fn transfer_counts(&self) -> Result<Vec<(FileTransferStatus, u64)>, StoreError> {
        self.read(super::search::transfer_counts)
    }

    async fn search(&self, q: &SearchQuery) -> Result<Vec<Uuid>, StoreError> {
        let (sql, binds) = search_statement(q);
        let ids = self.read(|conn| {
            conn.prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_map(rusqlite::params_from_iter(binds), |r| r.get::<_, String>(0))?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(failure)
        })?;
        ids.into_iter()
            .map(|id| id.parse().map_err(failure))
            .collect()
    }
}
