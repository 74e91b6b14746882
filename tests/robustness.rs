//! Behaviour under awkward clients: HEAD, stalled bodies, oversized form fields, concurrent confirms,
//! odd but valid inputs.

use crate::common::*;
use crate::support::*;
use broker_protocol::resource::ResourceUpdate;
use broker_protocol::FileTransferStatus;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn head_on_download_tells_the_size_without_recording_a_download() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT], b"twelve bytes").await;
    let response = f
        .recipient
        .request(
            reqwest::Method::HEAD,
            &format!("/filetransfer/{id}/download"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-length"), "12");
    assert_eq!(header(&response, "accept-ranges"), "bytes");
    // Nothing was downloaded, so confirming is still refused.
    expect_problem(f.recipient.confirm_download(id).await, 400, "BRO-00019");
}

#[tokio::test]
async fn an_upload_that_goes_silent_is_cut_after_the_idle_timeout_and_can_be_retried() {
    // Timed (cut within 8 s): alone on the cores.
    let _alone = cpu_exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.min_data_rate = 0;
    config.server.upload_idle_timeout_secs = 1;
    let f = Fixture::on(TestServer::start_with(config).await).await;
    let id = f.initialize(&[RECIPIENT]).await;
    let token = f.server.token(SENDER, WRITE);
    let mut stream = connect(&f.server).await;
    stream
        .write_all(&upload_head(&f.server, id, &token, 1_000_000))
        .await
        .unwrap();
    stream.write_all(&[7u8; 1000]).await.unwrap();
    let started = std::time::Instant::now();
    let outcome = read_response(&mut stream, Duration::from_secs(10)).await;
    assert!(
        !matches!(outcome, Outcome::TimedOut),
        "the stalled upload was not cut"
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    let content = payload(5000, 3);
    upload_when_slot_is_free(&f.sender, id, &content)
        .await
        .unwrap();
    let overview = f.recipient.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.sha256.as_deref(),
        Some(sha256_hex(&content).as_str())
    );
}

#[tokio::test]
async fn a_huge_form_field_is_refused_without_buffering_it() {
    let f = Fixture::new().await;
    let form = Multipart::new()
        .text("Metadata.FileName", &"x".repeat(200_000))
        .file("FileTransfer", "a.bin", b"abc");
    let response = post_multipart(&f.sender, form).await;
    assert_eq!(response.status(), 400);
    // Refused by the field limit as it streams, not by validation after reading it whole.
    let body = response.text().await.unwrap();
    assert!(
        body.contains("Metadata.FileName") && body.contains("longer than 65536 bytes"),
        "{body}"
    );
    f.assert_no_transfers().await;
}

#[tokio::test]
async fn two_recipients_confirming_at_once_always_end_all_confirmed() {
    let f = Fixture::new().await;
    for _ in 0..10 {
        let id = f.publish(&[RECIPIENT, RECIPIENT_2], b"both").await;
        f.recipient
            .download(id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        f.recipient_2
            .download(id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            f.recipient.confirm_download(id),
            f.recipient_2.confirm_download(id)
        );
        a.unwrap();
        b.unwrap();
        let overview = f.sender.overview(id).await.unwrap();
        assert_eq!(
            overview.summary.file_transfer_status,
            FileTransferStatus::AllConfirmedDownloaded
        );
    }
}

#[tokio::test]
async fn negative_durations_are_refused() {
    let f = Fixture::new().await;
    let ttl = ResourceUpdate {
        file_transfer_time_to_live: Some("-P1D".into()),
        ..Default::default()
    };
    expect_problem(
        f.owner.configure_resource(RESOURCE, &ttl).await,
        400,
        "BRO-00014",
    );
    let grace = ResourceUpdate {
        purge_file_transfer_grace_period: Some("-PT1H".into()),
        ..Default::default()
    };
    expect_problem(
        f.owner.configure_resource(RESOURCE, &grace).await,
        400,
        "BRO-00017",
    );
}

#[tokio::test]
async fn a_required_party_that_is_no_organisation_number_is_a_validation_error() {
    let f = Fixture::new().await;
    let update = ResourceUpdate {
        required_party: Some("abc".into()),
        ..Default::default()
    };
    expect_validation(f.owner.configure_resource(RESOURCE, &update).await);
    let urn = ResourceUpdate {
        required_party: Some("urn:altinn:organization:identifier-no:991825827".into()),
        ..Default::default()
    };
    f.owner.configure_resource(RESOURCE, &urn).await.unwrap();
    assert_eq!(
        f.owner
            .resource(RESOURCE)
            .await
            .unwrap()
            .required_party
            .as_deref(),
        Some(SERVICE_OWNER)
    );
}

#[tokio::test]
async fn search_accepts_a_bare_date_as_asp_net_does() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let found = f
        .sender
        .search(&[
            ("resourceId", RESOURCE),
            ("from", "2000-01-01"),
            ("to", "2999-12-31T00:00:00"),
        ])
        .await
        .unwrap();
    assert_eq!(found, vec![id]);
}
