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
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

/// The client's sending rate: slow enough that the moment to kill comes seconds before the end of the
/// PATCH, whatever the machine's speed.
const BYTES_PER_SEC: u64 = 32 << 20;
const CHUNK: usize = 1 << 20;

/// Streams `body` as one PATCH at `offset` over a raw connection at [`BYTES_PER_SEC`]; `sent` counts
/// the bytes handed to the socket.
fn start_patch(
    url: &str,
    token: &str,
    id: Uuid,
    offset: u64,
    body: Vec<u8>,
    sent: Arc<AtomicU64>,
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
        let started = tokio::time::Instant::now();
        let mut handed = 0u64;
        for chunk in body.chunks(CHUNK) {
            // Throttled: this chunk leaves no earlier than the rate allows.
            let due = Duration::from_secs_f64(handed as f64 / BYTES_PER_SEC as f64);
            tokio::time::sleep_until(started + due).await;
            if stream.write_all(chunk).await.is_err() {
                return; // the server died
            }
            handed += chunk.len() as u64;
            sent.store(handed, Ordering::Relaxed);
        }
    })
}

/// The upload's durable offset and length as the broker recorded them, read from its database. A HEAD
/// would stop the running PATCH (a new request on an upload stops the one running), so the moment to
/// kill is found where the broker keeps what survives a crash.
fn recorded(data: &Path, id: Uuid) -> (u64, u64) {
    use rusqlite::OpenFlags;
    let db = rusqlite::Connection::open_with_flags(
        data.join("broker.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.query_row(
        "SELECT \"offset\", length FROM tus_uploads WHERE file_transfer_id = ? AND part = ''",
        [id.to_string()],
        |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)? as u64)),
    )
    .unwrap()
}

/// Polls (up to 120 s) until `ready` holds for the recorded (offset, length) and the bytes handed over.
async fn wait_for(
    data: &Path,
    id: Uuid,
    sent: &AtomicU64,
    what: &str,
    ready: impl Fn(u64, u64, u64) -> bool,
) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (durable, length) = recorded(data, id);
        let handed = sent.load(Ordering::Relaxed);
        if ready(durable, length, handed) {
            return durable;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 120 s (durable {durable} of {length}, {handed} bytes handed over)"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_mid_patch_loses_at_most_the_unchecked_tail_and_the_upload_resumes() {
    // Heavy (150 MiB through a broker process): never beside a timed test.
    let _alone = cpu_exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let content = payload(150 << 20, 555);
    let total = content.len() as u64;
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

    // Kill points: early in a PATCH (8 MiB handed over, before any checkpoint), then once a
    // checkpoint of one PATCH (64 MiB into it) is durable and the upload is not complete.
    let mut offset = 0u64;
    for checkpointed in [false, true] {
        let write_token = token(&data, SENDER, WRITE, &[]);
        let sent = Arc::new(AtomicU64::new(0));
        let patch = start_patch(
            &served.url,
            &write_token,
            id,
            offset,
            content[offset as usize..].to_vec(),
            sent.clone(),
        );
        let start = offset;
        let durable_at_kill = if checkpointed {
            wait_for(
                &data,
                id,
                &sent,
                "a checkpoint 64 MiB into the PATCH",
                |d, _, _| d >= start + (64 << 20),
            )
            .await
        } else {
            wait_for(&data, id, &sent, "8 MiB handed over", |_, _, h| {
                h >= 8 << 20
            })
            .await
        };
        let handed_at_kill = offset + sent.load(Ordering::Relaxed);
        assert!(
            durable_at_kill < total && handed_at_kill < total,
            "the upload was complete before the kill ({durable_at_kill} durable, {handed_at_kill} sent)"
        );
        served.child.kill().unwrap();
        served.child.wait().unwrap();
        patch.abort();
        served = serve(&data);
        let sender = client(&served, SENDER, &format!("{WRITE} {READ}"));
        let durable = head_offset_as(&sender, id).await;
        assert!(
            durable >= durable_at_kill && durable >= offset,
            "the durable offset went back from {} to {durable}",
            durable_at_kill.max(offset)
        );
        let handed_over = offset + sent.load(Ordering::Relaxed);
        assert!(
            durable <= handed_over,
            "the durable offset {durable} is past the {handed_over} bytes the client sent"
        );
        if checkpointed {
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
