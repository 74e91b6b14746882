//! The embedded SQLite adapter: WAL, `synchronous = FULL` (a commit is on disk before it is
//! acknowledged), and group commit: one writer task gathers every write queued while the previous
//! transaction was syncing and commits them together, so concurrent transitions share one fsync.
//! Each write runs in its own savepoint, so one refused write does not undo its neighbours.

use super::*;
use futures::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::Connection;
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

mod jobs;
mod metadata;
mod sessions;
mod writes;

pub(super) async fn insert_events(
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
