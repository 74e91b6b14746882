//! Finalization of resumable uploads (spec 4.5): the last PATCH or the final POST is answered at once;
//! the whole-file MD5 check and the publish follow in the background, with the events of each path; a
//! mismatch fails the transfer with `uploadfailed`. (That the bytes go, and what a stop before the check
//! leaves, are shown on the in-memory adapters in the actors crate: `tus/recovery_tests.rs`.)

use crate::common::*;
use crate::support::*;
use crate::tus::*;
use broker_protocol::FileTransferStatus;
use reqwest::Method;
use std::time::Duration;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

async fn initialize_declaring(f: &Fixture, md5: &str) -> Uuid {
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.checksum = Some(md5.to_string());
    f.sender.initialize(&body).await.unwrap()
}

/// Uploads `content` as two parallel parts and sends the final POST; returns its answer's status.
async fn upload_in_two_parts(f: &Fixture, id: Uuid, content: &[u8]) -> u16 {
    let (a, b) = content.split_at(content.len() / 2);
    let first = create_partial(f, id, a.len()).await;
    let second = create_partial(f, id, b.len()).await;
    let (ra, rb) = tokio::join!(patch_url(f, &first, 0, a), patch_url(f, &second, 0, b));
    assert_eq!((ra.status().as_u16(), rb.status().as_u16()), (204, 204));
    finish(f, id, &[&first, &second]).await.status().as_u16()
}

#[tokio::test]
async fn a_declared_md5_is_checked_after_the_last_patch_and_uploadprocessing_comes_before_published(
) {
    let f = Fixture::new().await;
    let content = payload(1_500_000, 501);
    let id = initialize_declaring(&f, &md5_hex(&content)).await;
    create(&f, id, content.len() as u64).await;
    let r = patch(&f, id, 0, &content).await;
    assert_eq!(r.status(), 204);
    assert_eq!(offset_of(&r), content.len() as u64);
    f.assert_published(id, &content).await;
    let events = event_types_of(&f.maintenance, id).await;
    let processing = events.iter().position(|e| e == "uploadprocessing");
    let published = events.iter().position(|e| e == "published");
    assert!(
        processing.is_some() && processing < published,
        "events in order: {events:?}"
    );
    f.assert_recipient_downloads(id, &content).await;
}

#[tokio::test]
async fn without_a_declared_md5_the_last_patch_publishes_at_once_without_uploadprocessing() {
    let f = Fixture::new().await;
    let content = payload(300_000, 502);
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, content.len() as u64).await;
    assert_eq!(patch(&f, id, 0, &content).await.status(), 204);
    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    assert!(!event_types_of(&f.maintenance, id)
        .await
        .contains(&"uploadprocessing".to_string()));
}

#[tokio::test]
async fn a_declared_md5_mismatch_answers_204_then_fails_with_uploadfailed_and_removes_the_bytes() {
    let f = Fixture::new().await;
    let content = payload(1_200_000, 503);
    let id = initialize_declaring(&f, &md5_hex(b"something else")).await;
    create(&f, id, content.len() as u64).await;
    let r = patch(&f, id, 0, &content).await;
    assert_eq!(r.status(), 204, "the check runs after the answer");
    let overview = wait_for_status(&f.sender, id, FileTransferStatus::Failed, WAIT).await;
    assert_eq!(
        overview.summary.file_transfer_status_text,
        "Checksum mismatch"
    );
    let events = event_types_of(&f.maintenance, id).await;
    assert!(events.contains(&"uploadfailed".to_string()), "{events:?}");
    assert!(!events.contains(&"published".to_string()), "{events:?}");
    // A failed transfer cannot be downloaded.
    expect_problem(f.recipient.download(id, None).await, 403, "BRO-00007");
}

#[tokio::test]
async fn a_concatenated_upload_is_processed_silently_and_published_after_the_final_post() {
    let f = Fixture::new().await;
    let content = payload(2_000_000, 504);
    let id = initialize_declaring(&f, &md5_hex(&content)).await;
    assert_eq!(upload_in_two_parts(&f, id, &content).await, 201);
    f.assert_published(id, &content).await;
    let events = event_types_of(&f.maintenance, id).await;
    assert!(
        !events.contains(&"uploadprocessing".to_string()),
        "{events:?}"
    );
    assert!(events.contains(&"published".to_string()), "{events:?}");
    let history = f.sender.details(id).await.unwrap();
    let statuses: Vec<_> = history
        .file_transfer_status_history
        .iter()
        .map(|s| s.file_transfer_status)
        .collect();
    assert!(
        statuses.contains(&FileTransferStatus::UploadProcessing),
        "the final POST moves the transfer to UploadProcessing: {statuses:?}"
    );
    f.assert_recipient_downloads(id, &content).await;
}

#[tokio::test]
async fn a_concatenated_upload_that_does_not_match_its_declared_md5_fails_with_uploadfailed() {
    let f = Fixture::new().await;
    let content = payload(1_000_000, 505);
    let id = initialize_declaring(&f, &md5_hex(b"not the content")).await;
    assert_eq!(upload_in_two_parts(&f, id, &content).await, 201);
    wait_for_status(&f.sender, id, FileTransferStatus::Failed, WAIT).await;
    let events = event_types_of(&f.maintenance, id).await;
    assert!(events.contains(&"uploadfailed".to_string()), "{events:?}");
}

#[tokio::test]
async fn a_partial_upload_chunk_with_a_wrong_checksum_is_460_and_a_right_one_is_kept() {
    let f = Fixture::new().await;
    let content = payload(400_000, 506);
    let id = f.initialize(&[RECIPIENT]).await;
    let part = create_partial(&f, id, content.len()).await;
    let send = |bytes: Vec<u8>, offset: u64, checksum: String| {
        f.sender
            .request(Method::PATCH, part.trim_start_matches("/broker/api/v1"))
            .header("tus-resumable", "1.0.0")
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset)
            .header("upload-checksum", checksum)
            .body(bytes)
            .send()
    };
    let (a, b) = content.split_at(150_000);
    let wrong = send(a.to_vec(), 0, upload_checksum("sha256", b"other"))
        .await
        .unwrap();
    assert_eq!(wrong.status(), 460);
    let right = send(a.to_vec(), 0, upload_checksum("md5", a))
        .await
        .unwrap();
    assert_eq!((right.status().as_u16(), offset_of(&right)), (204, 150_000));
    let rest = send(b.to_vec(), 150_000, upload_checksum("sha1", b))
        .await
        .unwrap();
    assert_eq!(rest.status(), 204);
    assert_eq!(finish(&f, id, &[&part]).await.status(), 201);
    f.assert_published(id, &content).await;
}
