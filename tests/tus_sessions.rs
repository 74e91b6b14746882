//! tus upload sessions over time: expiry of untouched uploads, the sender's expired token on an active
//! upload, browsers' CORS preflights, and PATCHes that stall or are replaced.

use crate::common::*;
use crate::tus::*;
use broker_protocol::FileTransferStatus;
use reqwest::Method;

#[tokio::test]
async fn an_upload_left_untouched_expires_its_bytes_are_removed_and_a_new_one_can_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.tus_upload_expiry_secs = 1;
    config.server.tus_sweep_interval_secs = 1;
    let f = Fixture::on(TestServer::start_with(config).await).await;
    let id = f.initialize(&[RECIPIENT]).await;
    let created = create(&f, id, 100).await;
    assert!(created.headers().contains_key("upload-expires"));
    let r = patch(&f, id, 0, &[5; 40]).await;
    let expires = r.headers()["upload-expires"].to_str().unwrap().to_string();
    assert!(expires.ends_with(" GMT"), "{expires}");
    let name = id.simple().to_string();
    // An upload in progress keeps its parts in the transfer's own directory of the blob store.
    let blob = dir
        .path()
        .join("blobs")
        .join(&name[..2])
        .join(format!("{name}.d"));
    assert!(blob.exists());
    let mut gone = false;
    for _ in 0..100 {
        let h = f
            .sender
            .request(Method::HEAD, &tus_path(id))
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap();
        if h.status() == 404 && !blob.exists() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "the expired upload was not removed");
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::UploadStarted
    );
    let content = payload(100, 4);
    assert_eq!(create(&f, id, 100).await.status(), 201);
    assert_eq!(patch(&f, id, 0, &content).await.status(), 204);
    f.assert_recipient_downloads(id, &content).await;
}

fn expired_token(f: &Fixture, org: &str) -> String {
    broker::auth::dev_issuer::DevIssuer::load(&f.server.data_dir, "broker-dev")
        .unwrap()
        .mint(org, WRITE, chrono::Duration::seconds(-120))
        .unwrap()
}

#[tokio::test]
async fn an_expired_token_still_serves_the_senders_active_upload_and_nothing_else() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let expired = f.server.anonymous().with_token(expired_token(&f, SENDER));
    // No upload yet: an expired token cannot start one.
    let r = expired
        .request(Method::POST, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", 20)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    create(&f, id, 20).await;
    assert_eq!(patch(&f, id, 0, &[1; 10]).await.status(), 204);
    // The upload is active: HEAD and PATCH go on with the expired token.
    let h = expired
        .request(Method::HEAD, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let p = expired
        .request(Method::PATCH, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", 10)
        .body(vec![2u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(p.status(), 204);
    // Elsewhere the token is as expired as ever, and another org's expired token gets nothing.
    assert_eq!(expired.overview(id).await.unwrap_err().status(), Some(401));
    let other = f
        .server
        .anonymous()
        .with_token(expired_token(&f, THIRD_PARTY));
    let h = other
        .request(Method::HEAD, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 401);
}

#[tokio::test]
async fn browsers_get_cors_preflights_without_a_token_and_see_the_tus_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.server.cors_allowed_origins = vec!["https://app.example".into()];
    let f = Fixture::on(TestServer::start_with(config).await).await;
    let id = f.initialize(&[RECIPIENT]).await;
    let preflight = f
        .server
        .anonymous()
        .request(Method::OPTIONS, &tus_path(id))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PATCH")
        .header(
            "access-control-request-headers",
            "authorization,tus-resumable,upload-offset,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let created = f
        .sender
        .request(Method::POST, &tus_path(id))
        .header("origin", "https://app.example")
        .header("tus-resumable", "1.0.0")
        .header("upload-length", 10)
        .send()
        .await
        .unwrap();
    let exposed = created.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "location",
        "upload-offset",
        "upload-length",
        "upload-expires",
        "tus-resumable",
    ] {
        assert!(exposed.contains(h), "{h} not exposed: {exposed}");
    }
    // Another origin is not let in.
    let foreign = f
        .server
        .anonymous()
        .request(Method::OPTIONS, &tus_path(id))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "PATCH")
        .send()
        .await
        .unwrap();
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_stops_a_half_dead_patch_which_keeps_what_arrived_and_the_upload_resumes() {
    // Timed (the HEAD answers within 5 s): alone on the cores.
    let _alone = cpu_exclusive().await;
    let f = Fixture::new().await;
    let content = payload(600_000, 61);
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, content.len() as u64).await;
    // A PATCH whose client sends part of the body and then goes silent, keeping the connection open.
    let stalled = start_broken_patch(&f, id, &content, 250_000).await;
    // The client comes back through a new connection: HEAD stops the stalled PATCH and sees its bytes.
    let started = std::time::Instant::now();
    let offset = head_offset(&f, id).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(offset > 0 && offset <= 250_000, "offset {offset}");
    let r = patch(&f, id, offset, &content[offset as usize..]).await;
    assert_eq!(r.status(), 204);
    f.assert_recipient_downloads(id, &content).await;
    drop(stalled);
}

#[tokio::test]
async fn a_binary_upload_replaces_a_resumable_upload_begun_earlier() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, 100).await;
    assert_eq!(patch(&f, id, 0, &[3; 30]).await.status(), 204);
    let content = payload(5000, 19);
    f.sender.upload(id, content.clone()).await.unwrap();
    f.assert_recipient_downloads(id, &content).await;
    assert_eq!(head_offset(&f, id).await, content.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_patch_at_the_old_offset_after_a_stall_is_409_and_keeps_the_stalled_bytes() {
    let f = Fixture::new().await;
    let content = payload(600_000, 62);
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, content.len() as u64).await;
    // The client's first PATCH stalls after 250 000 bytes; it retries the same PATCH from offset 0
    // on a new connection without asking HEAD first.
    let stalled = start_broken_patch(&f, id, &content, 250_000).await;
    let retry = patch(&f, id, 0, &content[..1000]).await;
    assert_eq!(
        retry.status(),
        409,
        "the stalled PATCH moved the offset first"
    );
    let offset = head_offset(&f, id).await;
    assert!(offset > 0 && offset <= 250_000, "offset {offset}");
    let r = patch(&f, id, offset, &content[offset as usize..]).await;
    assert_eq!(r.status(), 204);
    f.assert_recipient_downloads(id, &content).await;
    drop(stalled);
}
