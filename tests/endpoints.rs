//! The happy path of the file-transfer endpoints (spec 1.2-1.9): initialize (with Idempotency-Key),
//! binary upload, overview, details, download and confirm.

use crate::common::*;
use crate::support::*;
use broker_protocol::transfer::FileTransferInitialize;
use broker_protocol::{FileTransferStatus, RecipientStatus};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

async fn get_json(client: &broker_protocol::client::BrokerClient, path: &str) -> Value {
    let r = client.request(Method::GET, path).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "GET {path}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn initialize_answers_a_lower_case_guid_and_the_transfer_starts_initialized() {
    let f = Fixture::new().await;
    let response = f
        .sender
        .request(Method::POST, "/filetransfer")
        .json(&json!({
            "fileName": "report.pdf", "resourceId": RESOURCE, "sendersFileTransferReference": "ref-1",
            "sender": SENDER, "recipients": [RECIPIENT, RECIPIENT_2], "propertyList": {"Key": "value"}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(header(&response, "content-type").starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    let raw_id = body["fileTransferId"].as_str().expect("fileTransferId");
    assert_eq!(raw_id.len(), 36, "{raw_id}");
    assert_eq!(raw_id, raw_id.to_ascii_lowercase());
    let id: Uuid = raw_id.parse().unwrap();

    let overview = get_json(&f.sender, &format!("/filetransfer/{id}")).await;
    assert_eq!(overview["fileTransferId"], raw_id);
    assert_eq!(overview["resourceId"], RESOURCE);
    assert_eq!(overview["fileName"], "report.pdf");
    assert_eq!(overview["sendersFileTransferReference"], "ref-1");
    assert_eq!(overview["fileTransferStatus"], "Initialized");
    assert_eq!(overview["fileTransferStatusText"], "Ready for upload");
    assert_eq!(overview["fileTransferSize"], 0);
    assert_eq!(overview["useVirusScan"], false);
    assert_eq!(overview["sender"], SENDER);
    assert_eq!(overview["propertyList"], json!({"Key": "value"}));
    assert!(overview["published"].is_null());
    assert!(overview.as_object().unwrap().contains_key("published"));
    let recipients = overview["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 2);
    for (r, org) in recipients.iter().zip([RECIPIENT, RECIPIENT_2]) {
        assert_eq!(r["recipient"], org);
        assert_eq!(r["currentRecipientFileTransferStatusCode"], "Initialized");
        assert_eq!(r["currentRecipientFileTransferStatusText"], "Initialized");
    }
    let created = overview["created"].as_str().unwrap();
    assert!(created.ends_with("+00:00"), "{created}");
    let typed = f.sender.overview(id).await.unwrap();
    assert_eq!(
        typed.summary.expiration_time - typed.summary.created,
        chrono::Duration::days(30),
        "the default time to live is 30 days"
    );
    assert_eq!(
        event_types_of(&f.maintenance, id).await,
        vec!["filetransferinitialized"]
    );
}

async fn initialize_with_key(
    f: &Fixture,
    key: &str,
    body: &FileTransferInitialize,
) -> reqwest::Response {
    f.sender
        .request(Method::POST, "/filetransfer")
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn id_of(response: reqwest::Response) -> Uuid {
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    body["fileTransferId"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_same_idempotency_key_and_body_from_the_same_sender_returns_the_same_id() {
    let f = Fixture::new().await;
    let body = f.initialize_body(&[RECIPIENT]);
    let first = id_of(initialize_with_key(&f, "key-1", &body).await).await;
    let again = id_of(initialize_with_key(&f, "key-1", &body).await).await;
    assert_eq!(first, again);
    let other_key = id_of(initialize_with_key(&f, "key-2", &body).await).await;
    assert_ne!(first, other_key);
    let no_key = f.sender.initialize(&body).await.unwrap();
    assert_ne!(no_key, first);
    assert_ne!(
        no_key,
        f.sender.initialize(&body).await.unwrap(),
        "without a key every call creates"
    );
    // Only one transfer (and one event) exists for the repeated key.
    let found = f.sender.search(&[("resourceId", RESOURCE)]).await.unwrap();
    assert_eq!(found.iter().filter(|i| **i == first).count(), 1);
    assert_eq!(found.len(), 4);
    assert_eq!(
        event_types_of(&f.maintenance, first).await,
        vec!["filetransferinitialized"]
    );
}

#[tokio::test]
async fn the_same_idempotency_key_with_a_different_body_gets_422_bro_09003() {
    let f = Fixture::new().await;
    let body = f.initialize_body(&[RECIPIENT]);
    id_of(initialize_with_key(&f, "key-1", &body).await).await;
    let mut changed = body.clone();
    changed.file_name = Some("other.pdf".into());
    let response = initialize_with_key(&f, "key-1", &changed).await;
    expect_problem_response(response, 422, Some("BRO-09003")).await;
}

#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_sender() {
    let f = Fixture::new().await;
    let first =
        id_of(initialize_with_key(&f, "shared-key", &f.initialize_body(&[RECIPIENT_2])).await)
            .await;
    let other_sender = f.server.client(RECIPIENT, WRITE);
    let mut body = f.initialize_body(&[RECIPIENT_2]);
    body.sender = Some(RECIPIENT.into());
    let response = other_sender
        .request(Method::POST, "/filetransfer")
        .header("Idempotency-Key", "shared-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    let second = id_of(response).await;
    assert_ne!(first, second, "another sender's key does not collide");
}

#[tokio::test]
async fn a_transfer_may_have_many_recipients() {
    let f = Fixture::new().await;
    let recipients: Vec<String> = (0..50)
        .map(|i| format!("0192:{:09}", 500_000_000 + i))
        .collect();
    let refs: Vec<&str> = recipients.iter().map(String::as_str).collect();
    let id = f.publish(&refs, b"for everyone").await;
    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(overview.summary.recipients.len(), 50);
    let last = f.server.client(&recipients[49], READ);
    assert_eq!(
        &last
            .download(id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()[..],
        b"for everyone"
    );
    let published = event_types_of(&f.maintenance, id)
        .await
        .into_iter()
        .filter(|t| t == "published")
        .count();
    assert_eq!(published, 51, "one to the sender and one to each recipient");
}

#[tokio::test]
async fn a_binary_upload_publishes_the_file_and_records_its_checksums() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let content = payload(70_000, 11);
    let response = f
        .sender
        .request(Method::POST, &format!("/filetransfer/{id}/upload"))
        .header("content-type", "application/octet-stream")
        .body(content.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["fileTransferId"], id.to_string());

    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    assert_eq!(
        overview.summary.file_transfer_status_text,
        "Ready for download"
    );
    assert_eq!(overview.summary.file_transfer_size, content.len() as i64);
    assert_eq!(
        overview.summary.checksum.as_deref(),
        Some(md5_hex(&content).as_str())
    );
    assert_eq!(
        overview.summary.sha256.as_deref(),
        Some(sha256_hex(&content).as_str())
    );
    let published = overview.published.expect("published is set");
    assert_eq!(published, overview.summary.file_transfer_status_changed);
    assert_eq!(
        event_types_of(&f.maintenance, id).await,
        vec!["filetransferinitialized", "published", "published"]
    );
}

#[tokio::test]
async fn an_upload_with_the_declared_checksum_is_published_with_that_checksum() {
    let f = Fixture::new().await;
    let content = payload(5_000, 12);
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.checksum = Some(md5_hex(&content));
    let id = f.sender.initialize(&body).await.unwrap();
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .checksum
            .as_deref(),
        Some(md5_hex(&content).as_str()),
        "the declared checksum is shown from initialize on"
    );
    f.sender.upload(id, content.clone()).await.unwrap();
    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    assert_eq!(
        overview.summary.checksum.as_deref(),
        Some(md5_hex(&content).as_str())
    );
}

#[tokio::test]
async fn an_empty_file_can_be_uploaded_and_downloaded() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT], &[]).await;
    let overview = f.recipient.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    assert_eq!(overview.summary.file_transfer_size, 0);
    let response = f.recipient.download(id, None).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(header(&response, "content-length"), "0");
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn details_list_every_status_and_recipient_row_and_omit_published() {
    let f = Fixture::new().await;
    let content = payload(10_000, 16);
    let id = f.publish(&[RECIPIENT, RECIPIENT_2], &content).await;
    for _ in 0..2 {
        f.recipient
            .download(id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    f.recipient.confirm_download(id).await.unwrap();
    f.recipient_2
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    f.recipient_2.confirm_download(id).await.unwrap();

    let raw = get_json(&f.recipient, &format!("/filetransfer/{id}/details")).await;
    assert!(!raw.as_object().unwrap().contains_key("published"), "{raw}");
    let details = f.recipient.details(id).await.unwrap();
    assert_eq!(
        details.summary.file_transfer_status,
        FileTransferStatus::AllConfirmedDownloaded
    );
    assert_eq!(details.summary.file_transfer_status_text, "All downloaded");
    let statuses: Vec<_> = details
        .file_transfer_status_history
        .iter()
        .map(|h| (h.file_transfer_status, h.file_transfer_status_text.as_str()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (FileTransferStatus::Initialized, "Ready for upload"),
            (FileTransferStatus::UploadStarted, "Upload started"),
            (FileTransferStatus::Published, "Ready for download"),
            (FileTransferStatus::AllConfirmedDownloaded, "All downloaded"),
        ]
    );
    let rows = |org: &str| -> Vec<RecipientStatus> {
        details
            .recipient_file_transfer_status_history
            .iter()
            .filter(|h| h.recipient == org)
            .map(|h| h.recipient_file_transfer_status_code)
            .collect()
    };
    use RecipientStatus::*;
    assert_eq!(
        rows(RECIPIENT),
        vec![
            Initialized,
            DownloadStarted,
            DownloadStarted,
            DownloadConfirmed
        ],
        "every full download appends a DownloadStarted row"
    );
    assert_eq!(
        rows(RECIPIENT_2),
        vec![Initialized, DownloadStarted, DownloadConfirmed]
    );
    for h in &details.recipient_file_transfer_status_history {
        assert_eq!(
            h.recipient_file_transfer_status_text,
            h.recipient_file_transfer_status_code.text()
        );
    }
    let times: Vec<_> = details
        .file_transfer_status_history
        .iter()
        .map(|h| h.file_transfer_status_changed)
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

#[tokio::test]
async fn a_download_serves_the_whole_file_with_its_headers() {
    let f = Fixture::new().await;
    let content = payload(1_500_000, 17);
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.file_name = Some("rapport 2026.pdf".into());
    let id = f.sender.initialize(&body).await.unwrap();
    f.sender.upload(id, content.clone()).await.unwrap();

    let response = f.recipient.download(id, None).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        header(&response, "content-type"),
        "application/octet-stream"
    );
    assert_eq!(
        header(&response, "content-length"),
        content.len().to_string()
    );
    assert_eq!(header(&response, "accept-ranges"), "bytes");
    let disposition = header(&response, "content-disposition");
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert!(
        disposition.contains("filename=\"rapport 2026.pdf\""),
        "{disposition}"
    );
    assert!(
        disposition.contains("filename*=UTF-8''rapport%202026.pdf"),
        "{disposition}"
    );
    assert!(response.headers().get("content-range").is_none());
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len(), content.len());
    assert_eq!(sha256_hex(&bytes), sha256_hex(&content));

    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.recipients[0].current_recipient_file_transfer_status_code,
        RecipientStatus::DownloadStarted
    );
    assert_eq!(
        overview.summary.recipients[0].current_recipient_file_transfer_status_text,
        "Recipient has attempted to download fileTransfer"
    );
}

#[tokio::test]
async fn confirm_answers_204_with_an_empty_body_and_completes_a_single_recipient_transfer() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT], b"hello").await;
    f.recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let response = f
        .recipient
        .request(Method::POST, &format!("/filetransfer/{id}/confirmdownload"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    assert!(response.bytes().await.unwrap().is_empty());
    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::AllConfirmedDownloaded
    );
    let r = &overview.summary.recipients[0];
    assert_eq!(
        r.current_recipient_file_transfer_status_code,
        RecipientStatus::DownloadConfirmed
    );
    assert_eq!(
        r.current_recipient_file_transfer_status_text,
        "Recipient has downloaded fileTransfer"
    );
}

#[tokio::test]
async fn downloading_after_confirming_keeps_download_confirmed_but_moves_the_time() {
    let f = Fixture::new().await;
    let content = payload(4_000, 18);
    let id = f.publish(&[RECIPIENT], &content).await;
    f.recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    f.recipient.confirm_download(id).await.unwrap();
    let before = f.sender.overview(id).await.unwrap().summary.recipients[0].clone();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = f
        .recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        sha256_hex(&again),
        sha256_hex(&content),
        "downloads stay allowed when all confirmed"
    );
    let after = f.sender.overview(id).await.unwrap().summary.recipients[0].clone();
    assert_eq!(
        after.current_recipient_file_transfer_status_code,
        RecipientStatus::DownloadConfirmed
    );
    assert!(
        after.current_recipient_file_transfer_status_changed
            > before.current_recipient_file_transfer_status_changed,
        "{before:?} -> {after:?}"
    );
}

#[tokio::test]
async fn overview_and_details_accept_an_upper_case_id() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let upper = id.to_string().to_ascii_uppercase();
    let overview = get_json(&f.sender, &format!("/filetransfer/{upper}")).await;
    assert_eq!(overview["fileTransferId"], id.to_string());
    get_json(&f.recipient, &format!("/filetransfer/{upper}/details")).await;
}
