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
    fenced_writes_suite(&store, &store, &store).await;
}

#[tokio::test]
async fn sqlite_keeps_the_outbox_rules() {
    let (_dir, store) = sqlite().await;
    outbox_suite(&store, &store).await;
}

#[tokio::test]
async fn sqlite_keeps_the_delivery_and_subscription_rules() {
    let (_dir, store) = sqlite().await;
    deliveries_suite(&store, &store, &store).await;
}

#[tokio::test]
async fn sqlite_statistics_count_the_scripted_month_as_computed_by_hand() {
    let (_dir, store) = sqlite().await;
    statistics_suite(&store, &store).await;
}

#[tokio::test]
async fn a_rebuild_repairs_a_monthly_rollup_that_drifted_from_the_histories() {
    use broker_actors::ports::{MetadataStore, Statistics};
    let (dir, store) = sqlite().await;
    resource(&store, "drift").await;
    let mut t = new_transfer("drift", t0());
    t.recipients.push("0192:333333333".into());
    store.create_transfer(t, vec![], vec![]).await.unwrap();
    let totals = |rows: Vec<broker_actors::statistics::MonthlyRow>| -> u64 {
        rows.iter().map(|r| r.total_file_transfers).sum()
    };
    let month = || store.monthly_rows(OWNER, 2026, 6, None);
    assert_eq!(totals(month().await.unwrap()), 2);
    let conn = rusqlite::Connection::open(dir.path().join("broker.db")).unwrap();
    conn.execute_batch(
        "DELETE FROM monthly_statistics WHERE recipient = '0192:333333333';
         UPDATE monthly_statistics SET total_file_transfers = 40;",
    )
    .unwrap();
    assert_eq!(totals(month().await.unwrap()), 40, "the rollup drifted");
    store.rebuild_month(2026, 6).await.unwrap();
    assert_eq!(
        totals(month().await.unwrap()),
        2,
        "the rebuild counts the pairs again"
    );
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

#[tokio::test]
async fn the_local_disk_goes_on_with_the_uploads_and_files_an_earlier_build_left() {
    use broker_actors::ports::{complete_object, BlobStore, ObjectKey};
    use bytes::Bytes;
    use futures::StreamExt;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let blobs = LocalBlobStore::open(dir.path()).unwrap();
    let place = |id: uuid::Uuid| {
        let name = id.simple().to_string();
        let here = dir.path().join("blobs").join(&name[..2]);
        std::fs::create_dir_all(&here).unwrap();
        (here, name)
    };
    let read = |key: ObjectKey, len: u64| {
        let blobs = &blobs;
        async move {
            let mut stream = blobs.read(&key, 0, len).await.expect("the file reads");
            let mut out = Vec::new();
            while let Some(chunk) = stream.next().await {
                out.extend_from_slice(&chunk.unwrap());
            }
            out
        }
    };
    let write = |key: ObjectKey, start: u64, bytes: &'static [u8]| {
        let blobs = &blobs;
        async move {
            let mut writer = blobs.write_parts(&key, start, 9).await.unwrap();
            writer
                .append(Arc::new(vec![Bytes::from_static(bytes)]))
                .await
                .unwrap();
            writer.commit().await.unwrap();
        }
    };

    // A tus upload written in place: 60 bytes acknowledged, 20 more that never were.
    let id = uuid::Uuid::new_v4();
    let (here, name) = place(id);
    let old: Vec<u8> = (0..80u8).collect();
    std::fs::write(here.join(&name), &old).unwrap();
    write(
        ObjectKey::file(id),
        60,
        b"the rest, forty bytes long, sent anew!!!",
    )
    .await;
    complete_object(&blobs, &ObjectKey::file(id), 100)
        .await
        .expect("the earlier bytes and the new make the file");
    let mut expected = old[..60].to_vec();
    expected.extend_from_slice(b"the rest, forty bytes long, sent anew!!!");
    assert_eq!(read(ObjectKey::file(id), 100).await, expected);

    // Pieces: one stored complete, one still being written (its last 15 bytes never acknowledged).
    let joined = uuid::Uuid::new_v4();
    let (here, name) = place(joined);
    std::fs::write(here.join(format!("{name}.part-a")), b"complete piece;").unwrap();
    std::fs::write(
        here.join(format!("{name}.part-b")),
        b"half of it|unacknowledged",
    )
    .unwrap();
    complete_object(&blobs, &ObjectKey::piece(joined, "a"), 15)
        .await
        .expect("a complete piece of an earlier build completes");
    write(ObjectKey::piece(joined, "b"), 10, b" and the rest").await;
    complete_object(&blobs, &ObjectKey::piece(joined, "b"), 23)
        .await
        .unwrap();
    let total = blobs
        .compose(joined, &["a".to_string(), "b".to_string()])
        .await
        .unwrap();
    assert_eq!(
        read(ObjectKey::file(joined), total).await,
        b"complete piece;half of it and the rest"
    );

    // A file joined from parts by an earlier build, and one it completed whole.
    let listed = uuid::Uuid::new_v4();
    let (here, name) = place(listed);
    std::fs::write(here.join(format!("{name}.part-x")), b"hello ").unwrap();
    std::fs::write(here.join(format!("{name}.part-y")), b"world").unwrap();
    std::fs::write(here.join(format!("{name}.parts")), "x\ny\n").unwrap();
    assert_eq!(
        blobs.completed_len(&ObjectKey::file(listed)).await.unwrap(),
        Some(11)
    );
    assert_eq!(read(ObjectKey::file(listed), 11).await, b"hello world");
    blobs.delete(listed).await.unwrap();
    assert!(
        std::fs::read_dir(&here).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(&name)),
        "its parts and list are removed with it"
    );
    let whole = uuid::Uuid::new_v4();
    let (here, name) = place(whole);
    std::fs::write(here.join(&name), b"published earlier").unwrap();
    assert_eq!(
        read(ObjectKey::file(whole), 100).await,
        b"published earlier"
    );
}

