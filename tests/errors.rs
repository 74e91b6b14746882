//! The error codes of the per-transfer endpoints (spec 1.3-1.9): 404 `1`, bad ids, 401 `6`, 409 `4`,
//! checksum mismatch `9`, 403 `7`, 416 `29`, the confirm rules `3`/`19`/`10`, 415 and size limit `16`.

use crate::common::*;
use crate::support::*;
use broker_protocol::FileTransferStatus;
use futures::SinkExt;
use reqwest::Method;
use std::time::Duration;
use uuid::Uuid;

/// The per-transfer endpoints, each with the caller that is allowed to use it.
fn per_transfer_calls(f: &Fixture, id: &str) -> Vec<(&'static str, reqwest::RequestBuilder)> {
    vec![
        (
            "overview",
            f.sender
                .request(Method::GET, &format!("/filetransfer/{id}")),
        ),
        (
            "details",
            f.sender
                .request(Method::GET, &format!("/filetransfer/{id}/details")),
        ),
        (
            "upload",
            f.sender
                .request(Method::POST, &format!("/filetransfer/{id}/upload"))
                .header("content-type", "application/octet-stream")
                .body(b"bytes".to_vec()),
        ),
        (
            "download",
            f.recipient
                .request(Method::GET, &format!("/filetransfer/{id}/download")),
        ),
        (
            "confirm",
            f.recipient
                .request(Method::POST, &format!("/filetransfer/{id}/confirmdownload")),
        ),
    ]
}

#[tokio::test]
async fn an_unknown_id_is_404_bro_00001_on_every_per_transfer_endpoint() {
    let f = Fixture::new().await;
    let unknown = Uuid::new_v4().to_string();
    for (name, request) in per_transfer_calls(&f, &unknown) {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 404, "{name}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "BRO-00001", "{name}: {body}");
    }
}

#[tokio::test]
async fn a_non_guid_id_is_a_400_validation_problem_on_every_per_transfer_endpoint() {
    let f = Fixture::new().await;
    for (name, request) in per_transfer_calls(&f, "not-a-guid") {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 400, "{name}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body.get("code").is_none_or(|c| c.is_null()),
            "{name}: {body}"
        );
        assert!(
            body["errors"].as_object().is_some_and(|e| !e.is_empty()),
            "{name}: {body}"
        );
        assert_eq!(
            body["title"], "One or more validation errors occurred.",
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_scoped_third_party_gets_401_bro_00006_on_every_per_transfer_endpoint() {
    let f = Fixture::new().await;
    let published = f.publish(&[RECIPIENT], b"content").await;
    let initialized = f.initialize(&[RECIPIENT]).await;
    let tp = &f.third_party;
    expect_problem(tp.overview(published).await, 401, "BRO-00006");
    expect_problem(tp.details(published).await, 401, "BRO-00006");
    expect_problem(
        tp.upload(initialized, b"x".to_vec()).await,
        401,
        "BRO-00006",
    );
    expect_problem(tp.download(published, None).await, 401, "BRO-00006");
    expect_problem(tp.confirm_download(published).await, 401, "BRO-00006");
    assert_eq!(
        f.sender
            .overview(initialized)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::Initialized,
        "the refused upload changed nothing"
    );
}

#[tokio::test]
async fn uploading_again_after_publish_is_409_bro_00004() {
    let f = Fixture::new().await;
    let content = payload(2_000, 21);
    let id = f.publish(&[RECIPIENT], &content).await;
    expect_problem(
        f.sender.upload(id, b"replacement".to_vec()).await,
        409,
        "BRO-00004",
    );
    let body = f
        .recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        sha256_hex(&body),
        sha256_hex(&content),
        "the published file is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_upload_while_one_streams_gets_409_bro_00004() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let (mut tx, body) = channel_body();
    let first_client = f.sender.clone();
    let first = tokio::spawn(async move { first_client.upload(id, body).await });
    tx.send(Ok(b"first half, ".to_vec())).await.unwrap();
    wait_for_status(
        &f.sender,
        id,
        FileTransferStatus::UploadStarted,
        Duration::from_secs(10),
    )
    .await;

    expect_problem(
        f.sender.upload(id, b"intruder".to_vec()).await,
        409,
        "BRO-00004",
    );
    expect_problem(f.recipient.download(id, None).await, 403, "BRO-00007");

    tx.send(Ok(b"second half".to_vec())).await.unwrap();
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("first upload finishes")
        .unwrap()
        .unwrap();
    let body = f
        .recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], b"first half, second half");
}

