//! Bounded and strict tus input (issue 8): concatenation limits checked atomically, partial uploads
//! deleted or reached by their legacy URL, OPTIONS behind the sender's token, and the header grammar.

use crate::common::*;
use crate::support::*;
use crate::tus::{create_partial, expect_tus_refusal, finish, part_state, patch_url, tus_path};
use broker_protocol::client::BrokerClient;
use broker_protocol::FileTransferStatus;
use reqwest::Method;

/// A tus request (`Tus-Resumable: 1.0.0`) to `path`, a path under the API or a `Location` answered.
fn tus(client: &BrokerClient, method: Method, path: &str) -> reqwest::RequestBuilder {
    client
        .request(method, path.trim_start_matches("/broker/api/v1"))
        .header("tus-resumable", "1.0.0")
}

#[tokio::test]
async fn partial_uploads_whose_lengths_add_up_past_the_maximum_are_refused_at_creation() {
    let f = Fixture::new().await;
    f.limit_size(100).await;
    let id = f.initialize(&[RECIPIENT]).await;
    create_partial(&f, id, 60).await;
    let second = tus(&f.sender, Method::POST, &tus_path(id))
        .header("upload-concat", "partial")
        .header("upload-length", 60)
        .send()
        .await
        .unwrap();
    expect_problem_response(second, 400, Some("BRO-00016")).await;
    // What is left of the maximum may still be used.
    create_partial(&f, id, 40).await;
}

#[tokio::test]
async fn a_final_upload_is_checked_against_the_maximum_in_force_when_it_is_joined() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let a = create_partial(&f, id, 60).await;
    let b = create_partial(&f, id, 60).await;
    assert_eq!(patch_url(&f, &a, 0, &[1; 60]).await.status(), 204);
    assert_eq!(patch_url(&f, &b, 0, &[2; 60]).await.status(), 204);
    f.limit_size(100).await;
    let joined = finish(&f, id, &[&a, &b]).await;
    expect_problem_response(joined, 400, Some("BRO-00016")).await;
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::UploadStarted
    );
}

#[tokio::test]
async fn a_final_upload_listing_a_part_twice_is_refused() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let a = create_partial(&f, id, 10).await;
    assert_eq!(patch_url(&f, &a, 0, &[1; 10]).await.status(), 204);
    expect_tus_refusal(finish(&f, id, &[&a, &a]).await, 400, "is listed twice").await;
    // Nothing was joined: the part keeps its ten bytes, and listed once it publishes them.
    assert_eq!(part_state(&f, &a).await, (10, 10));
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::UploadStarted
    );
    assert_eq!(finish(&f, id, &[&a]).await.status(), 201);
    f.assert_published(id, &[1; 10]).await;
}

#[tokio::test]
async fn a_transfer_has_at_most_the_configured_number_of_partial_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.limits.max_tus_parts = 3;
    let f = Fixture::on(TestServer::start_with(config).await).await;
    let id = f.initialize(&[RECIPIENT]).await;
    let parts = futures::future::join_all((0..3).map(|_| create_partial(&f, id, 10))).await;
    let fourth = tus(&f.sender, Method::POST, &tus_path(id))
        .header("upload-concat", "partial")
        .header("upload-length", 10)
        .send()
        .await
        .unwrap();
    expect_problem_response(fourth, 400, Some("BRO-09011")).await;
    // Deleting a part makes room for another.
    let deleted = delete_url(&f, &parts[0]).await;
    assert_eq!(deleted.status(), 204);
    create_partial(&f, id, 10).await;
}

async fn delete_url(f: &Fixture, location: &str) -> reqwest::Response {
    tus(&f.sender, Method::DELETE, location)
        .send()
        .await
        .unwrap()
}

async fn head_url(f: &Fixture, location: &str) -> reqwest::Response {
    tus(&f.sender, Method::HEAD, location).send().await.unwrap()
}

#[tokio::test]
async fn deleting_a_partial_upload_answers_204_and_removes_it() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let part = create_partial(&f, id, 10).await;
    assert_eq!(patch_url(&f, &part, 0, &[1; 4]).await.status(), 204);
    assert_eq!(delete_url(&f, &part).await.status(), 204);
    assert_eq!(head_url(&f, &part).await.status(), 404);
    assert_eq!(delete_url(&f, &part).await.status(), 404);
    // Only the sender may delete a part.
    let other = create_partial(&f, id, 10).await;
    let refused = tus(&f.third_party, Method::DELETE, &other)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(head_url(&f, &other).await.status(), 200);
}