mod inline_files {
    use super::*;
    use broker::blob::inline::InlineBlobStore;
    use broker_actors::ports::{
        complete_object, BlobStore, MetadataStore, ObjectKey, TransferChange,
    };
    use broker_actors::state::StoredFile;
    use broker_protocol::FileTransferStatus;
    use bytes::Bytes;
    use futures::StreamExt;
    use std::path::Path;
    use std::sync::Arc;

    const LIMIT: u64 = 64 << 10;

    async fn open(dir: &Path) -> (Arc<SqliteStore>, InlineBlobStore<LocalBlobStore>) {
        let store = Arc::new(SqliteStore::open(&dir.join("broker.db")).await.unwrap());
        let disk = Arc::new(LocalBlobStore::open(dir).unwrap());
        let blobs = InlineBlobStore::new(disk, store.clone(), LIMIT);
        (store, blobs)
    }

    async fn write(blobs: &dyn BlobStore, id: uuid::Uuid, bytes: &[u8]) -> u64 {
        let key = ObjectKey::file(id);
        let mut writer = blobs.write_whole(&key, 1).await.unwrap();
        writer
            .append(Arc::new(vec![Bytes::copy_from_slice(bytes)]))
            .await
            .unwrap();
        let written = writer.commit().await.unwrap();
        complete_object(blobs, &key, written).await.unwrap();
        written
    }

