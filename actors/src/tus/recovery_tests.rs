//! What a stop leaves between a resumable upload's last byte and its publish, and what a failed check
//! leaves behind, through the broker on the in-memory adapters: the states are made through the ports,
//! as a crash leaves them, and a new broker on the same stores stands for the restart.

use crate::ports::metadata::TransferChange;
use crate::ports::{MetadataStore, Outbox, UploadSessions};
use crate::test_support::{hex, published, setup, Setup};
use broker_protocol::FileTransferStatus;
use sha2::Digest;
use uuid::Uuid;

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect()
}

fn md5_hex(bytes: &[u8]) -> String {
    hex(&md5::Md5::digest(bytes))
}

/// What a stop between storing the last byte and recording the transfer's next status leaves: the
/// upload complete at `stored` bytes, the transfer at `status`.
async fn leave_unverified(s: &Setup, id: Uuid, stored: u64, status: FileTransferStatus) {
    let now = chrono::Utc::now();
    s.store.create(id, "", Some(stored), now).await.unwrap();
    assert!(s
        .store
        .advance(id, "", 0, stored, None, now, None)
        .await
        .unwrap());
    if status != FileTransferStatus::UploadStarted {
        let change = TransferChange {
            id,
            expected_status: FileTransferStatus::UploadStarted,
            expected_version: 0, // set by commit_current
            at: now,
            new_status: Some((status, None)),
            stored_file: None,
            recipient_rows: vec![],
            events: vec![],
            jobs: vec![],
            cancelled_jobs: vec![],
            vendor: None,
            ends_lease: None,
            begins_lease: None,
        };
        crate::conformance::commit_current(&*s.store, change)
            .await
            .unwrap();
    }
}

async fn events_of(s: &Setup, id: Uuid) -> Vec<String> {
    let events = s.store.events_after(0, 10_000).await.unwrap();
    events
        .into_iter()
        .filter(|e| e.event.resourceinstance == id.to_string())
        .map(|e| e.event.type_)
        .collect()
}

async fn wait_for(s: &Setup, id: Uuid, status: FileTransferStatus) {
    for _ in 0..500 {
        if s.store.transfer(id).await.unwrap().unwrap().status == status {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the transfer never reached {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_left_complete_but_unverified_by_a_stop_is_verified_when_the_broker_starts_again()
{
    // UploadStarted: stopped before the status moved; UploadProcessing: stopped during the check.
    for status in [
        FileTransferStatus::UploadStarted,
        FileTransferStatus::UploadProcessing,
    ] {
        let s = setup().await;
        let bytes = content(90_000, 7);
        let stored = &bytes[..60_000];
        let id = s.initialize(Some(md5_hex(stored))).await;
        s.upload_part_of(id, bytes.len(), stored).await;
        leave_unverified(&s, id, stored.len() as u64, status).await;
        let restarted = s.restart();
        restarted.broker.recover_unverified_uploads().await;
        let view = published(&restarted, id).await;
        assert_eq!(
            view.sha256,
            Some(hex(&sha2::Sha256::digest(stored))),
            "after a stop in {status:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_after_a_last_patch_cut_off_before_it_completed_the_transfer_finishes_it() {
    let s = setup().await;
    let bytes = content(70_000, 11);
    let stored = &bytes[..50_000];
    let id = s.initialize(Some(md5_hex(stored))).await;
    s.upload_part_of(id, bytes.len(), stored).await;
    // Every byte durable and recorded, the transfer still UploadStarted, the broker still running.
    leave_unverified(
        &s,
        id,
        stored.len() as u64,
        FileTransferStatus::UploadStarted,
    )
    .await;
    let state = s.broker.tus_head(&s.sender, id, None).await.unwrap();
    assert_eq!(state.offset, stored.len() as u64);
    published(&s, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_upload_with_nothing_to_check_is_published_without_upload_processing() {
    let s = setup().await;
    let bytes = content(80_000, 13);
    let stored = &bytes[..30_000];
    let id = s.initialize(None).await;
    s.upload_part_of(id, bytes.len(), stored).await;
    leave_unverified(
        &s,
        id,
        stored.len() as u64,
        FileTransferStatus::UploadStarted,
    )
    .await;
    let restarted = s.restart();
    restarted.broker.recover_unverified_uploads().await;
    published(&restarted, id).await;
    let history = s.store.status_history(id, 0, 100).await.unwrap();
    assert!(
        history
            .iter()
            .all(|(_, h)| h.file_transfer_status != FileTransferStatus::UploadProcessing),
        "{history:?}"
    );
    assert!(!events_of(&s, id)
        .await
        .iter()
        .any(|t| t.ends_with("uploadprocessing")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumable_upload_that_does_not_match_its_declared_md5_loses_its_bytes() {
    let s = setup().await;
    let bytes = content(40_000, 17);
    let id = s.initialize(Some(md5_hex(b"something else"))).await;
    s.upload_part_of(id, bytes.len(), &bytes).await;
    wait_for(&s, id, FileTransferStatus::Failed).await;
    assert!(!s.blobs.holds(id), "the failed upload's bytes were removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concatenated_upload_that_does_not_match_its_declared_md5_loses_its_file_and_parts() {
    let s = setup().await;
    let bytes = content(60_000, 19);
    let id = s.initialize(Some(md5_hex(b"not the content"))).await;
    let pieces: Vec<&[u8]> = bytes.chunks(30_000).collect();
    let parts = s.create_parts(id, &pieces).await;
    s.send_parts(id, parts.iter().zip(pieces.iter().copied()))
        .await;
    s.join_parts(id, &parts).await;
    wait_for(&s, id, FileTransferStatus::Failed).await;
    assert!(
        !s.blobs.holds(id),
        "neither the joined file nor a part is kept"
    );
}