#[tokio::test]
async fn a_checksum_mismatch_is_400_bro_00009_and_the_transfer_fails() {
    let f = Fixture::new().await;
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.checksum = Some(md5_hex(b"what the sender promised"));
    let id = f.sender.initialize(&body).await.unwrap();
    expect_problem(
        f.sender.upload(id, b"what the sender sent".to_vec()).await,
        400,
        "BRO-00009",
    );

    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Failed
    );
    assert_eq!(
        overview.summary.file_transfer_status_text,
        "Checksum mismatch"
    );
    assert!(overview.published.is_none());
    expect_problem(f.recipient.download(id, None).await, 403, "BRO-00007");
    expect_problem(
        f.sender
            .upload(id, b"what the sender promised".to_vec())
            .await,
        409,
        "BRO-00004",
    );
    let types = event_types_of(&f.maintenance, id).await;
    assert_eq!(
        types,
        vec!["filetransferinitialized"],
        "no published and no uploadfailed event on this path"
    );
}

#[tokio::test]
async fn a_range_starting_at_or_past_the_end_is_416_bro_00029() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT], &payload(100, 22)).await;
    expect_problem(
        f.recipient.download(id, Some("bytes=100-")).await,
        416,
        "BRO-00029",
    );
    expect_problem(
        f.recipient.download(id, Some("bytes=500-600")).await,
        416,
        "BRO-00029",
    );
}

#[tokio::test]
async fn downloading_before_the_file_is_published_is_403_bro_00007() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    expect_problem(f.recipient.download(id, None).await, 403, "BRO-00007");
    expect_problem(
        f.recipient.download(id, Some("bytes=0-1")).await,
        403,
        "BRO-00007",
    );
}

#[tokio::test]
async fn confirming_before_the_upload_is_400_bro_00003() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    expect_problem(f.recipient.confirm_download(id).await, 400, "BRO-00003");
}

#[tokio::test]
async fn confirming_before_any_download_is_400_bro_00019() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT, RECIPIENT_2], b"abc").await;
    f.recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    expect_problem(f.recipient_2.confirm_download(id).await, 400, "BRO-00019");
}

#[tokio::test]
async fn confirming_twice_while_published_is_an_idempotent_204() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT, RECIPIENT_2], b"abc").await;
    f.recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    for attempt in 0..2 {
        let response = f
            .recipient
            .request(Method::POST, &format!("/filetransfer/{id}/confirmdownload"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204, "attempt {attempt}");
    }
    let confirmed = event_types_of(&f.maintenance, id)
        .await
        .into_iter()
        .filter(|t| t == "downloadconfirmed")
        .count();
    assert_eq!(
        confirmed, 2,
        "one downloadconfirmed to the recipient and one to the sender, not repeated"
    );
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::Published
    );
}

#[tokio::test]
async fn confirming_after_all_confirmed_downloaded_is_400_bro_00010() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT], b"abc").await;
    f.recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    f.recipient.confirm_download(id).await.unwrap();
    expect_problem(f.recipient.confirm_download(id).await, 400, "BRO-00010");
}

#[tokio::test]
async fn a_binary_upload_with_another_content_type_is_415() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let response = f
        .sender
        .request(Method::POST, &format!("/filetransfer/{id}/upload"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::Initialized
    );
}

#[tokio::test]
async fn initialize_with_a_non_json_body_is_415() {
    let f = Fixture::new().await;
    let response = f
        .sender
        .request(Method::POST, "/filetransfer")
        .header("content-type", "text/plain")
        .body(serde_json::to_string(&f.initialize_body(&[RECIPIENT])).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
}

#[tokio::test]
async fn a_declared_length_above_the_resource_maximum_is_400_bro_00016_and_changes_nothing() {
    let f = Fixture::new().await;
    f.limit_size(100).await;
    let id = f.initialize(&[RECIPIENT]).await;
    expect_problem(
        f.sender.upload(id, payload(101, 23)).await,
        400,
        "BRO-00016",
    );
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::Initialized
    );
    f.sender.upload(id, payload(100, 23)).await.unwrap();
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_size,
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_growing_past_the_resource_maximum_is_cut_with_400_bro_00016() {
    let f = Fixture::new().await;
    f.limit_size(100).await;
    let id = f.initialize(&[RECIPIENT]).await;
    let (mut tx, body) = channel_body();
    let client = f.sender.clone();
    let upload = tokio::spawn(async move { client.upload(id, body).await });
    tx.send(Ok(vec![1u8; 80])).await.unwrap();
    tx.send(Ok(vec![2u8; 80])).await.unwrap();
    drop(tx);
    let result = tokio::time::timeout(Duration::from_secs(10), upload)
        .await
        .expect("answered")
        .unwrap();
    expect_problem(result, 400, "BRO-00016");
    expect_problem(f.recipient.download(id, None).await, 403, "BRO-00007");
    upload_when_slot_is_free(&f.sender, id, &payload(100, 24))
        .await
        .unwrap();
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::Published
    );
}