#[tokio::test]
async fn the_legacy_partial_url_is_served_as_the_partial_url() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let content = payload(30, 9);
    let part = create_partial(&f, id, 30).await;
    let legacy = part.replace("/partial/", "/");
    assert_eq!(
        patch_url(&f, &legacy, 0, &content[..10]).await.status(),
        204
    );
    let head = head_url(&f, &legacy).await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["upload-offset"], "10");
    assert_eq!(patch_url(&f, &part, 10, &content[10..]).await.status(), 204);
    assert_eq!(finish(&f, id, &[&legacy]).await.status(), 201);
    f.assert_published(id, &content).await;
}

#[tokio::test]
async fn a_tus_options_request_needs_the_senders_token_unless_it_is_a_cors_preflight() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let anonymous = f.server.anonymous();
    let bare = anonymous
        .request(Method::OPTIONS, &tus_path(id))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);
    let reader = f
        .recipient
        .request(Method::OPTIONS, &tus_path(id))
        .send()
        .await
        .unwrap();
    assert_eq!(reader.status(), 403);
    let sender = f
        .sender
        .request(Method::OPTIONS, &tus_path(id))
        .send()
        .await
        .unwrap();
    assert_eq!(sender.status(), 204);
    assert_eq!(sender.headers()["tus-version"], "1.0.0");
    let preflight = anonymous
        .request(Method::OPTIONS, &tus_path(id))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PATCH")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
}

#[tokio::test]
async fn tus_numbers_with_a_sign_or_other_characters_are_refused() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    for bad in ["+10", "1 0", "0x10", "10.0", "-1", "１０"] {
        let r = raw_request(
            &f.server,
            format!(
                "POST /broker/api/v1/filetransfer/upload/tus/{id} HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\nUpload-Length: {bad}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n",
                f.server.token(SENDER, WRITE)
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(r.status, 400, "Upload-Length: {bad}");
    }
    assert_eq!(crate::tus::create(&f, id, 10).await.status(), 201);
    let r = tus(&f.sender, Method::PATCH, &tus_path(id))
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", "+0")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn upload_metadata_that_is_not_valid_tus_grammar_is_refused() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    for bad in [
        "filename !!!notbase64",
        "a YQ==,a Yg==",
        "a YQ==,",
        "a YQ== b",
    ] {
        let r = tus(&f.sender, Method::POST, &tus_path(id))
            .header("upload-length", 10)
            .header("upload-metadata", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "Upload-Metadata: {bad}");
    }
    // An empty header (tuspy sends one) holds no metadata.
    for good in ["filename cmVwb3J0LnBkZg==,is_confidential", ""] {
        let r = tus(&f.sender, Method::POST, &tus_path(id))
            .header("upload-length", 10)
            .header("upload-metadata", good)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "Upload-Metadata: {good:?}");
    }
}

#[tokio::test]
async fn after_a_tus_delete_the_senders_expired_token_may_start_the_upload_again() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    assert_eq!(crate::tus::create(&f, id, 20).await.status(), 201);
    let deleted = tus(&f.sender, Method::DELETE, &tus_path(id))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let expired = broker::auth::dev_issuer::DevIssuer::load(&f.server.data_dir, "broker-dev")
        .unwrap()
        .mint(SENDER, WRITE, chrono::Duration::seconds(-120))
        .unwrap();
    let expired = f.server.anonymous().with_token(expired);
    let again = tus(&expired, Method::POST, &tus_path(id))
        .header("upload-length", 20)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
}

#[tokio::test]
async fn deleting_the_transfers_upload_takes_its_parts_along() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let part = create_partial(&f, id, 10).await;
    assert_eq!(patch_url(&f, &part, 0, &[1; 10]).await.status(), 204);
    assert_eq!(crate::tus::create(&f, id, 10).await.status(), 201);
    let deleted = tus(&f.sender, Method::DELETE, &tus_path(id))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    // The part is gone with its bytes: a final over it is refused instead of publishing a hole.
    assert_eq!(head_url(&f, &part).await.status(), 404);
    assert_eq!(finish(&f, id, &[&part]).await.status(), 400);
}
