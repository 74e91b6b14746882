//! Durability and interrupted uploads: a restart between every lifecycle step, an upload cut
//! mid-stream (with and without a restart before the retry), a stalled upload cut by the minimum data
//! rate, and a shutdown during an upload.

use crate::common::*;
use crate::support::*;
use broker_protocol::{FileTransferStatus, RecipientStatus};
use futures::SinkExt;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

/// Restarts the fixture's server on the same data dir (a new port, so new clients).
async fn restart(f: Fixture) -> Fixture {
    Fixture::clients(f.server.restart().await)
}

#[tokio::test]
async fn state_and_file_survive_a_restart_between_every_step() {
    let f = Fixture::new().await;
    let content = payload(700_000, 61);
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.property_list = Some([("k".to_string(), "v".to_string())].into());
    let keyed = |f: &Fixture| {
        f.sender
            .request(reqwest::Method::POST, "/filetransfer")
            .header("Idempotency-Key", "restart-key")
            .json(&body)
    };
    let response: serde_json::Value = keyed(&f).send().await.unwrap().json().await.unwrap();
    let id: Uuid = response["fileTransferId"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let f = restart(f).await;
    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Initialized
    );
    assert_eq!(
        overview.summary.property_list.get("k").map(String::as_str),
        Some("v")
    );
    let again: serde_json::Value = keyed(&f).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        again["fileTransferId"],
        id.to_string(),
        "the idempotency key survives a restart"
    );
    f.sender.upload(id, content.clone()).await.unwrap();

    let f = restart(f).await;
    let overview = f.recipient.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    assert_eq!(
        overview.summary.sha256.as_deref(),
        Some(sha256_hex(&content).as_str())
    );
    assert!(overview.published.is_some());
    f.assert_recipient_downloads(id, &content).await;

    let f = restart(f).await;
    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.recipients[0].current_recipient_file_transfer_status_code,
        RecipientStatus::DownloadStarted
    );
    f.recipient.confirm_download(id).await.unwrap();

    let f = restart(f).await;
    let details = f.sender.details(id).await.unwrap();
    assert_eq!(
        details.summary.file_transfer_status,
        FileTransferStatus::AllConfirmedDownloaded
    );
    let statuses: Vec<FileTransferStatus> = details
        .file_transfer_status_history
        .iter()
        .map(|h| h.file_transfer_status)
        .collect();
    use FileTransferStatus::*;
    assert_eq!(
        statuses,
        vec![
            Initialized,
            UploadStarted,
            Published,
            AllConfirmedDownloaded
        ]
    );
    let rows: Vec<RecipientStatus> = details
        .recipient_file_transfer_status_history
        .iter()
        .map(|h| h.recipient_file_transfer_status_code)
        .collect();
    assert_eq!(
        rows,
        vec![
            RecipientStatus::Initialized,
            RecipientStatus::DownloadStarted,
            RecipientStatus::DownloadConfirmed
        ]
    );
    let downloaded = f
        .recipient
        .download(id, Some("bytes=100-199"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&downloaded[..], &content[100..200]);
    assert_eq!(
        event_types_of(&f.maintenance, id).await,
        vec![
            "filetransferinitialized",
            "published",
            "published",
            "downloadconfirmed",
            "downloadconfirmed",
            "allconfirmeddownloaded"
        ]
    );
    assert_eq!(
        f.owner.service_owner().await.unwrap().name,
        "Test service owner"
    );
    assert_eq!(
        f.owner
            .resource(RESOURCE)
            .await
            .unwrap()
            .file_transfer_time_to_live,
        "30.00:00:00"
    );
}

/// Starts a raw upload declaring `declared` bytes, sends `sent` of them and waits until the server
/// has started storing; returns the open socket.
async fn start_partial_upload(
    f: &Fixture,
    id: Uuid,
    declared: u64,
    sent: usize,
) -> tokio::net::TcpStream {
    let token = f.server.token(SENDER, WRITE);
    let mut stream = connect(&f.server).await;
    stream
        .write_all(&upload_head(&f.server, id, &token, declared))
        .await
        .unwrap();
    stream.write_all(&payload(sent, 62)).await.unwrap();
    stream.flush().await.unwrap();
    wait_for_status(
        &f.sender,
        id,
        FileTransferStatus::UploadStarted,
        Duration::from_secs(10),
    )
    .await;
    stream
}

