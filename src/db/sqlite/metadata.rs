//! The metadata port on SQLite: transfers, their histories, search, service owners and resources.

use super::writes::{apply_change, insert_transfer};
use super::{failure, recipient_status_of, status_of, ts, SqliteStore};
use crate::db::*;
use broker_actors::ports::{MetadataStore, TransferChange, TransferRecord};
use broker_actors::state::{Phase, StoredFile, TransferState};
use broker_protocol::time;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row};

fn duration_us(d: Option<Duration>) -> Option<i64> {
    d.and_then(|d| d.num_microseconds())
}

fn resource_from_row(row: &SqliteRow) -> ResourceRow {
    ResourceRow {
        id: row.get("id"),
        service_owner_id: row.get("service_owner_id"),
        max_file_transfer_size: row.get("max_file_transfer_size"),
        file_transfer_time_to_live: row
            .get::<Option<i64>, _>("file_transfer_time_to_live_us")
            .map(Duration::microseconds),
        purge_after_all_confirmed: row.get("purge_after_all_confirmed"),
        purge_grace_period: row
            .get::<Option<i64>, _>("purge_grace_period_us")
            .map(Duration::microseconds),
        use_manifest_file_shim: row.get("use_manifest_file_shim"),
        external_service_code_legacy: row.get("external_service_code_legacy"),
        external_service_edition_code_legacy: row.get("external_service_edition_code_legacy"),
        required_party: row.get("required_party"),
    }
}

