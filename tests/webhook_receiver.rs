//! The real webhook receiver (`tests/webhooks/receiver.py`, Python's `standardwebhooks` and
//! `cloudevents` packages) as the delivery tests drive it: started on a free loopback port, stopped
//! (connections refused) and started again on the same port, its log read back.

use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const VALIDATION: &str = "platform.events.validatesubscription";

pub struct Receiver {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    secrets: HashMap<String, Vec<String>>,
    _dir: tempfile::TempDir,
}

async fn spawn(log: &PathBuf, port: u16) -> (Child, u16) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/webhooks/receiver.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(log)
        .arg(port.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs the webhook receiver");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the receiver starts within 20 s")
        .unwrap()
        .expect("the receiver prints its port (are standardwebhooks and cloudevents installed?)");
    let port = line
        .strip_prefix("listening on ")
        .and_then(|p| p.trim().parse().ok())
        .expect("listening on PORT");
    (child, port)
}

impl Receiver {
    pub async fn start() -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("received.jsonl");
        let (child, port) = spawn(&log, 0).await;
        Receiver {
            child: Some(child),
            port,
            log,
            secrets: HashMap::new(),
            _dir: dir,
        }
    }

    /// The endpoint of subscriber `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/hook/{name}", self.port)
    }

    async fn put(&self, path: &str, body: String) {
        let url = format!("http://127.0.0.1:{}/control/{path}", self.port);
        let r = reqwest::Client::new()
            .put(url)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }

    /// The secrets `name`'s deliveries are verified against (any one may sign).
    pub async fn set_secrets(&mut self, name: &str, secrets: &[&str]) {
        let secrets: Vec<String> = secrets.iter().map(|s| s.to_string()).collect();
        self.put(&format!("{name}/secret"), secrets.join(" ")).await;
        self.secrets.insert(name.to_string(), secrets);
    }

    /// What `name`'s endpoint answers from now on (0: takes the request and never answers).
    pub async fn answer(&self, name: &str, status: u16) {
        self.put(&format!("{name}/answer"), status.to_string())
            .await;
    }

    /// Makes `name` take only bodies of `media_type` (415 for any other), as a framework's JSON body
    /// parser does.
    pub async fn accept_only(&self, name: &str, media_type: &str) {
        self.put(&format!("{name}/accept"), media_type.to_string())
            .await;
    }

    /// Stops the receiver: its port refuses connections.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts the receiver again on its port, with the secrets it had (answers are 200 again).
    pub async fn restart(&mut self) {
        let mut last = None;
        for _ in 0..50 {
            let (child, port) = spawn(&self.log, self.port).await;
            if port == self.port {
                last = Some(child);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.child = Some(last.expect("the receiver got its port back"));
        for (name, secrets) in self.secrets.clone() {
            self.put(&format!("{name}/secret"), secrets.join(" ")).await;
        }
    }

    /// Every request received so far, in order.
    pub fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The requests `name` received, validation events left out.
    pub fn events_for(&self, name: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["name"] == name && r["event"]["type"] != VALIDATION)
            .collect()
    }

    /// Waits (up to `limit`) until `name` has answered 2xx to every event id in `ids`.
    pub async fn wait_for(&self, name: &str, ids: &[String], limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let done: std::collections::HashSet<String> = self
                .events_for(name)
                .iter()
                .filter(|r| {
                    r["answered"]
                        .as_u64()
                        .is_some_and(|s| (200..300).contains(&s))
                })
                .map(|r| r["webhook_id"].as_str().unwrap_or_default().to_string())
                .collect();
            let missing: Vec<_> = ids.iter().filter(|id| !done.contains(*id)).collect();
            if missing.is_empty() {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{name} did not receive {} events within {limit:?}: {missing:?}",
                    missing.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
