//! Supervisor behaviour against the in-memory adapters.

use super::*;
use crate::memory::{ManualClock, MemoryBlobs, MemoryStore};
use crate::ports::metadata::{Created, NewTransfer, ResourceRow};
use crate::ports::{BlobStore, Outbox};
use crate::state::Phase;
use broker_protocol::time::Timestamp;
use broker_protocol::FileTransferStatus;

const RECIPIENT: &str = "0192:222222222";

/// The moment every supervisor test starts at (the injected clock moves only when told).
fn t0() -> Timestamp {
    chrono::DateTime::parse_from_rfc3339("2026-03-01T08:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
}

async fn setup() -> (Lifecycle, Arc<MemoryStore>, MemoryBlobs, Uuid) {
    let (lifecycle, store, blobs, _) = setup_with_clock().await;
    let created = lifecycle.initialize(new_transfer()).await.unwrap();
    let Created::New(id) = created else {
        panic!("a new transfer: {created:?}");
    };
    (lifecycle, store, blobs, id)
}

async fn setup_with_clock() -> (Lifecycle, Arc<MemoryStore>, MemoryBlobs, Arc<ManualClock>) {
    let store = Arc::new(MemoryStore::default());
    let blobs = MemoryBlobs::default();
    store
        .create_service_owner("0192:111111111", "owner", t0())
        .await
        .unwrap();
    let resource = ResourceRow {
        id: "r".into(),
        service_owner_id: "0192:111111111".into(),
        ..Default::default()
    };
    store.save_resource(resource, t0()).await.unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let signals: Arc<crate::local_signals::LocalSignals> = Arc::default();
    let desk = crate::upload_leases::LeaseDesk::new(
        store.clone(),
        signals.clone(),
        "test-node".into(),
        crate::upload_leases::LEASE_TTL,
    );
    let lifecycle = Lifecycle::new(
        store.clone(),
        Arc::new(blobs.clone()),
        clock.clone(),
        "test".into(),
        desk,
        signals,
    );
    (lifecycle, store, blobs, clock)
}

fn new_transfer() -> NewTransfer {
    NewTransfer {
        id: Uuid::new_v4(),
        resource_id: "r".into(),
        file_name: "f".into(),
        senders_reference: None,
        sender: "0192:111111111".into(),
        sender_org: "0192:111111111".into(),
        sender_vendor: None,
        recipients: vec![RECIPIENT.into()],
        property_list: Default::default(),
        declared_checksum: None,
        use_virus_scan: false,
        created: t0(),
        expiration_time: t0() + chrono::Duration::days(1),
        idempotency: None,
    }
}

#[tokio::test]
async fn initialize_goes_through_the_supervisors_and_tells_the_sender_once() {
    let (lifecycle, store, _, clock) = setup_with_clock().await;
    let new = new_transfer();
    let id = new.id;
    assert_eq!(lifecycle.initialize(new).await.unwrap(), Created::New(id));
    assert_eq!(phase(&store, id).await, Phase::Initialized);
    let events = store.events_after(0, 100).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].event.type_.ends_with("filetransferinitialized"));
    assert_eq!(
        events[0].event.time,
        t0(),
        "stamped with the transfer's creation"
    );
    // Later steps are stamped by the injected clock.
    clock.advance(chrono::Duration::minutes(3));
    let lease = lifecycle.begin_upload(id).await.unwrap();
    lease.complete(file()).await.unwrap();
    let history = store.status_history(id, 0, 100).await.unwrap();
    let published = history.last().unwrap();
    assert_eq!(
        published.1.file_transfer_status,
        FileTransferStatus::Published
    );
    assert_eq!(
        published.1.file_transfer_status_changed,
        t0() + chrono::Duration::minutes(3)
    );
    settle(&lifecycle).await;
}

