//! A broker killed (SIGKILL) in the middle of a tus PATCH: what was acknowledged or checkpointed
//! survives the restart, nothing is published early, and the upload resumes to the right SHA-256.

use crate::cli::{serve, token};
use crate::common::*;
use crate::tus::{head_offset_as, tus_path};
use broker_protocol::client::BrokerClient;
use broker_protocol::resource::ResourceUpdate;
use broker_protocol::transfer::FileTransferInitialize;
use broker_protocol::FileTransferStatus;
use reqwest::Method;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

/// Streams `body` as one PATCH at `offset` over a raw connection, slowly enough to be killed mid-way;
/// `sent` counts the bytes handed to the socket.
fn start_patch(
    url: &str,
    token: &str,
    id: Uuid,
    offset: u64,
    body: Vec<u8>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let addr = url.trim_start_matches("http://").to_string();
    let head = format!(
        "PATCH /broker/api/v1{} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\nContent-Length: {}\r\n\r\n",
        tus_path(id),
        body.len()
    );
    tokio::spawn(async move {
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            return;
        };
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for chunk in body.chunks(1 << 20) {
            if stream.write_all(chunk).await.is_err() {
                return; // the server died
            }
            sent.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_patch_loses_at_most_the_unchecked_tail_and_the_upload_resumes() {
    // Heavy (150 MiB through a broker process): never beside a timed test.
    let _alone = cpu_exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let content = payload(150 << 20, 555);
    let mut served = serve(&data);
    let client = |served: &crate::cli::Served, org: &str, scope: &str| {
        BrokerClient::new(&served.url).with_token(token(&data, org, scope, &[]))
    };
    let owner = client(&served, SERVICE_OWNER, SO_SCOPE);
    owner.create_service_owner("crash").await.unwrap();
    owner
        .configure_resource(RESOURCE, &ResourceUpdate::default())
        .await
        .unwrap();
    let sender = client(&served, SENDER, &format!("{WRITE} {READ}"));
    let body = FileTransferInitialize {
        file_name: Some("big.bin".into()),
        resource_id: Some(RESOURCE.into()),
        senders_file_transfer_reference: Some("crash".into()),
        sender: Some(SENDER.into()),
        recipients: Some(vec![RECIPIENT.into()]),
        ..Default::default()
    };
    let id = sender.initialize(&body).await.unwrap();
    let created = sender
        .request(Method::POST, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", content.len())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);

    // Kill points: early in a PATCH, then after more than 64 MiB of one PATCH.
    let mut offset = 0u64;
    for kill_after in [8u64 << 20, 80 << 20] {
        let write_token = token(&data, SENDER, WRITE, &[]);
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let patch = start_patch(
            &served.url,
            &write_token,
            id,
            offset,
            content[offset as usize..].to_vec(),
            sent.clone(),
        );
        let started = Instant::now();
        // Wait until the client has handed over `kill_after` bytes, then give the server a moment to take
        // them in (a HEAD would stop the PATCH, so progress is watched from the sending side).
        while sent.load(std::sync::atomic::Ordering::Relaxed) < kill_after {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the PATCH did not get going"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        served.child.kill().unwrap();
        served.child.wait().unwrap();
        patch.abort();
        served = serve(&data);
        let sender = client(&served, SENDER, &format!("{WRITE} {READ}"));
        let durable = head_offset_as(&sender, id).await;
        assert!(
            durable >= offset,
            "the durable offset went back from {offset} to {durable}"
        );
        let handed_over = offset + sent.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            durable <= handed_over,
            "the durable offset {durable} is past the {handed_over} bytes the client sent"
        );
        if kill_after > 64 << 20 {
            assert!(
                durable >= offset + (64 << 20),
                "a checkpoint past 64 MiB was lost: {durable}"
            );
        }
        assert_eq!(
            sender
                .overview(id)
                .await
                .unwrap()
                .summary
                .file_transfer_status,
            FileTransferStatus::UploadStarted
        );
        offset = durable;
    }

    // The upload resumes from the durable offset and publishes exactly the file.
    let sender = client(&served, SENDER, &format!("{WRITE} {READ}"));
    let r = sender
        .request(Method::PATCH, &tus_path(id))
        .header("tus-resumable", "1.0.0")
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", offset)
        .body(content[offset as usize..].to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(status, 204, "{}", r.text().await.unwrap_or_default());
    let recipient = client(&served, RECIPIENT, READ);
    let overview = recipient.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    assert_eq!(
        overview.summary.sha256.as_deref(),
        Some(sha256_hex(&content).as_str())
    );
}
