//! `/metrics`: a Prometheus exposition that prometheus-client's parser reads, whose series move with
//! a scripted lifecycle, answered to loopback peers without a token and only with the token when one
//! is configured.

use crate::common::*;
use broker::auth::dev_issuer::DevIssuer;
use broker_protocol::client::BrokerClient;
use broker_protocol::transfer::FileTransferInitialize;
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

async fn scrape(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{url}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn samples(url: &str) -> Vec<Value> {
    let r = scrape(url, None).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    parse(&r.text().await.unwrap())
}

/// A broker alone in its own process (the binary), with a service owner and the resource.
///
/// Why a process of its own: the `metrics` facade has one recorder per process, and the broker's
/// counters are recorded through it from everywhere (the HTTP layer, the actors). Every broker the
/// other tests start in this test binary counts into that same recorder, and the gauges are set
/// from whichever broker was scraped last, so a delta read there is anybody's. Giving each broker a
/// recorder of its own would thread a handle through every place that counts, for the tests' sake
/// only; a broker alone in its process is how it runs in production, and its deltas are exact.
struct Alone {
    served: crate::cli::Served,
    data: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Alone {
    async fn start() -> Alone {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let served = crate::cli::serve(&data);
        let alone = Alone {
            served,
            data,
            _dir: dir,
        };
        let owner = alone.client(SERVICE_OWNER, SO_SCOPE);
        owner.create_service_owner("Metrics").await.unwrap();
        owner
            .configure_resource(RESOURCE, &Default::default())
            .await
            .unwrap();
        alone
    }

    fn url(&self) -> &str {
        &self.served.url
    }

    fn client(&self, org: &str, scopes: &str) -> BrokerClient {
        let token = DevIssuer::load(&self.data, "broker-dev")
            .unwrap()
            .mint(org, scopes, chrono::Duration::hours(1))
            .unwrap();
        BrokerClient::new(self.url()).with_token(token)
    }
}

#[tokio::test]
async fn the_metrics_parse_and_move_with_a_lifecycle_by_exactly_what_it_did() {
    let broker = Alone::start().await;
    let sender = broker.client(SENDER, &format!("{WRITE} {READ}"));
    let recipient = broker.client(RECIPIENT, READ);
    let before = samples(broker.url()).await;
    let content = payload(3 << 20, 7);
    let id = sender
        .initialize(&FileTransferInitialize {
            file_name: Some("metrics.bin".into()),
            resource_id: Some(RESOURCE.into()),
            senders_file_transfer_reference: Some("metrics".into()),
            sender: Some(SENDER.into()),
            recipients: Some(vec![RECIPIENT.into()]),
            ..Default::default()
        })
        .await
        .unwrap();
    sender.upload(id, content.clone()).await.unwrap();
    let downloaded = recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&downloaded), sha256_hex(&content));
    recipient.confirm_download(id).await.unwrap();
    let after = samples(broker.url()).await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };

    let initialize = [
        ("route", "/broker/api/v1/filetransfer"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert_eq!(moved("broker_http_requests_total", &initialize), 1.0);
    let download = [
        ("route", "/broker/api/v1/filetransfer/{id}/download"),
        ("method", "GET"),
    ];
    assert_eq!(
        moved("broker_http_request_duration_seconds_count", &download),
        1.0
    );
    let confirm = [
        ("route", "/broker/api/v1/filetransfer/{id}/confirmdownload"),
        ("method", "POST"),
    ];
    assert_eq!(moved("broker_http_requests_total", &confirm), 1.0);
    // The scrape before the lifecycle is counted, the one that reads the counts is not yet.
    assert_eq!(
        moved("broker_http_requests_total", &[("route", "/metrics")]),
        1.0
    );
    assert_eq!(
        moved("broker_upload_bytes_total", &[]),
        content.len() as f64
    );
    assert_eq!(
        moved("broker_download_bytes_total", &[]),
        content.len() as f64
    );
    assert_eq!(
        moved("broker_upload_throughput_bytes_per_second_count", &[]),
        1.0
    );
    assert_eq!(
        moved("broker_download_throughput_bytes_per_second_count", &[]),
        1.0
    );
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
    assert_eq!(
        moved("broker_jobs_queued", &[]),
        2.0,
        "the transfer's purge at expiry and its purge after confirmation wait"
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
    let url = server.url.as_str();
    assert_eq!(scrape(url, None).await.status(), 401);
    assert_eq!(scrape(url, Some("wrong")).await.status(), 401);
    let r = scrape(url, Some("s3cret-scraper")).await;
    assert_eq!(r.status(), 200);
    assert!(!parse(&r.text().await.unwrap()).is_empty());
}