impl SqliteStore {
    /// One page of a history table: `sql` takes the transfer id, the `seq` to start after and the
    /// page size.
    async fn history_page(
        &self,
        sql: &'static str,
        id: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<SqliteRow>, StoreError> {
        sqlx::query(sql)
            .bind(id.to_string())
            .bind(after)
            .bind(limit)
            .fetch_all(&self.reads)
            .await
            .map_err(failure)
    }

    async fn recipients(&self, id: &str) -> Result<Vec<RecipientRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT recipient, status, status_changed FROM recipients WHERE file_transfer_id = ? ORDER BY position",
        )
        .bind(id)
        .fetch_all(&self.reads)
        .await
        .map_err(failure)?;
        rows.iter()
            .map(|r| {
                Ok(RecipientRow {
                    recipient: r.get(0),
                    status: recipient_status_of(r.get(1))?,
                    changed: ts(r.get::<&str, _>(2))?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn load_transfer(&self, id: Uuid) -> Result<Option<TransferRecord>, StoreError> {
        let key = id.to_string();
        let row = sqlx::query(
            "SELECT f.resource_id, f.sender, f.status, f.size, f.checksum, f.sha256, f.declared_checksum,
                    f.use_virus_scan, f.expiration_time, r.purge_after_all_confirmed, r.purge_grace_period_us
             FROM file_transfers f JOIN resources r ON r.id = f.resource_id WHERE f.id = ?",
        )
        .bind(&key)
        .fetch_optional(&self.reads)
        .await
        .map_err(failure)?;
        let Some(row) = row else { return Ok(None) };
        let stored = || StoredFile {
            size: row.get::<i64, _>(3) as u64,
            md5: row.get::<Option<String>, _>(4).unwrap_or_default(),
            sha256: row.get::<Option<String>, _>(5).unwrap_or_default(),
        };
        let phase = match status_of(row.get(2))? {
            FileTransferStatus::Initialized => Phase::Initialized,
            FileTransferStatus::UploadStarted => Phase::UploadStarted,
            // Without its hashes the file is still being verified in the background.
            FileTransferStatus::UploadProcessing if row.get::<Option<String>, _>(5).is_none() => {
                Phase::Verifying
            }
            FileTransferStatus::UploadProcessing => Phase::UploadProcessing(stored()),
            FileTransferStatus::Published => Phase::Published(stored()),
            FileTransferStatus::AllConfirmedDownloaded => Phase::AllConfirmedDownloaded(stored()),
            FileTransferStatus::Purged => Phase::Purged,
            FileTransferStatus::Failed => Phase::Failed,
            FileTransferStatus::Cancelled => Phase::Cancelled,
        };
        let recipients = self
            .recipients(&key)
            .await?
            .into_iter()
            .map(|r| (r.recipient, r.status))
            .collect();
        let grace = row.get::<Option<i64>, _>(10).map(Duration::microseconds);
        Ok(Some(TransferRecord {
            id,
            resource_id: row.get(0),
            sender: row.get(1),
            state: TransferState {
                phase,
                recipients,
                declared_md5: row.get(6),
                use_virus_scan: row.get(7),
                purge_after_all_confirmed: row.get::<Option<bool>, _>(9).unwrap_or(true),
            },
            purge_grace_period: grace.unwrap_or(Duration::hours(DEFAULT_GRACE_PERIOD_HOURS)),
            expiration_time: ts(row.get::<&str, _>(8))?,
        }))
    }

    async fn commit_change(&self, change: TransferChange) -> Result<(), StoreError> {
        self.write(move |conn| Box::pin(apply_change(conn, change)))
            .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.reads)
            .await
            .map_err(failure)?;
        // The writer task must answer too, or every write would fail while reads still work.
        self.write(|conn| {
            Box::pin(async move {
                sqlx::query("SELECT 1")
                    .execute(&mut *conn)
                    .await
                    .map_err(failure)?;
                Ok(())
            })
        })
        .await
    }

    async fn create_service_owner(
        &self,
        id: &str,
        name: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, name, at) = (id.to_string(), name.to_string(), time::format(&at));
        self.write(move |conn| {
            Box::pin(async move {
                let r = sqlx::query(
                    "INSERT OR IGNORE INTO service_owners (id, name, created) VALUES (?, ?, ?)",
                )
                .bind(id)
                .bind(name)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(failure)?;
                Ok(r.rows_affected() == 1)
            })
        })
        .await
    }

    async fn service_owner(&self, id: &str) -> Result<Option<ServiceOwnerRow>, StoreError> {
        let row = sqlx::query("SELECT id, name FROM service_owners WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reads)
            .await
            .map_err(failure)?;
        Ok(row.map(|r| ServiceOwnerRow {
            id: r.get(0),
            name: r.get(1),
        }))
    }

    async fn resource(&self, id: &str) -> Result<Option<ResourceRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM resources WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reads)
            .await
            .map_err(failure)?;
        Ok(row.as_ref().map(resource_from_row))
    }

    async fn save_resource(&self, r: ResourceRow, at: Timestamp) -> Result<bool, StoreError> {
        let at = time::format(&at);
        self.write(move |conn| {
            Box::pin(async move {
                let updated = sqlx::query(
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
                .bind(r.id)
                .bind(r.service_owner_id)
                .bind(r.max_file_transfer_size)
                .bind(duration_us(r.file_transfer_time_to_live))
                .bind(r.purge_after_all_confirmed)
                .bind(duration_us(r.purge_grace_period))
                .bind(r.use_manifest_file_shim)
                .bind(r.external_service_code_legacy)
                .bind(r.external_service_edition_code_legacy)
                .bind(r.required_party)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(failure)?;
                Ok(updated.rows_affected() == 1)
            })
        })
        .await
    }

    async fn create_transfer(
        &self,
        t: NewTransfer,
        events: Vec<CloudEvent>,
        jobs: Vec<(JobKey, Timestamp)>,
    ) -> Result<Created, StoreError> {
        self.write(move |conn| Box::pin(insert_transfer(conn, t, events, jobs)))
            .await
    }

    async fn transfer(&self, id: Uuid) -> Result<Option<TransferView>, StoreError> {
        let key = id.to_string();
        let row = sqlx::query(
            "SELECT resource_id, file_name, senders_reference, sender, sender_org, checksum, sha256, use_virus_scan,
                    size, status, status_text, status_changed, created, expiration_time, published, property_list
             FROM file_transfers WHERE id = ?",
        )
        .bind(&key)
        .fetch_optional(&self.reads)
        .await
        .map_err(failure)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(TransferView {
            id,
            resource_id: row.get(0),
            file_name: row.get(1),
            senders_reference: row.get(2),
            sender: row.get(3),
            sender_org: row.get(4),
            checksum: row.get(5),
            sha256: row.get(6),
            use_virus_scan: row.get(7),
            size: row.get(8),
            status: status_of(row.get(9))?,
            status_text: row.get(10),
            status_changed: ts(row.get::<&str, _>(11))?,
            created: ts(row.get::<&str, _>(12))?,
            expiration_time: ts(row.get::<&str, _>(13))?,
            published: row.get::<Option<&str>, _>(14).map(ts).transpose()?,
            property_list: serde_json::from_str(row.get::<&str, _>(15)).map_err(failure)?,
            recipients: self.recipients(&key).await?,
        }))
    }

    async fn idempotent_transfer(
        &self,
        sender_org: &str,
        key: &str,
        since: Timestamp,
    ) -> Result<Option<(Uuid, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, idempotency_hash FROM file_transfers
             WHERE sender_org = ? AND idempotency_key = ? AND created > ? ORDER BY created DESC LIMIT 1",
        )
        .bind(sender_org)
        .bind(key)
        .bind(time::format(&since))
        .fetch_optional(&self.reads)
        .await
        .map_err(failure)?;
        row.map(|r| Ok((r.get::<&str, _>(0).parse().map_err(failure)?, r.get(1))))
            .transpose()
    }

