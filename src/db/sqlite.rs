//! The embedded SQLite adapter: WAL, `synchronous = FULL` (a commit is on disk before it is
//! acknowledged), and group commit: one writer task gathers every write queued while the previous
//! transaction was syncing and commits them together, so concurrent transitions share one fsync.
//! Each write runs in its own savepoint, so one refused write does not undo its neighbours.

use super::*;
use broker_actors::ports::{TransferChange, TransferRecord};
use broker_actors::state::{Phase, StoredFile, TransferState};
use broker_protocol::time;
use futures::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The most writes one transaction groups.
const MAX_GROUP: usize = 256;

pub struct SqliteStore {
    reads: SqlitePool,
    writer: mpsc::Sender<Box<dyn WriteJob>>,
    /// Transactions committed by the writer (each one fsync), for metrics and tests.
    group_commits: Arc<AtomicU64>,
}

fn failure(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failure(e.to_string())
}

fn ts(text: &str) -> Result<Timestamp, StoreError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| failure(format!("bad timestamp {text:?}: {e}")))
}

fn status_of(code: i64) -> Result<FileTransferStatus, StoreError> {
    FileTransferStatus::from_code(code).ok_or_else(|| failure(format!("unknown status {code}")))
}

fn recipient_status_of(code: i64) -> Result<RecipientStatus, StoreError> {
    RecipientStatus::from_code(code)
        .ok_or_else(|| failure(format!("unknown recipient status {code}")))
}

/// A write waiting for the group commit.
trait WriteJob: Send {
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool>;
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

struct Job<F, R> {
    work: Option<F>,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> WriteJob for Job<F, R>
where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<R, StoreError>> + Send,
    R: Send,
{
    fn run<'c>(&'c mut self, conn: &'c mut SqliteConnection) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            let work = self.work.take().expect("a write job runs once");
            let result = work(conn).await;
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn finish(self: Box<Self>, committed: Result<(), String>) {
        let result = match (self.result, committed) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (Some(Ok(_)), Err(e)) | (None, Err(e)) => Err(StoreError::Failure(e)),
            (None, Ok(())) => Err(StoreError::Failure("write was not run".into())),
        };
        let _ = self.reply.send(result);
    }
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(30));
        let reads = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(failure)?;
        // sqlx's migration future is not provably `Send` (a higher-ranked lifetime); running it on a
        // blocking thread keeps `serve` spawnable.
        let pool = reads.clone();
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current()
                .block_on(sqlx::migrate!("./migrations/sqlite").run(&pool))
        })
        .await
        .map_err(failure)?
        .map_err(failure)?;
        let conn = SqliteConnection::connect_with(&options)
            .await
            .map_err(failure)?;
        let (writer, jobs) = mpsc::channel(1024);
        let group_commits = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_loop(conn, jobs, group_commits.clone()));
        Ok(SqliteStore {
            reads,
            writer,
            group_commits,
        })
    }

    pub fn group_commits(&self) -> u64 {
        self.group_commits.load(Ordering::Relaxed)
    }

    /// Queues `work` for the next group commit and waits until it is durable.
    async fn write<F, R>(&self, work: F) -> Result<R, StoreError>
    where
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<R, StoreError>>
            + Send
            + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job {
            work: Some(work),
            result: None,
            reply,
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| failure("the database writer stopped"))?;
        answer
            .await
            .map_err(|_| failure("the database writer stopped"))?
    }
}

async fn write_loop(
    mut conn: SqliteConnection,
    mut jobs: mpsc::Receiver<Box<dyn WriteJob>>,
    group_commits: Arc<AtomicU64>,
) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let committed = commit_group(&mut conn, &mut group).await;
        group_commits.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &committed {
            tracing::error!(error = %e, writes = group.len(), "group commit failed");
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        }
        for job in group {
            job.finish(committed.clone());
        }
    }
}

