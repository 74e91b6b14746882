//! Supervisor behaviour against in-memory ports.

use super::*;
use crate::ports::{BlobError, BlobWriter, ByteStream, TransferRecord};
use crate::state::{Phase, TransferState};
use async_trait::async_trait;
use broker_protocol::{FileTransferStatus, RecipientStatus};
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Default)]
struct MemoryStore {
    records: Mutex<HashMap<Uuid, TransferRecord>>,
    commits: AtomicUsize,
}

#[async_trait]
impl LifecycleStore for MemoryStore {
    async fn load_transfer(&self, id: Uuid) -> Result<Option<TransferRecord>, StoreError> {
        Ok(self.records.lock().unwrap().get(&id).cloned())
    }

    async fn commit_change(&self, change: TransferChange) -> Result<(), StoreError> {
        let mut records = self.records.lock().unwrap();
        let record = records.get_mut(&change.id).ok_or(StoreError::Conflict)?;
        if record.state.phase.status() != change.expected_status {
            return Err(StoreError::Conflict);
        }
        if let Some((status, _)) = change.new_status {
            record.state.phase = match (status, &change.stored_file) {
                (FileTransferStatus::UploadStarted, _) => Phase::UploadStarted,
                (FileTransferStatus::Published, Some(f)) => Phase::Published(f.clone()),
                (FileTransferStatus::Failed, _) => Phase::Failed,
                (s, _) => panic!("unexpected status {s:?} in this test"),
            };
        }
        self.commits.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Default)]
struct MemoryBlobs {
    deletes: AtomicUsize,
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn create(&self, _id: Uuid) -> Result<Box<dyn BlobWriter>, BlobError> {
        unimplemented!("not used by these tests")
    }
    async fn open_append(
        &self,
        _id: Uuid,
        _part: Option<&str>,
        _offset: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        unimplemented!("not used by these tests")
    }
    async fn concat(&self, _id: Uuid, _parts: &[String]) -> Result<(), BlobError> {
        unimplemented!("not used by these tests")
    }
    async fn delete_part(&self, _id: Uuid, _part: &str) -> Result<(), BlobError> {
        unimplemented!("not used by these tests")
    }
    async fn read(&self, _id: Uuid, _start: u64, _len: u64) -> Result<ByteStream, BlobError> {
        Err(BlobError::NotFound)
    }
    async fn delete(&self, _id: Uuid) -> Result<(), BlobError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn available_space(&self) -> Result<Option<u64>, BlobError> {
        Ok(None)
    }
    async fn check(&self) -> Result<(), BlobError> {
        Ok(())
    }
}

fn setup() -> (Lifecycle, Arc<MemoryStore>, Arc<MemoryBlobs>, Uuid) {
    let store = Arc::new(MemoryStore::default());
    let blobs = Arc::new(MemoryBlobs::default());
    let id = Uuid::new_v4();
    store.records.lock().unwrap().insert(
        id,
        TransferRecord {
            id,
            resource_id: "r".into(),
            sender: "0192:111111111".into(),
            state: TransferState {
                phase: Phase::Initialized,
                recipients: vec![("0192:222222222".into(), RecipientStatus::Initialized)],
                declared_md5: None,
                use_virus_scan: false,
                purge_after_all_confirmed: true,
            },
            purge_grace_period: chrono::Duration::hours(2),
            expiration_time: chrono::Utc::now() + chrono::Duration::days(1),
        },
    );
    let lifecycle = Lifecycle::new(
        store.clone(),
        blobs.clone(),
        Arc::new(crate::SystemClock),
        "test".into(),
    );
    (lifecycle, store, blobs, id)
}

fn file() -> StoredFile {
    StoredFile {
        size: 1,
        md5: "aa".into(),
        sha256: "bb".into(),
    }
}

async fn settle(lifecycle: &Lifecycle) {
    for _ in 0..100 {
        if lifecycle.live_supervisors() == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("supervisors still alive: {}", lifecycle.live_supervisors());
}

#[tokio::test]
async fn a_second_upload_is_refused_while_the_first_holds_the_slot() {
    let (lifecycle, _, _, id) = setup();
    let first = lifecycle.begin_upload(id).await.unwrap();
    let second = lifecycle.begin_upload(id).await;
    assert!(matches!(
        second,
        Err(LifecycleError::Rejected(
            ErrorCode::FileTransferAlreadyUploaded
        ))
    ));
    assert_eq!(
        lifecycle.live_supervisors(),
        1,
        "the supervisor lives while an upload streams"
    );
    first.complete(file()).await.unwrap();
    settle(&lifecycle).await;
}

#[tokio::test]
async fn an_abandoned_upload_frees_the_slot_removes_the_bytes_and_stays_retryable() {
    let (lifecycle, store, blobs, id) = setup();
    drop(lifecycle.begin_upload(id).await.unwrap());
    settle(&lifecycle).await;
    assert_eq!(blobs.deletes.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.records.lock().unwrap()[&id].state.phase,
        Phase::UploadStarted
    );
    let retry = lifecycle.begin_upload(id).await.unwrap();
    retry.complete(file()).await.unwrap();
    assert_eq!(
        store.records.lock().unwrap()[&id].state.phase,
        Phase::Published(file())
    );
    settle(&lifecycle).await;
}

#[tokio::test]
async fn supervisors_stop_when_idle_and_an_unknown_transfer_is_not_found() {
    let (lifecycle, store, _, id) = setup();
    let missing = lifecycle
        .confirm_download(Uuid::new_v4(), "0192:222222222".into())
        .await;
    assert!(matches!(
        missing,
        Err(LifecycleError::Rejected(ErrorCode::FileTransferNotFound))
    ));
    lifecycle
        .begin_upload(id)
        .await
        .unwrap()
        .complete(file())
        .await
        .unwrap();
    settle(&lifecycle).await;
    // Many concurrent commands on one transfer are serialized through one supervisor.
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let l = lifecycle.clone();
            tokio::spawn(async move { l.record_download(id, "0192:222222222".into()).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(store.commits.load(Ordering::SeqCst), 52);
    settle(&lifecycle).await;
}