async fn assert_unpublished(f: &Fixture, id: Uuid) {
    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::UploadStarted
    );
    assert!(overview.published.is_none());
    assert_eq!(overview.summary.file_transfer_size, 0);
    expect_problem(f.recipient.download(id, None).await, 403, "BRO-00007");
    assert_eq!(
        event_types_of(&f.maintenance, id).await,
        vec!["filetransferinitialized"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_mid_stream_stays_upload_started_and_a_retry_publishes() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let stream = start_partial_upload(&f, id, 1_000_000, 100_000).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_unpublished(&f, id).await;

    let content = payload(300_000, 63);
    upload_when_slot_is_free(&f.sender, id, &content)
        .await
        .unwrap();
    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    assert_eq!(overview.summary.file_transfer_size, content.len() as i64);
    f.assert_recipient_downloads(id, &content).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_aborted_by_the_client_body_stream_stays_retryable() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let (mut tx, body) = channel_body();
    let client = f.sender.clone();
    let upload = tokio::spawn(async move { client.upload(id, body).await });
    tx.send(Ok(payload(50_000, 64))).await.unwrap();
    wait_for_status(
        &f.sender,
        id,
        FileTransferStatus::UploadStarted,
        Duration::from_secs(10),
    )
    .await;
    tx.send(Err(std::io::Error::other("the client's disk failed")))
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), upload)
        .await
        .expect("the client gives up")
        .unwrap();
    assert!(result.is_err(), "the aborted upload did not succeed");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_unpublished(&f, id).await;
    let content = payload(20_000, 65);
    upload_when_slot_is_free(&f.sender, id, &content)
        .await
        .unwrap();
    f.assert_recipient_downloads(id, &content).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cut_upload_and_a_restart_a_retry_publishes_the_right_bytes() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT, RECIPIENT_2]).await;
    let stream = start_partial_upload(&f, id, 2_000_000, 500_000).await;
    drop(stream);
    let f = restart(f).await;
    assert_unpublished(&f, id).await;

    let content = payload(1_200_000, 66);
    f.sender.upload(id, content.clone()).await.unwrap();
    let overview = f.recipient_2.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    assert_eq!(
        overview.summary.checksum.as_deref(),
        Some(md5_hex(&content).as_str())
    );
    let downloaded = f
        .recipient_2
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&downloaded), sha256_hex(&content));
    assert_eq!(
        event_types_of(&f.maintenance, id).await,
        vec![
            "filetransferinitialized",
            "published",
            "published",
            "published"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_cut_by_the_minimum_data_rate_and_can_be_retried() {
    // Timed (cut within 8 s): alone on the cores.
    let _alone = cpu_exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.min_data_rate = 1000;
    config.server.min_data_rate_grace_secs = 1;
    let f = Fixture::on(TestServer::start_with(config).await).await;
    let id = f.initialize(&[RECIPIENT]).await;

    let started = Instant::now();
    let mut stream = start_partial_upload(&f, id, 1_000_000, 10).await;
    // Stall: send nothing more. The server must answer or hang up within a few seconds.
    let outcome = read_response(&mut stream, Duration::from_secs(8)).await;
    let elapsed = started.elapsed();
    assert!(
        !matches!(outcome, Outcome::TimedOut),
        "the stalled upload was still open after {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    if let Outcome::Response(response) = &outcome {
        assert!((400..500).contains(&response.status), "{response:?}");
    }
    drop(stream);
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::UploadStarted
    );

    let content = payload(200_000, 67);
    upload_when_slot_is_free(&f.sender, id, &content)
        .await
        .unwrap();
    f.assert_recipient_downloads(id, &content).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_an_upload_leaves_it_retryable_after_the_restart() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let (mut tx, body) = channel_body();
    let client = f.sender.clone();
    let upload = tokio::spawn(async move { client.upload(id, body).await });
    tx.send(Ok(payload(30_000, 68))).await.unwrap();
    wait_for_status(
        &f.sender,
        id,
        FileTransferStatus::UploadStarted,
        Duration::from_secs(10),
    )
    .await;

    let f = tokio::time::timeout(Duration::from_secs(15), restart(f))
        .await
        .expect("the server stops despite the open upload");
    let result = tokio::time::timeout(Duration::from_secs(10), upload)
        .await
        .expect("the upload ends")
        .unwrap();
    match &result {
        Ok(()) => panic!("an upload cut by a shutdown must not succeed"),
        Err(e) if e.status().is_some() => {
            assert_eq!(
                (e.status(), e.code()),
                (Some(503), Some("BRO-09006")),
                "{e}"
            );
        }
        Err(_) => {} // the connection closed before an answer
    }
    drop(tx);
    assert_unpublished(&f, id).await;
    let content = payload(40_000, 69);
    f.sender.upload(id, content.clone()).await.unwrap();
    f.assert_recipient_downloads(id, &content).await;
}
