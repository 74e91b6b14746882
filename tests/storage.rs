//! What the disk can refuse: a storage failure during an upload (500 `8`, Failed, `uploadfailed`),
//! a declared length above every limit (400 `16`) and one above the free space (507 `9001`).

use crate::common::*;
use crate::support::*;
use broker_protocol::FileTransferStatus;

#[tokio::test]
async fn a_storage_failure_during_upload_is_500_bro_00008_and_fails_the_transfer() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    // A regular file where the blob's directory must go: the blob cannot be created.
    let blocker = f
        .server
        .data_dir
        .join("blobs")
        .join(&id.simple().to_string()[..2]);
    std::fs::write(blocker, b"in the way").unwrap();

    // Larger than the inline limit, so the bytes go to disk whatever the threshold.
    expect_problem(
        f.sender.upload(id, payload(100_000, 31)).await,
        500,
        "BRO-00008",
    );

    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Failed
    );
    assert_eq!(
        overview.summary.file_transfer_status_text,
        "Error occurred while uploading fileTransfer"
    );
    expect_problem(f.recipient.download(id, None).await, 403, "BRO-00007");
    let events = events_of(&f.maintenance, id).await;
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.event.type_ == "no.altinn.broker.uploadfailed")
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(
        failed[0].event.subject,
        "urn:altinn:organization:identifier-no:111111111"
    );
    assert_eq!(
        failed[0].event.data.role,
        broker_protocol::events::EventRole::Sender
    );
    assert!(events
        .iter()
        .all(|e| e.event.type_ != "no.altinn.broker.published"));
}

#[tokio::test]
async fn a_declared_length_above_the_global_maximum_is_400_bro_00016() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let token = f.server.token(SENDER, WRITE);
    let response = raw_request(
        &f.server,
        &upload_head(&f.server, id, &token, 100_000_000_000_000),
    )
    .await;
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(response.json()["code"], "BRO-00016");
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
async fn a_declared_length_above_the_free_space_is_507_bro_09001_and_the_upload_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.storage.reserve_bytes = u64::MAX / 2;
    let f = Fixture::on(TestServer::start_with(config).await).await;
    let id = f.initialize(&[RECIPIENT]).await;

    let token = f.server.token(SENDER, WRITE);
    let response = raw_request(&f.server, &upload_head(&f.server, id, &token, 1_000_000)).await;
    assert_eq!(response.status, 507, "{response:?}");
    assert_eq!(response.json()["code"], "BRO-09001");
    expect_problem(
        f.sender.upload(id, payload(1_000, 32)).await,
        507,
        "BRO-09001",
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

    // Limits are checked before free space.
    let response = raw_request(
        &f.server,
        &upload_head(&f.server, id, &token, 100_000_000_000_000),
    )
    .await;
    assert_eq!(response.json()["code"], "BRO-00016");

    // The same transfer uploads once the disk has room (same data dir, default test config).
    let f = Fixture::clients(f.server.restart().await);
    f.sender.upload(id, payload(1_000, 32)).await.unwrap();
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
async fn an_unexpected_failure_is_a_500_problem_with_the_path_as_instance() {
    let f = Fixture::new().await;
    // Larger than the inline limit, so the file is on disk whatever the threshold.
    let id = f.publish(&[RECIPIENT], &payload(100_000, 32)).await;
    // The stored bytes vanish behind the broker's back: the download cannot be served.
    let name = id.simple().to_string();
    std::fs::remove_file(f.server.data_dir.join("blobs").join(&name[..2]).join(&name)).unwrap();
    let response = f
        .recipient
        .request(
            reqwest::Method::GET,
            &format!("/filetransfer/{id}/download"),
        )
        .send()
        .await
        .unwrap();
    let body = expect_problem_response(response, 500, None).await;
    assert_eq!(body["title"], "Internal Server Error", "{body}");
    assert_eq!(
        body["type"], "https://tools.ietf.org/html/rfc9110#section-15.6.1",
        "{body}"
    );
    assert!(
        body["traceId"].as_str().is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    assert_eq!(
        body["instance"],
        format!("/broker/api/v1/filetransfer/{id}/download"),
        "spec 0.1: instance = the path; {body}"
    );
}
