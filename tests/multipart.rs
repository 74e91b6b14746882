//! Initialize + upload in one multipart/form-data request (spec 1.4): the field names, repeated and
//! indexed recipients, property lists, a checksum, and the validation and resource errors of 1.2.

use crate::common::*;
use crate::support::*;
use broker_protocol::FileTransferStatus;
use serde_json::Value;
use uuid::Uuid;

#[tokio::test]
async fn multipart_form_data_initializes_and_uploads_in_one_request() {
    let f = Fixture::new().await;
    let content = payload(200_000, 13);
    let form = Multipart::new()
        .text("Metadata.FileName", "form.bin")
        .text("Metadata.ResourceId", RESOURCE)
        .text("Metadata.Sender", SENDER)
        .text("Metadata.Recipients", RECIPIENT)
        .text("Metadata.Recipients", RECIPIENT_2)
        .text("Metadata.PropertyList.Case", "4711")
        .text("Metadata.PropertyList.kind", "test")
        .text("Metadata.SendersFileTransferReference", "form-ref")
        .text("Metadata.Checksum", &md5_hex(&content))
        .file("FileTransfer", "form.bin", &content);
    let response = post_multipart(&f.sender, form).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    let id: Uuid = body["fileTransferId"].as_str().unwrap().parse().unwrap();

    let overview = f.recipient_2.overview(id).await.unwrap();
    let s = &overview.summary;
    assert_eq!(s.file_transfer_status, FileTransferStatus::Published);
    assert_eq!(s.file_name, "form.bin");
    assert_eq!(s.resource_id, RESOURCE);
    assert_eq!(s.sender, SENDER);
    assert_eq!(
        s.senders_file_transfer_reference.as_deref(),
        Some("form-ref")
    );
    assert_eq!(s.file_transfer_size, content.len() as i64);
    assert_eq!(s.checksum.as_deref(), Some(md5_hex(&content).as_str()));
    let recipients: Vec<&str> = s.recipients.iter().map(|r| r.recipient.as_str()).collect();
    assert_eq!(recipients, vec![RECIPIENT, RECIPIENT_2]);
    assert_eq!(
        s.property_list.get("Case").map(String::as_str),
        Some("4711")
    );
    assert_eq!(
        s.property_list.get("kind").map(String::as_str),
        Some("test")
    );
    f.assert_recipient_downloads(id, &content).await;
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

#[tokio::test]
async fn multipart_field_names_bind_case_insensitively_and_recipients_may_be_indexed() {
    let f = Fixture::new().await;
    let content = payload(1_000, 14);
    let form = Multipart::new()
        .text("metadata.filename", "lower.bin")
        .text("METADATA.RESOURCEID", RESOURCE)
        .text("Metadata.sender", SENDER)
        .text("Metadata.Recipients[0]", RECIPIENT)
        .text("Metadata.Recipients[1]", RECIPIENT_2)
        .text("Metadata.SendersFileTransferReference", "r")
        .file("fileTransfer", "lower.bin", &content);
    let response = post_multipart(&f.sender, form).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    let id: Uuid = body["fileTransferId"].as_str().unwrap().parse().unwrap();
    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(overview.summary.file_name, "lower.bin");
    assert_eq!(overview.summary.recipients.len(), 2);
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
}

#[tokio::test]
async fn multipart_with_a_wrong_checksum_fails_the_transfer_with_bro_00009() {
    let f = Fixture::new().await;
    let content = payload(1_000, 15);
    let form = Multipart::new()
        .text("Metadata.FileName", "bad.bin")
        .text("Metadata.ResourceId", RESOURCE)
        .text("Metadata.Sender", SENDER)
        .text("Metadata.Recipients", RECIPIENT)
        .text("Metadata.SendersFileTransferReference", "r")
        .text("Metadata.Checksum", &md5_hex(b"something else"))
        .file("FileTransfer", "bad.bin", &content);
    let response = post_multipart(&f.sender, form).await;
    expect_problem_response(response, 400, Some("BRO-00009")).await;
    let found = f
        .sender
        .search(&[("resourceId", RESOURCE), ("status", "Failed")])
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "the transfer exists and has failed");
}

#[tokio::test]
async fn multipart_without_the_file_part_is_a_validation_problem_and_creates_nothing() {
    let f = Fixture::new().await;
    let form = Multipart::new()
        .text("Metadata.FileName", "none.bin")
        .text("Metadata.ResourceId", RESOURCE)
        .text("Metadata.Sender", SENDER)
        .text("Metadata.Recipients", RECIPIENT)
        .text("Metadata.SendersFileTransferReference", "r");
    let body = expect_problem_response(post_multipart(&f.sender, form).await, 400, None).await;
    assert!(
        body["errors"].as_object().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    f.assert_no_transfers().await;
}

#[tokio::test]
async fn multipart_with_invalid_metadata_is_a_validation_problem_and_creates_nothing() {
    let f = Fixture::new().await;
    let form = Multipart::new()
        .text("Metadata.ResourceId", RESOURCE)
        .text("Metadata.Sender", SENDER)
        .text("Metadata.Recipients", "not-an-org")
        .text("Metadata.SendersFileTransferReference", "r")
        .file("FileTransfer", "x.bin", b"x");
    let body = expect_problem_response(post_multipart(&f.sender, form).await, 400, None).await;
    let errors = body["errors"].as_object().unwrap();
    assert!(
        errors
            .keys()
            .any(|k| k.to_ascii_lowercase().contains("filename")),
        "{body}"
    );
    assert!(
        errors
            .keys()
            .any(|k| k.to_ascii_lowercase().contains("recipients")),
        "{body}"
    );
    f.assert_no_transfers().await;
}

#[tokio::test]
async fn multipart_on_a_resource_never_configured_is_400_bro_00025() {
    let f = Fixture::new().await;
    let form = Multipart::new()
        .text("Metadata.FileName", "f.bin")
        .text("Metadata.ResourceId", "not-configured")
        .text("Metadata.Sender", SENDER)
        .text("Metadata.Recipients", RECIPIENT)
        .text("Metadata.SendersFileTransferReference", "r")
        .file("FileTransfer", "f.bin", b"data");
    expect_problem_response(
        post_multipart(&f.sender, form).await,
        400,
        Some("BRO-00025"),
    )
    .await;
}
