//! Bounded and strict input (issue 8): recipients, JSON bodies, details, tus concatenation limits and
//! header grammar, the form-data upload in any order, and the smaller deviations from the spec.

use crate::common::*;
use crate::support::*;
use broker_protocol::FileTransferStatus;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

async fn post_json(
    client: &broker_protocol::client::BrokerClient,
    path: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    client
        .request(Method::POST, path)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn initialize_json(recipients: serde_json::Value) -> serde_json::Value {
    json!({
        "fileName": "report.pdf",
        "resourceId": RESOURCE,
        "sendersFileTransferReference": "ref",
        "sender": SENDER,
        "recipients": recipients,
    })
}

/// The `fileTransferId` of a 200 answer to initialize or an upload.
async fn transfer_id_of(response: reqwest::Response) -> uuid::Uuid {
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["fileTransferId"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn half_a_million_duplicate_recipients_get_a_400_at_once_and_other_clients_are_not_delayed() {
    // Timed (the refusal within a second, the others within half of one): alone on the cores.
    let _alone = cpu_exclusive().await;
    let f = Fixture::new().await;
    let recipients = vec![RECIPIENT; 500_000];
    let body = serde_json::to_vec(&initialize_json(json!(recipients))).unwrap();
    assert!(body.len() > 8_000_000, "{}", body.len());
    let started = Instant::now();
    let big = post_json(&f.sender, "/filetransfer", body);
    let others = async {
        // Initializes from other requests meanwhile, each timed.
        let mut slowest = Duration::ZERO;
        for _ in 0..5 {
            let t = Instant::now();
            f.initialize(&[RECIPIENT]).await;
            slowest = slowest.max(t.elapsed());
        }
        slowest
    };
    let (response, slowest) = tokio::join!(big, others);
    let elapsed = started.elapsed();
    let body = expect_problem_response(response, 400, None).await;
    let messages = body["errors"]["Recipients"].to_string();
    assert!(messages.contains("at most 1000 recipients"), "{body}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    assert!(
        slowest < Duration::from_millis(500),
        "another initialize took {slowest:?}"
    );
}

#[tokio::test]
async fn the_same_recipient_named_twice_or_in_two_forms_is_one_recipient() {
    let f = Fixture::new().await;
    let urn = format!(
        "urn:altinn:organization:identifier-no:{}",
        &RECIPIENT["0192:".len()..]
    );
    let body = initialize_json(json!([RECIPIENT, urn, RECIPIENT_2, RECIPIENT]));
    let r = post_json(
        &f.sender,
        "/filetransfer",
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    let id = transfer_id_of(r).await;
    let details = f.sender.details(id).await.unwrap();
    let named: Vec<&str> = details
        .summary
        .recipients
        .iter()
        .map(|r| r.recipient.as_str())
        .collect();
    assert_eq!(named, vec![RECIPIENT, RECIPIENT_2]);
    assert_eq!(details.recipient_file_transfer_status_history.len(), 2);
}

#[tokio::test]
async fn details_with_a_history_longer_than_a_page_list_every_row_in_order() {
    let f = Fixture::new().await;
    let recipients: Vec<String> = (0..1000)
        .map(|i| format!("0192:{:09}", 500_000_000 + i))
        .collect();
    let body = initialize_json(json!(recipients));
    let r = post_json(
        &f.sender,
        "/filetransfer",
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    let id = transfer_id_of(r).await;
    f.sender.upload(id, b"content".to_vec()).await.unwrap();
    let reader = f.server.client(&recipients[999], READ);
    for _ in 0..30 {
        reader
            .download(id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
    }
    let details = f.sender.details(id).await.unwrap();
    let history = &details.recipient_file_transfer_status_history;
    assert_eq!(history.len(), 1000 + 30);
    let initialized: Vec<&str> = history[..1000]
        .iter()
        .map(|h| h.recipient.as_str())
        .collect();
    assert_eq!(
        initialized,
        recipients.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(history[1000..]
        .iter()
        .all(|h| h.recipient == recipients[999]));
    let statuses: Vec<FileTransferStatus> = details
        .file_transfer_status_history
        .iter()
        .map(|s| s.file_transfer_status)
        .collect();
    assert_eq!(
        statuses,
        vec![
            FileTransferStatus::Initialized,
            FileTransferStatus::UploadStarted,
            FileTransferStatus::Published
        ]
    );
}

#[tokio::test]
async fn a_json_array_is_never_bound_where_an_object_is_expected() {
    let f = Fixture::new().await;
    f.limit_size(5000).await;
    for body in ["[777]", "[]", "\"x\"", "12"] {
        let r = f
            .owner
            .request(Method::PUT, &format!("/resource/{RESOURCE}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let problem = expect_problem_response(r, 400, None).await;
        assert!(problem["errors"]["$"].is_array(), "{body}: {problem}");
    }
    let resource = f.owner.resource(RESOURCE).await.unwrap();
    assert_eq!(resource.max_file_transfer_size, Some(5000));
}

#[tokio::test]
async fn a_json_value_of_the_wrong_kind_is_named_by_its_path_without_internal_type_names() {
    let f = Fixture::new().await;
    let r = f
        .owner
        .request(Method::PUT, &format!("/resource/{RESOURCE}"))
        .header("content-type", "application/json")
        .body(r#"{"maxFileTransferSize": true, "useManifestFileShim": "no"}"#)
        .send()
        .await
        .unwrap();
    let problem = expect_problem_response(r, 400, None).await;
    let text = problem.to_string();
    for leak in ["ResourceUpdate", "struct", "i64", "Option", "broker"] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    assert!(
        problem["errors"]["$.maxFileTransferSize"].is_array(),
        "{text}"
    );
    let r = post_json(
        &f.sender,
        "/filetransfer",
        br#"{"fileName":"a","recipients":"0192:222222222"}"#.to_vec(),
    )
    .await;
    let problem = expect_problem_response(r, 400, None).await;
    assert_eq!(
        problem["errors"]["$.recipients"][0],
        "The JSON value could not be converted to an array of strings."
    );
}

#[tokio::test]
async fn a_json_body_over_the_limit_gets_413_as_problem_details_declared_or_chunked() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits.max_json_body_bytes = 4096;
    let f = Fixture::on(TestServer::start_with(config).await).await;
    let mut body = initialize_json(json!([RECIPIENT]));
    body["sendersFileTransferReference"] = json!("r".repeat(5000));
    let bytes = serde_json::to_vec(&body).unwrap();
    let declared = post_json(&f.sender, "/filetransfer", bytes.clone()).await;
    expect_problem_response(declared, 413, Some("BRO-09008")).await;
    let (mut tx, chunked) = channel_body();
    let send = f
        .sender
        .request(Method::POST, "/filetransfer")
        .header("content-type", "application/json")
        .body(chunked)
        .send();
    let feed = async move {
        use futures::SinkExt;
        for piece in bytes.chunks(1000) {
            if tx.send(Ok(piece.to_vec())).await.is_err() {
                break;
            }
        }
    };
    let (response, ()) = tokio::join!(send, feed);
    expect_problem_response(response.unwrap(), 413, Some("BRO-09008")).await;
    f.assert_no_transfers().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_matched_without_regard_to_case() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let token = f.server.token(SENDER, READ);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = reqwest::Client::new()
            .get(f.server.api(&format!("/filetransfer/{id}")))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    let basic = reqwest::Client::new()
        .get(f.server.api(&format!("/filetransfer/{id}")))
        .header("authorization", format!("Basic {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
}

#[tokio::test]
async fn a_range_past_the_largest_dotnet_long_is_ignored_and_the_whole_file_served() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT], b"0123456789").await;
    for range in [
        "bytes=18446744073709551615-",
        "bytes=99999999999999999999-",
        "bytes=0-9223372036854775808",
    ] {
        let r = f
            .recipient
            .request(Method::GET, &format!("/filetransfer/{id}/download"))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{range}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"0123456789");
    }
    let largest = f
        .recipient
        .request(Method::GET, &format!("/filetransfer/{id}/download"))
        .header("range", "bytes=9223372036854775807-")
        .send()
        .await
        .unwrap();
    assert_eq!(largest.status(), 416);
}

async fn disposition_of(f: &Fixture, file_name: &str) -> (uuid::Uuid, String) {
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.file_name = Some(file_name.into());
    let id = f.sender.initialize(&body).await.unwrap();
    f.sender.upload(id, b"x".to_vec()).await.unwrap();
    let r = f.recipient.download(id, None).await.unwrap();
    (id, header(&r, "content-disposition"))
}

#[tokio::test]
async fn content_disposition_keeps_only_the_last_path_component_or_falls_back_to_the_id() {
    let f = Fixture::new().await;
    let (_, d) = disposition_of(&f, "../../etc/passwd").await;
    assert_eq!(
        d,
        "attachment; filename=\"passwd\"; filename*=UTF-8''passwd"
    );
    let (id, d) = disposition_of(&f, "..\\\u{7}").await;
    assert_eq!(
        d,
        format!("attachment; filename=\"{id}\"; filename*=UTF-8''{id}")
    );
}

#[tokio::test]
async fn a_form_refused_for_its_size_leaves_no_transfer_behind() {
    let f = Fixture::new().await;
    f.limit_size(100).await;
    let form = Multipart::new()
        .text("Metadata.FileName", "big.bin")
        .text("Metadata.ResourceId", RESOURCE)
        .text("Metadata.SendersFileTransferReference", "ref")
        .text("Metadata.Sender", SENDER)
        .text("Metadata.Recipients", RECIPIENT)
        .file("FileTransfer", "big.bin", &payload(5000, 1));
    let response = post_multipart(&f.sender, form).await;
    expect_problem_response(response, 400, Some("BRO-00016")).await;
    f.assert_no_transfers().await;
    assert!(f
        .recipient
        .search(&[("resourceId", RESOURCE)])
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_form_whose_file_part_comes_before_the_metadata_is_bound_and_published() {
    let f = Fixture::new().await;
    let content = payload(100_000, 5);
    let form = Multipart::new()
        .file("FileTransfer", "first.bin", &content)
        .text("Metadata.FileName", "first.bin")
        .text("Metadata.ResourceId", RESOURCE)
        .text("Metadata.SendersFileTransferReference", "ref")
        .text("Metadata.Sender", SENDER)
        .text("Metadata.Recipients", RECIPIENT);
    let response = post_multipart(&f.sender, form).await;
    let id = transfer_id_of(response).await;
    f.assert_published(id, &content).await;
    assert_eq!(
        f.sender.overview(id).await.unwrap().summary.file_name,
        "first.bin"
    );
}

#[tokio::test]
async fn a_form_whose_metadata_after_the_file_is_refused_leaves_nothing_behind() {
    let f = Fixture::new().await;
    f.limit_size(100).await;
    let big = Multipart::new()
        .file("FileTransfer", "a.bin", &payload(500, 2))
        .text("Metadata.FileName", "a.bin")
        .text("Metadata.ResourceId", RESOURCE)
        .text("Metadata.SendersFileTransferReference", "ref")
        .text("Metadata.Sender", SENDER)
        .text("Metadata.Recipients", RECIPIENT);
    expect_problem_response(post_multipart(&f.sender, big).await, 400, Some("BRO-00016")).await;
    let foreign_sender = Multipart::new()
        .file("FileTransfer", "a.bin", b"small")
        .text("Metadata.FileName", "a.bin")
        .text("Metadata.ResourceId", RESOURCE)
        .text("Metadata.SendersFileTransferReference", "ref")
        .text("Metadata.Sender", THIRD_PARTY)
        .text("Metadata.Recipients", RECIPIENT);
    expect_problem_response(
        post_multipart(&f.sender, foreign_sender).await,
        401,
        Some("BRO-00006"),
    )
    .await;
    f.assert_no_transfers().await;
}

#[tokio::test]
async fn a_form_with_an_empty_file_part_publishes_an_empty_file() {
    let f = Fixture::new().await;
    let form = Multipart::new()
        .file("FileTransfer", "empty.bin", b"")
        .text("Metadata.FileName", "empty.bin")
        .text("Metadata.ResourceId", RESOURCE)
        .text("Metadata.SendersFileTransferReference", "ref")
        .text("Metadata.Sender", SENDER)
        .text("Metadata.Recipients", RECIPIENT);
    let response = post_multipart(&f.sender, form).await;
    let id = transfer_id_of(response).await;
    f.assert_published(id, b"").await;
}

#[tokio::test]
async fn a_form_whose_client_goes_away_mid_file_leaves_nothing_behind() {
    use tokio::io::AsyncWriteExt;
    let f = Fixture::new().await;
    let (content_type, body) = Multipart::new()
        .text("Metadata.FileName", "cut.bin")
        .text("Metadata.ResourceId", RESOURCE)
        .text("Metadata.SendersFileTransferReference", "ref")
        .text("Metadata.Sender", SENDER)
        .text("Metadata.Recipients", RECIPIENT)
        .file("FileTransfer", "cut.bin", &payload(1 << 20, 3))
        .finish();
    let mut stream = connect(&f.server).await;
    let head = format!(
        "POST /broker/api/v1/filetransfer/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        f.server.token(SENDER, WRITE),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..body.len() / 2]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(stream);
    // No transfer appears, even once the broker has noticed the cut (that no bytes are kept is shown on
    // the in-memory adapters: actors/src/form_upload_tests.rs).
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.assert_no_transfers().await;
}

#[tokio::test]
async fn a_form_with_no_boundary_in_sight_is_refused_with_413_before_it_is_held_whole() {
    let f = Fixture::new().await;
    let garbage = vec![b'x'; 3 << 20];
    let response = f
        .sender
        .request(Method::POST, "/filetransfer/upload")
        .header("content-type", "multipart/form-data; boundary=never-sent")
        .body(garbage)
        .send()
        .await
        .unwrap();
    expect_problem_response(response, 413, Some("BRO-09008")).await;
}
