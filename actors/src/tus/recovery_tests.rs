//! What a stop leaves between a resumable upload's last byte and its publish, and what a failed check
//! leaves behind, through the broker on the in-memory adapters: the states are made through the ports,
//! as a crash leaves them, and a new broker on the same stores stands for the restart.

use crate::ports::metadata::TransferChange;
use crate::ports::upload_sessions::Advance;
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
        .advance(id, "", Advance::new(0, stored, now))
        .await
        .unwrap());
    if status != FileTransferStatus::UploadStarted {
        let change = TransferChange {
            new_status: Some((status, None)),
            ..TransferChange::new(id, FileTransferStatus::UploadStarted, 0, now)
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

/// A PATCH body that yields `bytes` in 64 KiB chunks, then breaks off (the client went away).
fn broken_off(
    bytes: &[u8],
) -> crate::tus::Patch<impl futures::Stream<Item = Result<bytes::Bytes, String>> + Unpin> {
    let mut chunks: Vec<Result<bytes::Bytes, String>> = bytes
        .chunks(64 << 10)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    chunks.push(Err("the connection was reset".into()));
    crate::tus::Patch {
        body: futures::stream::iter(chunks),
        new_length: None,
        len: None,
        checksum: None,
    }
}

/// Stops a resumable upload at 3/4 of its length (a PATCH broken off there), builds the broker anew on
/// the same stores, and sends the rest: what the new broker read back before that PATCH was answered,
/// and the published transfer.
async fn resume_after_a_restart(
    spoil_state: bool,
) -> (u64, crate::ports::metadata::TransferView, Vec<u8>) {
    let s = setup().await;
    let bytes = content(4 << 20, 23);
    let stopped = bytes.len() / 4 * 3;
    let id = s.initialize(Some(md5_hex(&bytes))).await;
    s.broker
        .tus_create::<futures::stream::Empty<Result<bytes::Bytes, String>>, String>(
            &s.sender,
            id,
            Some(bytes.len() as u64),
            None,
        )
        .await
        .unwrap();
    let offset = s
        .broker
        .tus_patch(&s.sender, id, None, 0, broken_off(&bytes[..stopped]))
        .await
        .unwrap();
    assert_eq!(
        offset, stopped as u64,
        "the bytes before the break are kept"
    );
    if spoil_state {
        // A state kept by a build whose format this one does not know.
        let row = s.store.get(id, "").await.unwrap().unwrap();
        let mut unknown = row
            .hash_state
            .clone()
            .expect("a state is kept with the offset");
        unknown[0] = 0xEE;
        let again = Advance::new(row.offset, row.offset, chrono::Utc::now()).hashed(Some(&unknown));
        assert!(s.store.advance(id, "", again).await.unwrap());
    }
    let restarted = s.restart();
    let read_before = restarted.blobs.file_bytes_read();
    let offset = restarted
        .broker
        .tus_patch(
            &restarted.sender,
            id,
            None,
            stopped as u64,
            crate::test_support::patch(&bytes[stopped..]),
        )
        .await
        .unwrap();
    assert_eq!(offset, bytes.len() as u64);
    let read = restarted.blobs.file_bytes_read() - read_before;
    (read, published(&restarted, id).await, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resumed_on_a_new_broker_reads_no_stored_byte_before_its_next_patch_is_acknowledged(
) {
    let (read, view, bytes) = resume_after_a_restart(false).await;
    assert_eq!(
        read, 0,
        "the hashes continued from the state kept with the offset"
    );
    assert_eq!(view.sha256, Some(hex(&sha2::Sha256::digest(&bytes))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_state_in_an_unknown_format_is_rebuilt_by_reading_the_stored_prefix_back() {
    let (read, view, bytes) = resume_after_a_restart(true).await;
    assert_eq!(
        read,
        (bytes.len() / 4 * 3) as u64,
        "the stored prefix was read back once"
    );
    assert_eq!(view.sha256, Some(hex(&sha2::Sha256::digest(&bytes))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_retried_after_a_stop_between_storing_its_file_and_publishing_it_replaces_the_file(
) {
    use crate::ports::{complete_object, BlobStore, ObjectKey};
    for resumable in [false, true] {
        let s = setup().await;
        let id = s.initialize(None).await;
        // The stop: the earlier attempt's file is complete in the store, the transfer UploadStarted.
        let lease = s.broker.lifecycle().begin_upload(id).await.unwrap();
        let file = ObjectKey::file(id);
        let mut writer = s.blobs.write_whole(&file, lease.token()).await.unwrap();
        let earlier = bytes::Bytes::from_static(b"the earlier attempt");
        writer
            .append(std::sync::Arc::new(vec![earlier]))
            .await
            .unwrap();
        let size = writer.commit().await.unwrap();
        complete_object(&s.blobs, &file, size).await.unwrap();
        // The process dies: nothing of it runs again, and its lease runs out.
        std::mem::forget(lease);
        s.clock.advance(chrono::Duration::minutes(1));
        let restarted = s.restart();
        let bytes = content(50_000, 3);
        if resumable {
            restarted.upload_part_of(id, bytes.len(), &bytes).await;
        } else {
            let body =
                futures::stream::iter(vec![Ok::<_, String>(bytes::Bytes::from(bytes.clone()))]);
            restarted
                .broker
                .upload(&restarted.sender, id, Some(bytes.len() as u64), body)
                .await
                .unwrap();
        }
        let view = published(&restarted, id).await;
        assert_eq!(
            view.sha256,
            Some(hex(&sha2::Sha256::digest(&bytes))),
            "the retried upload's bytes are the file (resumable: {resumable})"
        );
    }
}