async fn commit_group(
    conn: &mut SqliteConnection,
    group: &mut [Box<dyn WriteJob>],
) -> Result<(), String> {
    let exec = |sql: &'static str| sqlx::query(sql);
    exec("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    for job in group.iter_mut() {
        exec("SAVEPOINT job")
            .execute(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
        if job.run(conn).await {
            exec("RELEASE job")
                .execute(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
        } else {
            exec("ROLLBACK TO job")
                .execute(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            exec("RELEASE job")
                .execute(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    exec("COMMIT")
        .execute(&mut *conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

async fn insert_events(
    conn: &mut SqliteConnection,
    id: Uuid,
    events: &[CloudEvent],
    at: &str,
) -> Result<(), StoreError> {
    for event in events {
        sqlx::query("INSERT INTO outbox (file_transfer_id, event, created) VALUES (?, ?, ?)")
            .bind(id.to_string())
            .bind(serde_json::to_string(event).map_err(failure)?)
            .bind(at)
            .execute(&mut *conn)
            .await
            .map_err(failure)?;
    }
    Ok(())
}

async fn apply_change(conn: &mut SqliteConnection, c: TransferChange) -> Result<(), StoreError> {
    let at = time::format(&c.at);
    let id = c.id.to_string();
    let (status, text) = match &c.new_status {
        Some((s, t)) => (Some(s.code()), t.clone()),
        None => (None, None),
    };
    let published = (c.new_status.as_ref().map(|s| s.0) == Some(FileTransferStatus::Published))
        .then(|| at.clone());
    let (size, md5, sha256) = match &c.stored_file {
        Some(f) => (
            Some(f.size as i64),
            Some(f.md5.clone()),
            Some(f.sha256.clone()),
        ),
        None => (None, None, None),
    };
    let updated = sqlx::query(
        "UPDATE file_transfers SET
            status = COALESCE(?1, status),
            status_text = CASE WHEN ?1 IS NULL THEN status_text ELSE ?2 END,
            status_changed = CASE WHEN ?1 IS NULL THEN status_changed ELSE ?3 END,
            published = COALESCE(?4, published),
            size = COALESCE(?5, size),
            checksum = CASE WHEN ?6 IS NULL THEN checksum ELSE COALESCE(declared_checksum, ?6) END,
            sha256 = COALESCE(?7, sha256),
            purge_at = COALESCE(?8, purge_at)
         WHERE id = ?9 AND status = ?10",
    )
    .bind(status)
    .bind(text.clone())
    .bind(&at)
    .bind(published)
    .bind(size)
    .bind(md5)
    .bind(sha256)
    .bind(c.purge_at.as_ref().map(time::format))
    .bind(&id)
    .bind(c.expected_status.code())
    .execute(&mut *conn)
    .await
    .map_err(failure)?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::Conflict);
    }
    if let Some(status) = status {
        sqlx::query("INSERT INTO file_transfer_status_history (file_transfer_id, status, text, changed) VALUES (?, ?, ?, ?)")
            .bind(&id).bind(status).bind(text).bind(&at)
            .execute(&mut *conn).await.map_err(failure)?;
    }
    for (recipient, status) in &c.recipient_rows {
        sqlx::query("INSERT INTO recipient_status_history (file_transfer_id, recipient, status, changed) VALUES (?, ?, ?, ?)")
            .bind(&id).bind(recipient).bind(status.code()).bind(&at)
            .execute(&mut *conn).await.map_err(failure)?;
        sqlx::query("UPDATE recipients SET status = MAX(status, ?), status_changed = ? WHERE file_transfer_id = ? AND recipient = ?")
            .bind(status.code()).bind(&at).bind(&id).bind(recipient)
            .execute(&mut *conn).await.map_err(failure)?;
    }
    insert_events(conn, c.id, &c.events, &at).await
}

async fn insert_transfer(
    conn: &mut SqliteConnection,
    t: NewTransfer,
    events: Vec<CloudEvent>,
) -> Result<Created, StoreError> {
    let created = time::format(&t.created);
    if let Some((key, fingerprint)) = &t.idempotency {
        let since = time::format(&(t.created - Duration::hours(24)));
        let existing = sqlx::query(
            "SELECT id, idempotency_hash FROM file_transfers
             WHERE sender_org = ? AND idempotency_key = ? AND created > ? ORDER BY created DESC LIMIT 1",
        )
        .bind(&t.sender_org)
        .bind(key)
        .bind(since)
        .fetch_optional(&mut *conn)
        .await
        .map_err(failure)?;
        if let Some(row) = existing {
            let hash: Option<String> = row.get(1);
            if hash.as_deref() != Some(fingerprint.as_str()) {
                return Ok(Created::KeyReused);
            }
            let id: String = row.get(0);
            return Ok(Created::Existing(id.parse().map_err(failure)?));
        }
    }
    let id = t.id.to_string();
    sqlx::query(
        "INSERT INTO file_transfers (id, resource_id, file_name, senders_reference, sender, sender_org,
            declared_checksum, checksum, use_virus_scan, size, status, status_text, status_changed, created,
            expiration_time, property_list, idempotency_key, idempotency_hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, NULL, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(&t.resource_id)
    .bind(&t.file_name)
    .bind(&t.senders_reference)
    .bind(&t.sender)
    .bind(&t.sender_org)
    .bind(&t.declared_checksum)
    .bind(&t.declared_checksum)
    .bind(t.use_virus_scan)
    .bind(&created)
    .bind(&created)
    .bind(time::format(&t.expiration_time))
    .bind(serde_json::to_string(&t.property_list).map_err(failure)?)
    .bind(t.idempotency.as_ref().map(|i| i.0.clone()))
    .bind(t.idempotency.as_ref().map(|i| i.1.clone()))
    .execute(&mut *conn)
    .await
    .map_err(failure)?;
    sqlx::query("INSERT INTO file_transfer_status_history (file_transfer_id, status, text, changed) VALUES (?, 0, NULL, ?)")
        .bind(&id).bind(&created)
        .execute(&mut *conn).await.map_err(failure)?;
    for (position, recipient) in t.recipients.iter().enumerate() {
        sqlx::query("INSERT OR IGNORE INTO recipients (file_transfer_id, recipient, position, status, status_changed) VALUES (?, ?, ?, 0, ?)")
            .bind(&id).bind(recipient).bind(position as i64).bind(&created)
            .execute(&mut *conn).await.map_err(failure)?;
        sqlx::query("INSERT INTO recipient_status_history (file_transfer_id, recipient, status, changed) VALUES (?, ?, 0, ?)")
            .bind(&id).bind(recipient).bind(&created)
            .execute(&mut *conn).await.map_err(failure)?;
    }
    insert_events(conn, t.id, &events, &created).await?;
    Ok(Created::New(t.id))
}

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
impl LifecycleStore for SqliteStore {
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
}

#[async_trait]
impl Store for SqliteStore {
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
    ) -> Result<Created, StoreError> {
        self.write(move |conn| Box::pin(insert_transfer(conn, t, events)))
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

    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = sqlx::query("SELECT seq, event FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&self.reads)
            .await
            .map_err(failure)?;
        rows.iter()
            .map(|r| {
                Ok(OutboxEntry {
                    sequence: r.get(0),
                    event: serde_json::from_str(r.get::<&str, _>(1)).map_err(failure)?,
                })
            })
            .collect()
    }

    async fn create_tus(
        &self,
        id: Uuid,
        part: &str,
        length: Option<u64>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let at = time::format(&at);
        let part = part.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO tus_uploads (file_transfer_id, part, length, \"offset\", updated) VALUES (?, ?, ?, 0, ?)
                     ON CONFLICT(file_transfer_id, part) DO UPDATE SET length = excluded.length, \"offset\" = 0, updated = excluded.updated",
                )
                .bind(id.to_string())
                .bind(part)
                .bind(length.map(|l| l as i64))
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(failure)?;
                Ok(())
            })
        })
        .await
    }

    async fn tus(&self, id: Uuid, part: &str) -> Result<Option<TusRow>, StoreError> {
        let row = sqlx::query(
            "SELECT length, \"offset\", joined FROM tus_uploads WHERE file_transfer_id = ? AND part = ?",
        )
        .bind(id.to_string())
        .bind(part)
        .fetch_optional(&self.reads)
        .await
        .map_err(failure)?;
        Ok(row.map(|r| TusRow {
            length: r.get::<Option<i64>, _>(0).map(|l| l as u64),
            offset: r.get::<i64, _>(1) as u64,
            joined: r.get::<i64, _>(2) != 0,
        }))
    }

    async fn advance_tus(
        &self,
        id: Uuid,
        part: &str,
        from: u64,
        to: u64,
        length: Option<u64>,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let at = time::format(&at);
        let part = part.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                let r = sqlx::query(
                    "UPDATE tus_uploads SET \"offset\" = ?, length = COALESCE(length, ?), updated = ?
                     WHERE file_transfer_id = ? AND part = ? AND \"offset\" = ?",
                )
                .bind(to as i64)
                .bind(length.map(|l| l as i64))
                .bind(at)
                .bind(id.to_string())
                .bind(part)
                .bind(from as i64)
                .execute(&mut *conn)
                .await
                .map_err(failure)?;
                Ok(r.rows_affected() == 1)
            })
        })
        .await
    }

    async fn create_tus_part(
        &self,
        id: Uuid,
        part: &str,
        length: u64,
        at: Timestamp,
        max_parts: usize,
        max_total: u64,
    ) -> Result<PartAdmission, StoreError> {
        let at = time::format(&at);
        let part = part.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                let key = id.to_string();
                let row = sqlx::query(
                    "SELECT COUNT(*), COALESCE(SUM(length), 0) FROM tus_uploads WHERE file_transfer_id = ? AND part <> ''",
                )
                .bind(&key)
                .fetch_one(&mut *conn)
                .await
                .map_err(failure)?;
                let (count, total) = (row.get::<i64, _>(0) as u64, row.get::<i64, _>(1) as u64);
                if count >= max_parts as u64 {
                    return Ok(PartAdmission::TooManyParts);
                }
                if total.saturating_add(length) > max_total {
                    return Ok(PartAdmission::TooLarge);
                }
                sqlx::query(
                    "INSERT INTO tus_uploads (file_transfer_id, part, length, \"offset\", updated) VALUES (?, ?, ?, 0, ?)",
                )
                .bind(&key)
                .bind(part)
                .bind(length as i64)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(failure)?;
                Ok(PartAdmission::Created)
            })
        })
        .await
    }

    async fn terminate_tus(&self, id: Uuid, part: &str, at: Timestamp) -> Result<(), StoreError> {
        let at = time::format(&at);
        let part = part.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                // The transfer's own upload takes its parts along: their bytes share its file's name.
                sqlx::query(
                    "DELETE FROM tus_uploads WHERE file_transfer_id = ? AND (part = ? OR ? = '')",
                )
                .bind(id.to_string())
                .bind(&part)
                .bind(&part)
                .execute(&mut *conn)
                .await
                .map_err(failure)?;
                sqlx::query("UPDATE file_transfers SET tus_activity = ? WHERE id = ?")
                    .bind(at)
                    .bind(id.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(failure)?;
                Ok(())
            })
        })
        .await
    }

    async fn tus_active(&self, id: Uuid, since: Timestamp) -> Result<bool, StoreError> {
        let key = id.to_string();
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM tus_uploads WHERE file_transfer_id = ?)
                 OR EXISTS (SELECT 1 FROM file_transfers WHERE id = ? AND tus_activity >= ?)",
        )
        .bind(&key)
        .bind(&key)
        .bind(time::format(&since))
        .fetch_one(&self.reads)
        .await
        .map_err(failure)?;
        Ok(row.get::<i64, _>(0) != 0)
    }

    async fn unverified_uploads(&self) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.file_transfer_id FROM tus_uploads t JOIN file_transfers f ON f.id = t.file_transfer_id
             WHERE t.part = '' AND t.length = t.\"offset\" AND f.sha256 IS NULL AND f.status IN (?, ?)",
        )
        .bind(FileTransferStatus::UploadStarted.code())
        .bind(FileTransferStatus::UploadProcessing.code())
        .fetch_all(&self.reads)
        .await
        .map_err(failure)?;
        rows.iter()
            .map(|r| r.get::<&str, _>(0).parse().map_err(failure))
            .collect()
    }

    async fn stale_tus(&self, before: Timestamp) -> Result<Vec<(Uuid, String)>, StoreError> {
        let rows = sqlx::query("SELECT file_transfer_id, part FROM tus_uploads WHERE updated < ?")
            .bind(time::format(&before))
            .fetch_all(&self.reads)
            .await
            .map_err(failure)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.get::<&str, _>(0).parse().map_err(failure)?,
                    r.get::<String, _>(1),
                ))
            })
            .collect()
    }

    async fn record_joined_tus(
        &self,
        id: Uuid,
        size: u64,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let at = time::format(&at);
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO tus_uploads (file_transfer_id, part, length, \"offset\", updated, joined) VALUES (?, '', ?, ?, ?, 1)
                     ON CONFLICT(file_transfer_id, part) DO UPDATE SET length = excluded.length, \"offset\" = excluded.\"offset\",
                        updated = excluded.updated, joined = 1",
                )
                .bind(id.to_string())
                .bind(size as i64)
                .bind(size as i64)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(failure)?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_tus(&self, id: Uuid, part: &str) -> Result<(), StoreError> {
        let part = part.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM tus_uploads WHERE file_transfer_id = ? AND part = ?")
                    .bind(id.to_string())
                    .bind(part)
                    .execute(&mut *conn)
                    .await
                    .map_err(failure)?;
                Ok(())
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_group_commits_and_all_become_durable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("b.db")).await.unwrap());
        let before = store.group_commits();
        let writes: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .create_service_owner(&format!("0192:{i:09}"), "x", chrono::Utc::now())
                        .await
                })
            })
            .collect();
        for w in writes {
            assert!(w.await.unwrap().unwrap());
        }
        let groups = store.group_commits() - before;
        assert!(groups < 64, "64 concurrent writes took {groups} commits");
        drop(store);
        let reopened = SqliteStore::open(&dir.path().join("b.db")).await.unwrap();
        for i in 0..64 {
            assert!(reopened
                .service_owner(&format!("0192:{i:09}"))
                .await
                .unwrap()
                .is_some());
        }
    }

    #[tokio::test]
    async fn a_refused_write_in_a_group_does_not_undo_its_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("b.db")).await.unwrap());
        // A resource whose owner does not exist violates a foreign key; the owner beside it must stay.
        let bad = ResourceRow {
            id: "r".into(),
            service_owner_id: "0192:000000001".into(),
            ..Default::default()
        };
        let (a, b) = tokio::join!(
            store.save_resource(bad, chrono::Utc::now()),
            store.create_service_owner("0192:000000002", "ok", chrono::Utc::now())
        );
        assert!(a.is_err());
        assert!(b.unwrap());
        assert!(store
            .service_owner("0192:000000002")
            .await
            .unwrap()
            .is_some());
    }
}
