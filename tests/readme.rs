//! The README runs as written: every `sh` block, in order, in one shell, against a broker started
//! as the README says (in a fresh directory, its data in ./broker-data), with a webhook receiver
//! (scripts/webhook-echo.py, which the README points to) and an SMTP server for its subscription and
//! contact-point examples. What the README says the blocks print and save is checked.

use crate::smtp_sink::{OwnedPort, Security, SmtpSink};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_broker");

/// The README's `sh` blocks, in order.
fn shell_blocks(readme: &str) -> Vec<String> {
    let mut blocks = vec![];
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (up to 20 s) until `done` holds for the lines the webhook receiver printed.
fn wait_for_lines(
    lines: &Mutex<Vec<serde_json::Value>>,
    done: impl Fn(&[serde_json::Value]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&lines.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "the webhook receiver got: {:?}",
            lines.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn the_readme_examples_run_as_written_in_order() {
    let _cpu = crate::common::cpu_exclusive().await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();

    let smtp_port = OwnedPort::new();
    let smtp = SmtpSink::start(&smtp_port, &home.join("mail.jsonl"), Security::Plain);

    let echo_script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/webhook-echo.py");
    let mut echo = Command::new("python3")
        .args([echo_script, "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut echo_out = BufReader::new(echo.stdout.take().unwrap());
    let _echo = Killed(echo);
    let mut first = String::new();
    echo_out.read_line(&mut first).unwrap();
    let echo_port = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("webhook-echo printed {first:?}"))
        .to_string();
    let deliveries = Arc::new(Mutex::new(Vec::new()));
    let collected = deliveries.clone();
    std::thread::spawn(move || {
        for line in echo_out.lines().map_while(Result::ok) {
            collected
                .lock()
                .unwrap()
                .push(serde_json::from_str(&line).unwrap());
        }
    });

    // The broker as the README starts it, in a fresh directory (data in ./broker-data), with the
    // SMTP server the contact-point section asks for.
    let mut broker = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(home)
        .env("BROKER__NOTIFY__SMTP__HOST", "127.0.0.1")
        .env("BROKER__NOTIFY__SMTP__PORT", smtp_port.port.to_string())
        .env("BROKER__NOTIFY__SMTP__TLS", "none")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(broker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _broker = Killed(broker);
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_string();

    let readme = include_str!("../README.md");
    let blocks = shell_blocks(readme);
    assert!(
        blocks.len() >= 6,
        "the README's sh blocks: {}",
        blocks.len()
    );
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let bin_dir = std::path::Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(home)
        .env("PATH", path)
        .env("BROKER_URL", &url)
        .env("HOOK", format!("http://127.0.0.1:{echo_port}/hook"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env_remove("BROKER_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the README's blocks failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );

    // What the tour says it prints and saves.
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines.contains(&"Hello"),
        "the range request prints Hello:\n{stdout}"
    );
    assert!(lines.contains(&"204"), "confirm answers 204:\n{stdout}");
    assert_eq!(
        std::fs::read_to_string(home.join("received/hello.txt")).unwrap(),
        "Hello from the sender\n",
        "the download saved the file under the sender's name"
    );
    assert!(lines.contains(&"Hello from the sender"));
    for status in [
        "Initialized",
        "UploadStarted",
        "Published",
        "AllConfirmedDownloaded",
    ] {
        assert!(stdout.contains(status), "the details show {status}");
    }
    assert!(lines.contains(&"201"), "the tus creation answers 201");
    assert!(lines.contains(&"received.iso is big.iso"));
    assert!(stdout.contains("registered service owner Tour owner"));

    // The subscription validated and got the Published event of the file sent after it, as plain
    // JSON; the contact point got its e-mail.
    wait_for_lines(&deliveries, |got| {
        got.iter()
            .any(|d| d["body"]["type"] == "platform.events.validatesubscription")
            && got
                .iter()
                .any(|d| d["body"]["type"] == "no.altinn.broker.published")
    });
    assert!(deliveries
        .lock()
        .unwrap()
        .iter()
        .all(|d| d["contentType"] == "application/json" && d["path"] == "/hook"));
    let mail = smtp.wait_for(1).await;
    assert!(
        mail.iter()
            .any(|m| m.to_string().contains("post@example.no")),
        "{mail:?}"
    );
}
