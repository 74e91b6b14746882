//! Real tus clients against Broker: tuspy (Python) and tus-js-client (Node), each uploading a file in
//! chunks, dying part-way, and finishing with a new client instance. `scripts/test.sh` installs both.

use crate::common::*;
use broker_protocol::FileTransferStatus;
use std::path::PathBuf;
use std::process::Command;
use uuid::Uuid;

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tus-clients")
}

/// Runs a client to completion off the async runtime and returns the offset it printed.
async fn run_client(program: &str, script: &str, args: Vec<String>) -> u64 {
    let script = clients_dir().join(script);
    let program = program.to_string();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&program).arg(&script).args(&args).output()
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run {e}; scripts/test.sh installs the tus clients"));
    assert!(
        output.status.success(),
        "the client failed (scripts/test.sh installs tuspy and tus-js-client):\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no offset printed: {text:?}"))
}

struct Case {
    f: Fixture,
    id: Uuid,
    content: Vec<u8>,
    file: tempfile::NamedTempFile,
    token: String,
}

async fn case(size: usize, seed: u64) -> Case {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let content = payload(size, seed);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &content).unwrap();
    let token = f.server.token(SENDER, WRITE);
    Case {
        f,
        id,
        content,
        file,
        token,
    }
}

impl Case {
    fn args(&self, chunk: usize, mode: &[&str]) -> Vec<String> {
        let mut args = vec![
            self.f.server.url.clone(),
            self.token.clone(),
            self.id.to_string(),
            self.file.path().display().to_string(),
            chunk.to_string(),
        ];
        args.extend(mode.iter().map(|m| m.to_string()));
        args
    }

    async fn assert_published(&self) {
        self.f.assert_published(self.id, &self.content).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tuspy_uploads_dies_part_way_and_a_new_client_finishes_with_checksums() {
    let c = case(3_000_000, 101).await;
    let chunk = 512 * 1024;
    let partial = run_client("python3", "tuspy_upload.py", c.args(chunk, &["start", "2"])).await;
    assert_eq!(partial, 2 * chunk as u64);
    assert_eq!(
        c.f.sender
            .overview(c.id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::UploadStarted
    );
    let done = run_client("python3", "tuspy_upload.py", c.args(chunk, &["resume"])).await;
    assert_eq!(done, c.content.len() as u64);
    c.assert_published().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_uploads_in_one_go() {
    let c = case(2_000_000, 102).await;
    run_client("node", "tus_js_upload.mjs", c.args(256 * 1024, &["whole"])).await;
    c.assert_published().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_aborted_half_way_is_finished_by_a_new_instance() {
    let c = case(3_000_000, 103).await;
    let half = run_client(
        "node",
        "tus_js_upload.mjs",
        c.args(256 * 1024, &["abort-half"]),
    )
    .await;
    assert!(
        half > 0 && half < c.content.len() as u64,
        "aborted at {half}"
    );
    assert_eq!(
        c.f.sender
            .overview(c.id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::UploadStarted
    );
    run_client("node", "tus_js_upload.mjs", c.args(256 * 1024, &["resume"])).await;
    c.assert_published().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tus_js_client_with_four_parallel_uploads_is_concatenated_and_published() {
    let c = case(4_000_000, 104).await;
    run_client(
        "node",
        "tus_js_upload.mjs",
        c.args(300 * 1024, &["parallel"]),
    )
    .await;
    c.assert_published().await;
    // Joined from parts: the final POST moved it through UploadProcessing (one upload would not).
    let history = c.f.sender.details(c.id).await.unwrap();
    assert!(
        history
            .file_transfer_status_history
            .iter()
            .any(|s| s.file_transfer_status == FileTransferStatus::UploadProcessing),
        "{:?}",
        history.file_transfer_status_history
    );
}