    async fn read(blobs: &dyn BlobStore, id: uuid::Uuid) -> Option<Vec<u8>> {
        let mut stream = blobs.read(&ObjectKey::file(id), 0, 1 << 20).await.ok()?;
        let mut out = vec![];
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk.ok()?);
        }
        Some(out)
    }

    fn on_disk(dir: &Path, id: uuid::Uuid) -> bool {
        let name = id.simple().to_string();
        dir.join("blobs").join(&name[..2]).join(name).exists()
    }

    fn stored(id: uuid::Uuid, size: u64) -> TransferChange {
        TransferChange {
            new_status: Some((FileTransferStatus::Published, None)),
            stored_file: Some(StoredFile {
                size,
                md5: "m".into(),
                sha256: "s".into(),
            }),
            ..TransferChange::new(id, FileTransferStatus::Initialized, 0, t0())
        }
    }

    #[tokio::test]
    async fn the_inline_store_keeps_the_blob_rules() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, blobs) = open(dir.path()).await;
        blob_store_suite(&blobs).await;
    }

    #[tokio::test]
    async fn a_small_file_is_kept_in_the_database_only_once_its_transition_commits() {
        let dir = tempfile::tempdir().unwrap();
        let small: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let (store, blobs) = open(dir.path()).await;
        resource(store.as_ref(), "inline").await;
        let unacknowledged = new_transfer("inline", t0());
        let kept = new_transfer("inline", t0());
        let (a, b) = (unacknowledged.id, kept.id);
        store
            .create_transfer(unacknowledged, vec![], vec![])
            .await
            .unwrap();
        store.create_transfer(kept, vec![], vec![]).await.unwrap();

        assert_eq!(write(&blobs, a, &small).await, 1000);
        assert_eq!(
            read(&blobs, a).await.as_deref(),
            Some(&small[..]),
            "held bytes read back"
        );
        assert_eq!(write(&blobs, b, &small).await, 1000);
        store.commit_change(stored(b, 1000)).await.unwrap();
        assert!(
            !on_disk(dir.path(), a) && !on_disk(dir.path(), b),
            "no file, no inode"
        );
        drop(blobs);
        drop(store);

        // As after a crash: the file whose transition committed is there, the other never was.
        let (store, blobs) = open(dir.path()).await;
        assert_eq!(read(&blobs, b).await.as_deref(), Some(&small[..]));
        let mut range = blobs.read(&ObjectKey::file(b), 10, 5).await.unwrap();
        assert_eq!(range.next().await.unwrap().unwrap(), small[10..15]);
        assert!(
            read(&blobs, a).await.is_none(),
            "an unacknowledged file is not kept"
        );

        blobs.delete(b).await.unwrap();
        assert!(
            read(&blobs, b).await.is_none(),
            "a removed inline file is gone"
        );
        drop(blobs);
        drop(store);
        let (_store, blobs) = open(dir.path()).await;
        assert!(read(&blobs, b).await.is_none(), "its removal is durable");
    }

    #[tokio::test]
    async fn a_file_past_the_threshold_or_appended_to_goes_to_disk_and_zero_keeps_every_file_there()
    {
        let dir = tempfile::tempdir().unwrap();
        let (store, blobs) = open(dir.path()).await;
        resource(store.as_ref(), "inline").await;
        let large = vec![7u8; LIMIT as usize + 1];
        let t = new_transfer("inline", t0());
        let id = t.id;
        store.create_transfer(t, vec![], vec![]).await.unwrap();
        assert_eq!(write(&blobs, id, &large).await, LIMIT + 1);
        store.commit_change(stored(id, LIMIT + 1)).await.unwrap();
        assert!(on_disk(dir.path(), id));
        assert_eq!(read(&blobs, id).await.map(|b| b.len()), Some(large.len()));

        let appended = uuid::Uuid::new_v4();
        let key = ObjectKey::file(appended);
        let mut part = blobs.write_parts(&key, 0, 1).await.unwrap();
        part.append(Arc::new(vec![Bytes::from_static(b"tus")]))
            .await
            .unwrap();
        assert_eq!(part.commit().await.unwrap(), 3);
        assert_eq!(
            blobs.list_parts(&key).await.unwrap().len(),
            1,
            "a tus upload's parts go to disk, however small"
        );
        complete_object(&blobs, &key, 3).await.unwrap();
        assert!(on_disk(dir.path(), appended));

        let off = InlineBlobStore::new(
            Arc::new(LocalBlobStore::open(dir.path()).unwrap()),
            store.clone(),
            0,
        );
        let tiny = uuid::Uuid::new_v4();
        write(&off, tiny, b"tiny").await;
        assert!(on_disk(dir.path(), tiny));

        // A file kept inline before the threshold was set to 0 still reads, and is still removed.
        let t = new_transfer("inline", t0());
        let kept = t.id;
        store.create_transfer(t, vec![], vec![]).await.unwrap();
        write(&blobs, kept, b"kept inline").await;
        store.commit_change(stored(kept, 11)).await.unwrap();
        assert_eq!(read(&off, kept).await.as_deref(), Some(&b"kept inline"[..]));
        off.delete(kept).await.unwrap();
        assert!(read(&blobs, kept).await.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_on_one_sqlite_database_and_disk_agree_on_every_transfer() {
    use broker::blob::inline::InlineBlobStore;
    use broker_actors::memory::{MemoryNotifier, MemoryWebhooks};
    use broker_actors::ports::{Registry, SystemClock};
    use std::sync::Arc;
    let (dir, store) = sqlite().await;
    let store = Arc::new(store);
    let disk = Arc::new(LocalBlobStore::open(&dir.path().join("files")).unwrap());
    let ports = broker_actors::Ports {
        metadata: store.clone(),
        sessions: store.clone(),
        outbox: store.clone(),
        blobs: Arc::new(InlineBlobStore::new(disk, store.clone(), 64 << 10)),
        clock: Arc::new(SystemClock),
        registry: Arc::new(Registry::Open),
        jobs: store.clone(),
        scanner: None,
        subscriptions: store.clone(),
        webhooks: Arc::new(MemoryWebhooks::default()),
        statistics: store.clone(),
        notifier: Arc::new(MemoryNotifier::default()),
        leases: store.clone(),
        signals: Arc::new(broker_actors::local_signals::LocalSignals::default()),
    };
    two_brokers_suite(ports).await;
}

#[tokio::test]
async fn sqlite_keeps_the_rate_limit_rules() {
    let (_dir, store) = sqlite().await;
    rate_limits_suite(&store).await;
}

#[tokio::test]
async fn sqlite_keeps_the_lease_rules_by_the_databases_clock() {
    use futures::FutureExt;
    let (_dir, store) = sqlite().await;
    // The database's clock cannot be moved: time passes by waiting, with margins of seconds.
    let pass = |ms: u64| tokio::time::sleep(std::time::Duration::from_millis(ms)).boxed();
    leases_suite(&store, 2_000, &pass).await;
}