    async fn status_history(
        &self,
        id: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, FileTransferStatusEntry)>, StoreError> {
        let rows = self
            .history_page(
                "SELECT seq, status, text, changed FROM file_transfer_status_history
                 WHERE file_transfer_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                id,
                after,
                limit,
            )
            .await?;
        rows.iter()
            .map(|r| {
                let status = status_of(r.get(1))?;
                Ok((
                    r.get(0),
                    FileTransferStatusEntry {
                        file_transfer_status: status,
                        file_transfer_status_text: r
                            .get::<Option<String>, _>(2)
                            .unwrap_or_else(|| status.default_text().to_string()),
                        file_transfer_status_changed: ts(r.get::<&str, _>(3))?,
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
        let rows = self
            .history_page(
                "SELECT seq, recipient, status, changed FROM recipient_status_history
                 WHERE file_transfer_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                id,
                after,
                limit,
            )
            .await?;
        rows.iter()
            .map(|r| {
                let status = recipient_status_of(r.get(2))?;
                Ok((
                    r.get(0),
                    RecipientStatusEntry {
                        recipient: r.get(1),
                        recipient_file_transfer_status_code: status,
                        recipient_file_transfer_status_text: status.text().to_string(),
                        recipient_file_transfer_status_changed: ts(r.get::<&str, _>(3))?,
                    },
                ))
            })
            .collect()
    }

    async fn search(&self, q: &SearchQuery) -> Result<Vec<Uuid>, StoreError> {
        // The sort date is the time the transfer entered the filtered status, else its creation.
        let sort = if q.status.is_some() {
            "f.status_changed"
        } else {
            "f.created"
        };
        let mut sql = QueryBuilder::new("SELECT f.id FROM file_transfers f WHERE f.resource_id = ");
        sql.push_bind(&q.resource_id);
        if let Some(rs) = q.recipient_status {
            sql.push(" AND EXISTS (SELECT 1 FROM recipients r WHERE r.file_transfer_id = f.id AND r.recipient = ");
            sql.push_bind(&q.caller_org);
            sql.push(" AND r.status = ");
            sql.push_bind(rs.code());
            sql.push(")");
        } else {
            let as_sender = q.role != Some(Role::Recipient);
            let as_recipient = q.role != Some(Role::Sender);
            sql.push(" AND (0");
            if as_sender {
                sql.push(" OR f.sender_org = ");
                sql.push_bind(&q.caller_org);
            }
            if as_recipient {
                sql.push(" OR EXISTS (SELECT 1 FROM recipients r WHERE r.file_transfer_id = f.id AND r.recipient = ");
                sql.push_bind(&q.caller_org);
                sql.push(")");
            }
            sql.push(")");
        }
        if let Some(s) = q.status {
            sql.push(" AND f.status = ");
            sql.push_bind(s.code());
        }
        match (q.from, q.to) {
            (Some(from), Some(to)) => {
                sql.push(format!(" AND {sort} BETWEEN "));
                sql.push_bind(time::format(&from));
                sql.push(" AND ");
                sql.push_bind(time::format(&to));
            }
            (Some(from), None) => {
                sql.push(format!(" AND {sort} > "));
                sql.push_bind(time::format(&from));
            }
            (None, Some(to)) => {
                sql.push(format!(" AND {sort} < "));
                sql.push_bind(time::format(&to));
            }
            (None, None) => {}
        }
        sql.push(format!(
            " ORDER BY {sort} {} LIMIT {SEARCH_LIMIT}",
            if q.ascending { "ASC" } else { "DESC" }
        ));
        let rows = sql.build().fetch_all(&self.reads).await.map_err(failure)?;
        rows.iter()
            .map(|r| r.get::<&str, _>(0).parse().map_err(failure))
            .collect()
    }
}
