//! The `broker` binary itself: `serve`, `token`, `config`, the data dir's permissions and signals.

use crate::common::*;
use broker_protocol::client::BrokerClient;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_broker");

pub struct Served {
    pub child: Child,
    pub url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(data_dir: &std::path::Path) -> Served {
    serve_with(data_dir, &[])
}

/// `broker serve` on a free port with `env` (`BROKER__…` settings) added to its environment.
pub fn serve_with(data_dir: &std::path::Path, env: &[(&str, &str)]) -> Served {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        // A default a test's own `env` may override (a timed test wants only warnings).
        .env("RUST_LOG", "info,broker=debug")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        // BROKER_TEST_SERVER_LOG=1 shows the server's log while debugging a test.
        .stderr(if std::env::var("BROKER_TEST_SERVER_LOG").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Served { child, url }
}

pub fn token(data_dir: &std::path::Path, org: &str, scope: &str, extra: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["token", "--org", org, "--scope", scope, "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "token prints only the token: {text:?}"
    );
    text.trim().to_string()
}

#[tokio::test]
async fn serve_prints_its_bound_address_and_minted_tokens_are_accepted_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    let owner =
        BrokerClient::new(&served.url).with_token(token(&data, SERVICE_OWNER, SO_SCOPE, &[]));
    owner.create_service_owner("Binary").await.unwrap();
    assert_eq!(owner.service_owner().await.unwrap().name, "Binary");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data dir is private");
    assert_eq!(
        mode(&data.join("dev-issuer-key.pem")),
        0o600,
        "the signing key is private"
    );
}

/// The `iat` and `exp` claims of a JWT (its payload is read, not verified).
fn issued_and_expires(token: &str) -> (i64, i64) {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn a_token_minted_with_a_short_ttl_works_until_it_expires_and_is_refused_after() {
    // Timed (the token is used within its 4 s): alone on the cores.
    let _alone = cpu_exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    let minted = token(&data, SERVICE_OWNER, SO_SCOPE, &["--ttl", "4s"]);
    let (issued, expires) = issued_and_expires(&minted);
    assert_eq!(expires - issued, 4, "the token lives 4 s");
    let short = BrokerClient::new(&served.url).with_token(minted);
    // While it lives, it is accepted.
    short.create_service_owner("Short-lived").await.unwrap();
    assert_eq!(short.service_owner().await.unwrap().name, "Short-lived");
    // Once expired it is refused, and not before.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = chrono::Utc::now().timestamp();
        match short.service_owner().await {
            Ok(_) => assert!(
                Instant::now() < deadline,
                "still accepted {} s past its expiry",
                now - expires
            ),
            Err(e) => {
                assert_eq!(e.status(), Some(401), "{e}");
                assert!(
                    now >= expires,
                    "refused at {now}, before it expires at {expires}"
                );
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn the_development_issuer_is_refused_on_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("non-loopback"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn config_prints_the_resolved_configuration_with_env_overrides() {
    let out = Command::new(BIN)
        .args(["config", "--data-dir", "/srv/broker"])
        .env("BROKER__SERVER__MIN_DATA_RATE", "4242")
        .env("BROKER_URL", "http://client-only")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("min_data_rate = 4242"), "{text}");
    assert!(text.contains("data_dir = \"/srv/broker\""), "{text}");
    let bad = Command::new(BIN)
        .args(["config"])
        .env("BROKER__SERVER__NO_SUCH_KEY", "1")
        .output()
        .unwrap();
    assert!(!bad.status.success(), "an unknown key is refused");
}

/// Waits (up to 15 s) for the served broker to exit; its exit status.
async fn exit_of(served: &mut Served) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the server did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_download_in_flight_finish_and_stops_a_streaming_upload_which_stays_retryable(
) {
    // Timed (stopped within the grace period): alone on the cores.
    let _alone = cpu_exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut served = serve(&data);
    let client = |url: &str, org: &str, scope: &str| {
        BrokerClient::new(url).with_token(token(&data, org, scope, &[]))
    };
    let owner = client(&served.url, SERVICE_OWNER, SO_SCOPE);
    owner.create_service_owner("Shutdown").await.unwrap();
    owner
        .configure_resource(RESOURCE, &Default::default())
        .await
        .unwrap();
    let sender = client(&served.url, SENDER, &format!("{WRITE} {READ}"));
    let recipient = client(&served.url, RECIPIENT, READ);
    let body = |reference: &str| broker_protocol::transfer::FileTransferInitialize {
        file_name: Some("shutdown.bin".into()),
        resource_id: Some(RESOURCE.into()),
        senders_file_transfer_reference: Some(reference.into()),
        sender: Some(SENDER.into()),
        recipients: Some(vec![RECIPIENT.into()]),
        ..Default::default()
    };
    // A file the recipient is downloading slowly when the signal comes...
    let file = payload(32 << 20, 71);
    let published = sender.initialize(&body("published")).await.unwrap();
    sender.upload(published, file.clone()).await.unwrap();
    let mut download = recipient.download(published, None).await.unwrap();
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reading = {
        let received = received.clone();
        tokio::spawn(async move {
            // Read at 16 MiB/s: about two seconds for the file, well within the grace period.
            let started = tokio::time::Instant::now();
            let mut got = Vec::new();
            loop {
                match download.chunk().await {
                    Ok(Some(chunk)) => got.extend_from_slice(&chunk),
                    Ok(None) => return Ok(got),
                    Err(e) => return Err(e.to_string()),
                }
                received.store(got.len(), std::sync::atomic::Ordering::Relaxed);
                let due = Duration::from_secs_f64(got.len() as f64 / (16 << 20) as f64);
                tokio::time::sleep_until(started + due).await;
            }
        })
    };
    // ...and an upload streaming.
    let streaming = sender.initialize(&body("streaming")).await.unwrap();
    let (mut tx, upload_body) = crate::support::channel_body();
    let uploading = {
        let sender = sender.clone();
        tokio::spawn(async move { sender.upload(streaming, upload_body).await })
    };
    use futures::SinkExt;
    tx.send(Ok(payload(100_000, 72))).await.unwrap();
    crate::support::wait_for_status(
        &sender,
        streaming,
        broker_protocol::FileTransferStatus::UploadStarted,
        Duration::from_secs(10),
    )
    .await;

    // SAFETY: kill only sends a signal to our own child.
    unsafe { libc::kill(served.child.id() as i32, libc::SIGTERM) };
    let at_signal = received.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        at_signal + (16 << 20) < file.len(),
        "the download was not in flight: {at_signal} bytes read already"
    );
    // The upload is stopped at once, while the client still has more to send: 503, retry later.
    let upload = tokio::time::timeout(Duration::from_secs(5), uploading)
        .await
        .expect("the streaming upload was not stopped at once")
        .unwrap();
    crate::support::expect_problem(upload, 503, "BRO-09006");
    // The download in flight runs to its end, with every byte: more than any socket buffers hold
    // was still to be sent when the signal came, so the broker went on serving it.
    let downloaded = reading
        .await
        .unwrap()
        .expect("the download in flight was cut");
    assert_eq!(sha256_hex(&downloaded), sha256_hex(&file));
    let status = exit_of(&mut served).await;
    assert!(status.success(), "exit status {status}");
    drop(tx);

    // Started again, the stopped upload is retryable and publishes.
    let served = serve(&data);
    let sender = client(&served.url, SENDER, &format!("{WRITE} {READ}"));
    let stopped = sender.overview(streaming).await.unwrap();
    assert_eq!(
        stopped.summary.file_transfer_status,
        broker_protocol::FileTransferStatus::UploadStarted
    );
    let content = payload(200_000, 73);
    crate::support::upload_when_slot_is_free(&sender, streaming, &content)
        .await
        .unwrap();
    let recipient = client(&served.url, RECIPIENT, READ);
    let again = recipient
        .download(streaming, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&again), sha256_hex(&content));
}

#[tokio::test]
async fn a_download_after_the_expiration_time_is_refused_once_the_transfer_is_purged() {
    let f = Fixture::new().await;
    f.owner
        .configure_resource(
            RESOURCE,
            &broker_protocol::resource::ResourceUpdate {
                file_transfer_time_to_live: Some("PT2S".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let id = f.publish(&[RECIPIENT], b"short-lived").await;
    // Expired, the transfer is purged moments later (spec 7.2), and a purged file is not ready for
    // download (spec 1.8). The moment between, 410 `BRO-09005`, is shown on the injected clock in the
    // actors crate (download_tests.rs).
    let purged = crate::support::wait_for_status(
        &f.recipient,
        id,
        broker_protocol::FileTransferStatus::Purged,
        Duration::from_secs(20),
    )
    .await;
    assert!(chrono::Utc::now() >= purged.summary.expiration_time);
    let err = f.recipient.download(id, None).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("BRO-00007")));
}
