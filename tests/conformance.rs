//! The ports' conformance suites on the embedded adapters: SQLite for metadata, upload sessions, the
//! outbox and jobs, the local disk for blobs (the same suites run on the in-memory adapters in the actors
//! crate).

use broker::blob::local::LocalBlobStore;
use broker::db::sqlite::SqliteStore;
use broker_actors::conformance::*;

async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("broker.db"))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn sqlite_keeps_the_metadata_rules() {
    let (_dir, store) = sqlite().await;
    metadata_store_suite(&store).await;
}

#[tokio::test]
async fn sqlite_keeps_the_upload_session_rules() {
    let (_dir, store) = sqlite().await;
    upload_sessions_suite(&store, &store).await;
}

#[tokio::test]
async fn sqlite_keeps_the_outbox_rules() {
    let (_dir, store) = sqlite().await;
    outbox_suite(&store, &store).await;
}

#[tokio::test]
async fn sqlite_keeps_the_job_rules() {
    let (_dir, store) = sqlite().await;
    jobs_suite(&store).await;
}

#[tokio::test]
async fn sqlite_schedules_jobs_with_its_transitions() {
    let (_dir, store) = sqlite().await;
    transfer_jobs_suite(&store, &store).await;
}

#[tokio::test]
async fn sqlite_jobs_survive_a_reopen() {
    use broker_actors::ports::{JobKey, JobKind, Jobs};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.db");
    let key = JobKey::new(JobKind::PurgeExpired, "kept");
    let due = chrono::Utc::now() + chrono::Duration::days(1);
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.schedule(&key, due).await.unwrap();
    }
    let reopened = SqliteStore::open(&path).await.unwrap();
    let (at, attempts) = reopened
        .get(&key)
        .await
        .unwrap()
        .expect("the job is still there");
    assert_eq!(
        (at.timestamp_micros(), attempts),
        (due.timestamp_micros(), 0)
    );
}

#[tokio::test]
async fn the_local_disk_keeps_the_blob_rules() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalBlobStore::open(dir.path()).unwrap();
    blob_store_suite(&blobs).await;
}
