//! `/metrics`: a Prometheus exposition that prometheus-client's parser reads, whose series move with
//! a scripted lifecycle, answered to loopback peers without a token and only with the token when one
//! is configured.

use crate::common::*;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// The samples of an exposition, parsed by prometheus-client (Python).
fn parse(text: &str) -> Vec<Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/webhooks/parse_metrics.py"
    );
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus-client could not parse it: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The sum of the samples named `name` whose labels include `labels`.
fn value(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .map(|s| s["value"].as_f64().unwrap())
        .sum()
}

async fn scrape(server: &TestServer, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{}/metrics", server.url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn samples(server: &TestServer) -> Vec<Value> {
    let r = scrape(server, None).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    parse(&r.text().await.unwrap())
}

#[tokio::test]
async fn the_metrics_parse_and_move_with_a_lifecycle() {
    let f = Fixture::new().await;
    let before = samples(&f.server).await;
    let content = payload(3 << 20, 7);
    let id = f.publish(&[RECIPIENT], &content).await;
    f.assert_recipient_downloads(id, &content).await;
    f.recipient.confirm_download(id).await.unwrap();
    let after = samples(&f.server).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };

    let initialize = [
        ("route", "/broker/api/v1/filetransfer"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert!(moved("broker_http_requests_total", &initialize) >= 1.0);
    let download = [
        ("route", "/broker/api/v1/filetransfer/{id}/download"),
        ("method", "GET"),
    ];
    assert!(moved("broker_http_request_duration_seconds_count", &download) >= 1.0);
    assert!(moved("broker_upload_bytes_total", &[]) >= content.len() as f64);
    assert!(moved("broker_download_bytes_total", &[]) >= content.len() as f64);
    assert!(moved("broker_upload_throughput_bytes_per_second_count", &[]) >= 1.0);
    assert!(moved("broker_download_throughput_bytes_per_second_count", &[]) >= 1.0);
    // Gauges are this broker's own state.
    assert_eq!(
        value(
            &after,
            "broker_transfers",
            &[("status", "AllConfirmedDownloaded")]
        ),
        1.0
    );
    assert_eq!(
        value(&after, "broker_transfers", &[("status", "Published")]),
        0.0
    );
    assert!(
        value(&after, "broker_jobs_queued", &[]) >= 1.0,
        "the purge after confirmation waits"
    );
    assert_eq!(value(&after, "broker_deliveries_pending", &[]), 0.0);
    let routes: Vec<&str> = after
        .iter()
        .filter(|s| s["name"] == "broker_http_requests_total")
        .filter_map(|s| s["labels"]["route"].as_str())
        .collect();
    assert!(
        routes.iter().all(|r| !r.contains(&id.to_string())),
        "routes are patterns, not paths"
    );
}

#[tokio::test]
async fn with_a_token_configured_metrics_need_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.metrics.token = Some("s3cret-scraper".into());
    let server = TestServer::start_with(config).await;
    assert_eq!(scrape(&server, None).await.status(), 401);
    assert_eq!(scrape(&server, Some("wrong")).await.status(), 401);
    let r = scrape(&server, Some("s3cret-scraper")).await;
    assert_eq!(r.status(), 200);
    assert!(!parse(&r.text().await.unwrap()).is_empty());
}