#[tokio::test]
async fn every_commit_that_appends_events_signals_the_outbox_and_one_that_appends_none_does_not() {
    use crate::ports::signals::topics;
    let (lifecycle, store, _, _) = setup_with_clock().await;
    let signals = lifecycle.shared.signals.clone();
    let signalled = |wakeup: crate::ports::Wakeup| async move {
        tokio::time::timeout(std::time::Duration::from_millis(200), wakeup)
            .await
            .is_ok()
    };
    let new = NewTransfer {
        idempotency: Some(("key".into(), "request".into())),
        ..new_transfer()
    };
    let id = new.id;
    let heard = signals.listen(topics::OUTBOX);
    lifecycle.initialize(new.clone()).await.unwrap();
    assert!(
        signalled(heard).await,
        "initialize appends FileTransferInitialized"
    );
    let heard = signals.listen(topics::OUTBOX);
    let repeated = NewTransfer {
        id: Uuid::new_v4(),
        ..new
    };
    assert_eq!(
        lifecycle.initialize(repeated).await.unwrap(),
        Created::Existing(id)
    );
    assert!(
        !signalled(heard).await,
        "a repeated initialize appends nothing"
    );
    let lease = lifecycle.begin_upload(id).await.unwrap();
    let heard = signals.listen(topics::OUTBOX);
    lease.complete(file()).await.unwrap();
    assert!(signalled(heard).await, "publishing appends its events");
    assert!(store.events_after(0, 100).await.unwrap().len() > 1);
    settle(&lifecycle).await;
}

async fn phase(store: &MemoryStore, id: Uuid) -> Phase {
    store.load_transfer(id).await.unwrap().unwrap().state.phase
}

async fn history_len(store: &MemoryStore, id: Uuid) -> usize {
    store.status_history(id, 0, 1000).await.unwrap().len()
        + store.recipient_history(id, 0, 1000).await.unwrap().len()
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
    let (lifecycle, _, _, id) = setup().await;
    let first = lifecycle.begin_upload(id).await.unwrap();
    let second = lifecycle.begin_upload(id).await;
    assert!(matches!(
        second,
        Err(Error::Refused(ErrorCode::FileTransferAlreadyUploaded))
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
    let (lifecycle, store, blobs, id) = setup().await;
    let lease = lifecycle.begin_upload(id).await.unwrap();
    let key = crate::ports::ObjectKey::file(id);
    let mut writer = blobs.write_whole(&key, lease.token()).await.unwrap();
    let partial = vec![bytes::Bytes::from_static(b"partial")];
    writer.append(Arc::new(partial)).await.unwrap();
    writer.commit().await.unwrap();
    assert!(blobs.holds(id));
    drop(lease);
    settle(&lifecycle).await;
    assert!(!blobs.holds(id), "the partial bytes are removed");
    assert_eq!(phase(&store, id).await, Phase::UploadStarted);
    let retry = lifecycle.begin_upload(id).await.unwrap();
    retry.complete(file()).await.unwrap();
    assert_eq!(phase(&store, id).await, Phase::Published(file()));
    settle(&lifecycle).await;
}

#[tokio::test]
async fn supervisors_stop_when_idle_and_an_unknown_transfer_is_not_found() {
    let (lifecycle, store, _, id) = setup().await;
    let missing = lifecycle
        .command_by(
            Uuid::new_v4(),
            Command::ConfirmDownload {
                recipient: RECIPIENT.into(),
            },
            None,
        )
        .await;
    assert!(matches!(
        missing,
        Err(Error::Refused(ErrorCode::FileTransferNotFound))
    ));
    lifecycle
        .begin_upload(id)
        .await
        .unwrap()
        .complete(file())
        .await
        .unwrap();
    settle(&lifecycle).await;
    let before = history_len(&store, id).await;
    // Many concurrent commands on one transfer are serialized through one supervisor.
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let l = lifecycle.clone();
            tokio::spawn(async move {
                let download = Command::RecordDownload {
                    recipient: RECIPIENT.into(),
                };
                l.command_by(id, download, None).await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        history_len(&store, id).await,
        before + 50,
        "every download is one recipient row"
    );
    assert_eq!(
        store.transfer(id).await.unwrap().unwrap().status,
        FileTransferStatus::Published
    );
    settle(&lifecycle).await;
}
