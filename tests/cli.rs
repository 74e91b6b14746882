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
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        // BROKER_TEST_SERVER_LOG=1 shows the server's log while debugging a test.
        .stderr(if std::env::var("BROKER_TEST_SERVER_LOG").is_ok() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .env("RUST_LOG", "info,broker=debug")
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

#[tokio::test]
async fn a_token_minted_with_a_short_ttl_expires() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let served = serve(&data);
    let short = BrokerClient::new(&served.url).with_token(token(
        &data,
        SERVICE_OWNER,
        SO_SCOPE,
        &["--ttl", "1s"],
    ));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(short.service_owner().await.unwrap_err().status(), Some(401));
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

#[tokio::test]
async fn sigterm_stops_the_server_gracefully() {
    // Timed (stopped within 15 s): alone on the cores.
    let _alone = cpu_exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let mut served = serve(dir.path());
    let started = Instant::now();
    // SAFETY: kill only sends a signal to our own child.
    unsafe { libc::kill(served.child.id() as i32, libc::SIGTERM) };
    loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the server did not stop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
