//! The command-line client (`broker send`, `fetch`, `list`, `status`) against the real server binary:
//! parallel uploads, resuming after the client is killed, verification and what users see on failure.

use crate::cli::{serve, token, Served};
use crate::common::*;
use broker_protocol::client::BrokerClient;
use broker_protocol::resource::ResourceUpdate;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_broker");
pub(crate) const MIB: usize = 1 << 20;

/// A server with a service owner and resource, a working directory and the parties' tokens.
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) served: Served,
    pub(crate) sender: String,
    pub(crate) recipient: String,
    pub(crate) outsider: String,
}

impl Setup {
    pub(crate) async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let served = serve(&data);
        let owner =
            BrokerClient::new(&served.url).with_token(token(&data, SERVICE_OWNER, SO_SCOPE, &[]));
        owner.create_service_owner("CLI tests").await.unwrap();
        owner
            .configure_resource(RESOURCE, &ResourceUpdate::default())
            .await
            .unwrap();
        std::fs::create_dir(dir.path().join("work")).unwrap();
        Setup {
            sender: token(&data, SENDER, &format!("{WRITE} {READ}"), &[]),
            recipient: token(&data, RECIPIENT, READ, &[]),
            outsider: token(&data, RECIPIENT_2, READ, &[]),
            dir,
            served,
        }
    }

    pub(crate) fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state/broker")
    }

    /// Writes a payload of `len` bytes to `work/name`; returns its path and SHA-256.
    pub(crate) fn file(&self, name: &str, len: usize, seed: u64) -> (PathBuf, String) {
        let content = payload(len, seed);
        let path = self.work().join(name);
        std::fs::write(&path, &content).unwrap();
        (path, sha256_hex(&content))
    }

    /// The broker binary as a user runs it: in `work/`, with the server's URL and the token in the
    /// environment and the state dir under the test's temp dir.
    pub(crate) fn broker(&self, token: Option<&str>, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .current_dir(self.work())
            .env("BROKER_URL", &self.served.url)
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env_remove("BROKER_TOKEN")
            .stdin(Stdio::null());
        if let Some(token) = token {
            command.env("BROKER_TOKEN", token);
        }
        command
    }

    pub(crate) fn send_args<'a>(&self, file: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "send",
            file,
            "--resource",
            RESOURCE,
            "--sender",
            SENDER,
            "--recipient",
            RECIPIENT,
        ];
        args.extend_from_slice(extra);
        args
    }

    /// The unfinished sends recorded in the state dir: their fileTransferIds.
    pub(crate) fn recorded_sends(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.state_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .map(|e| {
                let state: Value =
                    serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
                state["fileTransferId"].as_str().unwrap().to_string()
            })
            .collect()
    }

    /// `status --json` as `token` sees it.
    pub(crate) fn overview(&self, token: &str, id: &str) -> Value {
        let out = succeed(self.broker(Some(token), &["status", id, "--json"]));
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

pub(crate) fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs the command; it must succeed.
pub(crate) fn succeed(mut command: Command) -> Output {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        command.get_args().collect::<Vec<_>>(),
        stderr_of(&out)
    );
    out
}

/// Runs the command; it must fail with one line on stderr saying why (progress lines aside), which is
/// returned.
pub(crate) fn fail(mut command: Command) -> String {
    let out = command.output().unwrap();
    assert!(!out.status.success(), "expected a failure: {:?}", out);
    let stderr = stderr_of(&out);
    let reasons: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("progress: "))
        .collect();
    assert_eq!(reasons.len(), 1, "one line saying why: {stderr:?}");
    assert!(reasons[0].starts_with("broker: "), "{stderr:?}");
    reasons[0].to_string()
}

/// The one JSON object a `--json` run prints.
pub(crate) fn report(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1, "one JSON object: {text:?}");
    serde_json::from_str(&text).unwrap()
}

pub(crate) fn number(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

/// Starts the command and SIGKILLs it once its progress lines show at least `min_bytes` done.
pub(crate) fn kill_after_progress(mut command: Command, min_bytes: u64) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap();
        // progress: DONE/TOTAL bytes (P%), RATE
        let done = line
            .strip_prefix("progress: ")
            .and_then(|rest| rest.split('/').next())
            .and_then(|n| n.parse::<u64>().ok());
        if done.is_some_and(|d| d >= min_bytes) {
            child.kill().unwrap();
            child.wait().unwrap();
            return;
        }
        seen.push(line);
    }
    let status = child.wait().unwrap();
    panic!("the command ended ({status}) before showing {min_bytes} bytes of progress: {seen:?}");
}

