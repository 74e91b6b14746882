//! The embedded SQLite adapter, on rusqlite: WAL, `synchronous = FULL` (a commit is on disk before it
//! is acknowledged), and group commit: one writer thread gathers every write queued while the
//! previous transaction was syncing and commits them together, so concurrent transitions share one
//! fsync. Each write runs in its own savepoint, so one refused write does not undo its neighbours.
//!
//! Why not sqlx here: sqlx's SQLite driver sends every statement to a worker thread of its own and
//! back, so a request's five statements cost ten thread wake-ups, which under load was a third of the
//! broker's CPU. Here a write is one closure holding all of a request's statements (one hop to the
//! writer), and a read runs on the caller's thread from a small pool of connections (no hop at all:
//! reads are indexed and bounded, and take microseconds on cached pages, less than a hop would).
//! Statements are prepared once per connection and cached. sqlx still runs the migrations, so
//! existing databases keep their migration history; PostgreSQL will use sqlx throughout.

use super::*;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// The most writes one transaction groups.
const MAX_GROUP: usize = 256;
/// Read connections kept open between reads (more are opened while more readers run at once).
const IDLE_READERS: usize = 8;
/// Prepared statements each connection keeps.
const STATEMENT_CACHE: usize = 64;

pub struct SqliteStore {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    /// Small files waiting for the transition that stores them (see `crate::blob::inline`).
    staged: inline::Staged,
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

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(failure)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(failure)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )
    .map_err(failure)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A write waiting for the group commit.
trait WriteJob: Send {
    /// Runs the write inside its savepoint; false when it failed and must be rolled back.
    fn run(&mut self, conn: &Connection) -> bool;
    fn finish(self: Box<Self>, committed: Result<(), String>);
}

struct Job<F, R> {
    work: Option<F>,
    result: Option<Result<R, StoreError>>,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

impl<F, R> WriteJob for Job<F, R>
where
    F: FnOnce(&Connection) -> Result<R, StoreError> + Send,
    R: Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let work = self.work.take().expect("a write job runs once");
        let result = work(conn);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
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

/// Runs the migrations with sqlx, which keeps their history in `_sqlx_migrations`.
async fn migrate(path: &Path) -> Result<(), StoreError> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(std::time::Duration::from_secs(30));
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(failure)?;
    // sqlx's migration future is not provably `Send` (a higher-ranked lifetime); running it on a
    // blocking thread keeps `serve` spawnable.
    let migrating = pool.clone();
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Handle::current()
            .block_on(sqlx::migrate!("./migrations/sqlite").run(&migrating))
    })
    .await
    .map_err(failure)?
    .map_err(failure)?;
    pool.close().await;
    Ok(())
}

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        migrate(path).await?;
        let conn = connect(path)?;
        // The embedded database is one process's: upload leases left in it were held by a process
        // that is gone, so none of them can still be writing (a shared database waits for expiry).
        conn.execute("DELETE FROM upload_leases", [])
            .map_err(failure)?;
        let (writer, jobs) = mpsc::channel(1024);
        let group_commits = Arc::new(AtomicU64::new(0));
        let commits = group_commits.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(conn, jobs, commits))
            .map_err(failure)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            readers: Mutex::new(vec![connect(path)?]),
            staged: inline::Staged::default(),
            writer,
            group_commits,
        })
    }

    pub fn group_commits(&self) -> u64 {
        self.group_commits.load(Ordering::Relaxed)
    }

    /// Runs `work` on a read connection, on the caller's thread.
    fn read<R>(
        &self,
        work: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let idle = self.readers.lock().expect("readers lock").pop();
        let conn = match idle {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let result = work(&conn);
        let mut readers = self.readers.lock().expect("readers lock");
        if readers.len() < IDLE_READERS {
            readers.push(conn);
        }
        result
    }

    /// Queues `work` for the next group commit and waits until it is durable.
    async fn write<F, R>(&self, work: F) -> Result<R, StoreError>
    where
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
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

fn write_loop(
    conn: Connection,
    mut jobs: mpsc::Receiver<Box<dyn WriteJob>>,
    group_commits: Arc<AtomicU64>,
) {
    while let Some(first) = jobs.blocking_recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let committed = commit_group(&conn, &mut group);
        group_commits.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &committed {
            tracing::error!(error = %e, writes = group.len(), "group commit failed");
            let _ = conn.execute_batch("ROLLBACK");
        }
        for job in group {
            job.finish(committed.clone());
        }
    }
}

fn commit_group(conn: &Connection, group: &mut [Box<dyn WriteJob>]) -> Result<(), String> {
    let exec = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    exec("BEGIN IMMEDIATE")?;
    for job in group.iter_mut() {
        exec("SAVEPOINT job")?;
        if !job.run(conn) {
            exec("ROLLBACK TO job")?;
        }
        exec("RELEASE job")?;
    }
    exec("COMMIT")
}

mod inline;
mod jobs;
mod leases;
mod metadata;
mod outbox;
mod rate_limits;
mod search;
mod sessions;
mod statistics;
mod subscriptions;
mod writes;

pub(super) fn insert_events(
    conn: &Connection,
    id: Uuid,
    events: &[CloudEvent],
    at: &str,
) -> Result<(), StoreError> {
    let mut insert = conn
        .prepare_cached("INSERT INTO outbox (file_transfer_id, event, created) VALUES (?, ?, ?)")
        .map_err(failure)?;
    let mut unrouted = conn
        .prepare_cached("INSERT INTO outbox_unrouted (seq) VALUES (last_insert_rowid())")
        .map_err(failure)?;
    for event in events {
        let event = serde_json::to_string(event).map_err(failure)?;
        insert
            .execute(rusqlite::params![id.to_string(), event, at])
            .map_err(failure)?;
        unrouted.execute([]).map_err(failure)?;
    }
    Ok(())
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