/// Sends `file` and checks the JSON report; returns it.
pub(crate) fn send_json(s: &Setup, file: &Path, extra: &[&str]) -> Value {
    let file = file.to_str().unwrap();
    let mut args = s.send_args(file, extra);
    args.push("--json");
    report(&succeed(s.broker(Some(&s.sender), &args)))
}

/// Sends the file (published and verified) and returns its fileTransferId.
pub(crate) fn send_for_id(s: &Setup, file: &Path) -> String {
    send_json(s, file, &[])["fileTransferId"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_with_four_parallel_parts_publishes_the_file_and_the_recipient_fetches_the_same_bytes()
{
    // Heavy (48 MiB sent, hashed and fetched): never beside a timed test.
    let _alone = cpu_exclusive().await;
    let s = Setup::new().await;
    let size = 48 * MIB;
    let (file, sha) = s.file("big.bin", size, 1);
    let sent = send_json(&s, &file, &["--parallel", "4", "--chunk-size", "4MiB"]);
    let id = sent["fileTransferId"].as_str().unwrap().to_string();
    assert_eq!(sent["sha256"], sha.as_str());
    assert_eq!(number(&sent, "bytesTotal"), size as u64);
    assert_eq!(number(&sent, "resumedFrom"), 0);
    assert_eq!(number(&sent, "bytesTransferred"), size as u64);
    assert!(s.recorded_sends().is_empty(), "the state file is removed");

    let overview = s.overview(&s.sender, &id);
    assert_eq!(overview["fileTransferStatus"], "Published");
    assert_eq!(overview["fileName"], "big.bin");
    assert_eq!(overview["sha256"], sha.as_str());

    let fetched = report(&succeed(s.broker(
        Some(&s.recipient),
        &["fetch", &id, "-o", "copy.bin", "--json"],
    )));
    assert_eq!(fetched["sha256"], sha.as_str());
    assert_eq!(number(&fetched, "bytesTransferred"), size as u64);
    assert_eq!(
        sha256_hex(&std::fs::read(s.work().join("copy.bin")).unwrap()),
        sha
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_without_json_prints_only_the_id_and_fetch_saves_under_the_transfers_file_name() {
    let s = Setup::new().await;
    let (file, sha) = s.file("report.pdf", 300_000, 2);
    let out = succeed(s.broker(
        Some(&s.sender),
        &s.send_args(file.to_str().unwrap(), &["--property", "kind=test"]),
    ));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id:?}");
    std::fs::remove_file(&file).unwrap();
    let out = succeed(s.broker(Some(&s.recipient), &["fetch", &id]));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "report.pdf");
    assert_eq!(
        sha256_hex(&std::fs::read(s.work().join("report.pdf")).unwrap()),
        sha
    );
    assert_eq!(s.overview(&s.sender, &id)["propertyList"]["kind"], "test");
}

/// Sends with a low rate, kills the client part-way, sends again and checks it resumed.
async fn killed_send_resumes(parallel: &str) {
    let s = Setup::new().await;
    let size = 16 * MIB;
    let (file, sha) = s.file("resume.bin", size, 3);
    let path = file.to_str().unwrap();
    let slow = s.send_args(
        path,
        &[
            "--parallel",
            parallel,
            "--chunk-size",
            "1MiB",
            "--limit-rate",
            "4MiB",
        ],
    );
    kill_after_progress(s.broker(Some(&s.sender), &slow), 3 * MIB as u64);
    let recorded = s.recorded_sends();
    assert_eq!(recorded.len(), 1, "the unfinished send is recorded");

    let sent = send_json(&s, &file, &["--parallel", parallel, "--chunk-size", "1MiB"]);
    assert_eq!(
        sent["fileTransferId"],
        recorded[0].as_str(),
        "same transfer"
    );
    let resumed = number(&sent, "resumedFrom");
    assert!(
        resumed > 0 && resumed < size as u64,
        "resumed from {resumed}"
    );
    assert_eq!(number(&sent, "bytesTransferred"), size as u64 - resumed);
    assert_eq!(sent["sha256"], sha.as_str());
    assert!(s.recorded_sends().is_empty());
    let overview = s.overview(&s.recipient, &recorded[0]);
    assert_eq!(overview["fileTransferStatus"], "Published");
    assert_eq!(overview["sha256"], sha.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_send_continues_the_same_transfer_when_run_again() {
    killed_send_resumes("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_parallel_send_continues_every_part_when_run_again() {
    killed_send_resumes("4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_modified_after_an_interrupted_send_starts_a_new_transfer() {
    let s = Setup::new().await;
    let (file, _) = s.file("changing.bin", 8 * MIB, 4);
    let path = file.to_str().unwrap();
    let slow = s.send_args(path, &["--chunk-size", "1MiB", "--limit-rate", "2MiB"]);
    kill_after_progress(s.broker(Some(&s.sender), &slow), MIB as u64);
    let old = s.recorded_sends();
    assert_eq!(old.len(), 1);

    let (_, sha) = s.file("changing.bin", 8 * MIB + 1000, 5);
    let sent = send_json(&s, &file, &[]);
    assert_ne!(sent["fileTransferId"], old[0].as_str(), "a new transfer");
    assert_eq!(number(&sent, "resumedFrom"), 0);
    assert_eq!(sent["sha256"], sha.as_str());
    assert!(
        s.recorded_sends().is_empty(),
        "the old state is dropped too"
    );
    assert_eq!(
        s.overview(&s.sender, old[0].as_str())["fileTransferStatus"],
        "UploadStarted",
        "the abandoned transfer is left as it was"
    );
}

/// Sends a file, fetches it slowly, kills the fetch part-way and fetches again.
async fn killed_fetch_resumes(parallel: &str) {
    let s = Setup::new().await;
    let size = 16 * MIB;
    let (file, sha) = s.file("download.bin", size, 6);
    let id = send_for_id(&s, &file);
    let slow = [
        "fetch",
        &id,
        "-o",
        "out.bin",
        "--parallel",
        parallel,
        "--limit-rate",
        "4MiB",
    ];
    kill_after_progress(s.broker(Some(&s.recipient), &slow), 6 * MIB as u64);
    assert!(s.work().join("out.bin.part").exists());
    assert!(s.work().join("out.bin.part.json").exists());
    assert!(!s.work().join("out.bin").exists());

    let fetched = report(&succeed(s.broker(
        Some(&s.recipient),
        &[
            "fetch",
            &id,
            "-o",
            "out.bin",
            "--parallel",
            parallel,
            "--json",
        ],
    )));
    let resumed = number(&fetched, "resumedFrom");
    assert!(
        resumed > 0 && resumed < size as u64,
        "resumed from {resumed}"
    );
    assert_eq!(number(&fetched, "bytesTransferred"), size as u64 - resumed);
    assert_eq!(number(&fetched, "bytesTotal"), size as u64);
    assert_eq!(fetched["sha256"], sha.as_str());
    assert_eq!(fetched["path"], "out.bin");
    assert_eq!(
        sha256_hex(&std::fs::read(s.work().join("out.bin")).unwrap()),
        sha
    );
    assert!(!s.work().join("out.bin.part").exists());
    assert!(!s.work().join("out.bin.part.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_fetch_continues_from_its_part_file_when_run_again() {
    killed_fetch_resumes("1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_parallel_fetch_continues_every_range_when_run_again() {
    killed_fetch_resumes("4").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_file_corrupted_before_the_resume_fails_verification_and_leaves_no_file() {
    let s = Setup::new().await;
    let (file, _) = s.file("fragile.bin", 8 * MIB, 7);
    let id = send_for_id(&s, &file);
    let slow = ["fetch", &id, "-o", "out.bin", "--limit-rate", "2MiB"];
    kill_after_progress(s.broker(Some(&s.recipient), &slow), MIB as u64);
    let part = s.work().join("out.bin.part");
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&part, &bytes).unwrap();

    let reason = fail(s.broker(Some(&s.recipient), &["fetch", &id, "-o", "out.bin"]));
    assert!(
        reason.starts_with("broker: fetch failed:") && reason.contains("SHA-256"),
        "{reason}"
    );
    assert!(!s.work().join("out.bin").exists());
    assert!(!part.exists(), "the bad partial file is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_with_confirm_leaves_the_recipient_download_confirmed() {
    let s = Setup::new().await;
    let (file, _) = s.file("confirm.bin", 100_000, 8);
    let id = send_for_id(&s, &file);
    succeed(s.broker(
        Some(&s.recipient),
        &["fetch", &id, "-o", "got.bin", "--confirm"],
    ));
    let overview = s.overview(&s.recipient, &id);
    assert_eq!(
        overview["recipients"][0]["currentRecipientFileTransferStatusCode"],
        "DownloadConfirmed"
    );
    assert_eq!(overview["fileTransferStatus"], "AllConfirmedDownloaded");
}
