//! One organisation's subscriptions cannot starve the broker (issue 23): 1,500 subscriptions to an
//! endpoint that starts holding every delivery open, under a steady lifecycle load, against the real
//! binary. Outbound deliveries draw from a budget (per destination host, and in all), so incoming
//! requests keep their descriptors and CPU, another host's subscriber is still served promptly, and
//! memory returns once the endpoint is gone.

use crate::common::*;
use crate::support::{open_files, rss_kib};
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const SUBSCRIPTIONS: usize = 1_500;
/// `events.per_host`'s default: attempts in flight to one host.
const PER_HOST: usize = 64;
const VALIDATION: &str = "platform.events.validatesubscription";

/// An HTTP endpoint on its own loopback address: it answers the validation event with 200, and every
/// other request too (noting when each event came) until told to `hold`: from then on it holds
/// each event's request open, never answering.
struct Endpoint {
    url: String,
    hold: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
    validations: Arc<AtomicUsize>,
    held: Arc<AtomicUsize>,
    /// (event type, resourceinstance, when) of each event answered.
    received: Arc<Mutex<Vec<(String, String, Instant)>>>,
    stop: CancellationToken,
}

impl Endpoint {
    async fn start(ip: &str) -> Endpoint {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let endpoint = Endpoint {
            url,
            hold: Default::default(),
            open: Default::default(),
            most_open: Default::default(),
            validations: Default::default(),
            held: Default::default(),
            received: Default::default(),
            stop: CancellationToken::new(),
        };
        let (hold, open, most_open, validations, held, received, stop) = (
            endpoint.hold.clone(),
            endpoint.open.clone(),
            endpoint.most_open.clone(),
            endpoint.validations.clone(),
            endpoint.held.clone(),
            endpoint.received.clone(),
            endpoint.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                most_open.fetch_max(now_open, Ordering::SeqCst);
                let (hold, open, validations, held, received, stop) = (
                    hold.clone(),
                    open.clone(),
                    validations.clone(),
                    held.clone(),
                    received.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = serve(stream, &hold, &validations, &held, &received) => {}
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        endpoint
    }
}

/// Answers requests on one connection until the peer closes it (or, holding, forever).
async fn serve(
    mut stream: tokio::net::TcpStream,
    hold: &AtomicBool,
    validations: &AtomicUsize,
    held: &AtomicUsize,
    received: &Mutex<Vec<(String, String, Instant)>>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until_head_end(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + length {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: serde_json::Value =
            serde_json::from_slice(&buf[end..end + length]).unwrap_or_default();
        buf.drain(..end + length);
        let kind = body["type"].as_str().unwrap_or_default().to_string();
        if kind == VALIDATION {
            validations.fetch_add(1, Ordering::SeqCst);
        } else if hold.load(Ordering::SeqCst) {
            // Held: never answered, until the broker gives up and closes the connection.
            held.fetch_add(1, Ordering::SeqCst);
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            return;
        } else {
            let transfer = body["resourceinstance"].as_str().unwrap_or_default();
            received
                .lock()
                .unwrap()
                .push((kind, transfer.to_string(), Instant::now()));
        }
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(ok).await.is_err() {
            return;
        }
    }
}

async fn read_until_head_end(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// The broker under test, alone in its process (its descriptors and memory are its own).
struct Broker {
    served: crate::cli::Served,
    dir: tempfile::TempDir,
}

fn start_broker() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let cap = SUBSCRIPTIONS.to_string();
    let served = crate::cli::serve_with(
        dir.path(),
        &[
            ("BROKER__EVENTS__MAX_SUBSCRIPTIONS_PER_ORG", cap.as_str()),
            ("RUST_LOG", "warn"),
        ],
    );
    Broker { served, dir }
}

fn client(broker: &Broker, org: &str, scopes: &str) -> broker_protocol::client::BrokerClient {
    let token = broker::auth::dev_issuer::DevIssuer::load(broker.dir.path(), "broker-dev")
        .unwrap()
        .mint(org, scopes, chrono::Duration::hours(1))
        .unwrap();
    broker_protocol::client::BrokerClient::new(&broker.served.url).with_token(token)
}

fn subscription_to(url: &str) -> broker_protocol::subscriptions::SubscriptionRequest {
    broker_protocol::subscriptions::SubscriptionRequest {
        end_point: Some(url.to_string()),
        resource_filter: Some(format!("urn:altinn:resource:{RESOURCE}")),
        ..Default::default()
    }
}

/// The slowest of the timed calls, and how many failed.
#[derive(Default)]
struct Timings {
    slowest: Duration,
    slowest_kind: String,
    count: usize,
    failures: Vec<String>,
}

impl Timings {
    fn note<T, E: std::fmt::Debug>(
        &mut self,
        what: &str,
        started: Instant,
        r: Result<T, E>,
    ) -> Option<T> {
        if started.elapsed() > self.slowest {
            self.slowest = started.elapsed();
            self.slowest_kind = what.to_string();
        }
        self.count += 1;
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.failures.push(format!("{what}: {e:?}"));
                None
            }
        }
    }
}

/// Sender-to-recipients lifecycles, every request timed, until `stop`; returns the timings and, per
/// transfer, when its upload was answered.
async fn lifecycles(
    sender: broker_protocol::client::BrokerClient,
    recipient: broker_protocol::client::BrokerClient,
    stop: CancellationToken,
) -> (Timings, Vec<(String, Instant)>) {
    let mut t = Timings::default();
    let mut uploaded = vec![];
    let body = broker_protocol::transfer::FileTransferInitialize {
        file_name: Some("fan-out.txt".into()),
        resource_id: Some(RESOURCE.into()),
        sender: Some(SENDER.into()),
        recipients: Some(vec![RECIPIENT.into(), RECIPIENT_2.into()]),
        ..Default::default()
    };
    while !stop.is_cancelled() {
        let started = Instant::now();
        let Some(id) = t.note("initialize", started, sender.initialize(&body).await) else {
            continue;
        };
        let started = Instant::now();
        let up = sender.upload(id, b"a small file".to_vec()).await;
        if t.note("upload", started, up).is_none() {
            continue;
        }
        uploaded.push((id.to_string(), Instant::now()));
        loop {
            let started = Instant::now();
            let Some(o) = t.note("overview", started, recipient.overview(id).await) else {
                break;
            };
            if o.summary.file_transfer_status == broker_protocol::FileTransferStatus::Published {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = Instant::now();
        let download = match recipient.download(id, None).await {
            Ok(r) => r.bytes().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        t.note("download", started, download);
        let started = Instant::now();
        t.note("confirm", started, recipient.confirm_download(id).await);
    }
    (t, uploaded)
}

/// /health probes from a new connection each, every 100 ms until `stop`.
fn probe_health(url: String, stop: CancellationToken) -> tokio::task::JoinHandle<Timings> {
    tokio::spawn(async move {
        let probe = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(1))
            .build()
            .unwrap();
        let mut t = Timings::default();
        while !stop.is_cancelled() {
            let started = Instant::now();
            let r = probe.get(format!("{url}/health")).send().await;
            let r = r.map_err(|e| e.to_string()).and_then(|r| {
                let status = r.status();
                status.is_success().then_some(()).ok_or(status.to_string())
            });
            t.note("/health", started, r);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        t
    })
}

/// Waits until `done` holds (panics with `what` after `limit`).
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn fifteen_hundred_subscriptions_to_an_endpoint_that_holds_every_delivery_starve_nothing() {
    let _alone = cpu_exclusive().await;
    broker::http::connections::raise_open_file_limit();
    let holding = Endpoint::start("127.0.0.1").await;
    // Another host (127.0.0.2 is loopback too), with one subscriber of another organisation.
    let healthy = Endpoint::start("127.0.0.2").await;
    let broker = start_broker();
    let pid = broker.served.child.id();

    let owner = client(&broker, SERVICE_OWNER, SO_SCOPE);
    owner.create_service_owner("Fan-out owner").await.unwrap();
    owner
        .configure_resource(RESOURCE, &Default::default())
        .await
        .unwrap();
    let subscriber = client(&broker, RECIPIENT, "altinn:events.subscribe");
    let request = subscription_to(&holding.url);
    let created: Vec<_> = futures::stream::iter(0..SUBSCRIPTIONS)
        .map(|_| subscriber.create_subscription(&request))
        .buffer_unordered(16)
        .collect()
        .await;
    let failed: Vec<_> = created.iter().filter_map(|c| c.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "creations up to the cap failed: {failed:?}"
    );
    let over = subscriber.create_subscription(&request).await;
    crate::support::expect_problem(over, 400, "BRO-09019");
    client(&broker, RECIPIENT_2, "altinn:events.subscribe")
        .create_subscription(&subscription_to(&healthy.url))
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(120),
        "not every endpoint validated",
        || {
            holding.validations.load(Ordering::SeqCst) == SUBSCRIPTIONS
                && healthy.validations.load(Ordering::SeqCst) == 1
        },
    )
    .await;

    let sender = || client(&broker, SENDER, &format!("{WRITE} {READ}"));
    let recipient = || client(&broker, RECIPIENT, READ);
    // Warm-up: the same lifecycles while the endpoint still answers, so the broker's caches and
    // pools are at their working size before the level memory must return to is taken.
    let warm = CancellationToken::new();
    let warming = tokio::spawn(lifecycles(sender(), recipient(), warm.clone()));
    tokio::time::sleep(Duration::from_secs(8)).await;
    warm.cancel();
    let (warm_up, _) = warming.await.unwrap();
    assert!(
        warm_up.failures.is_empty(),
        "the warm-up failed: {:?}",
        &warm_up.failures[..warm_up.failures.len().min(3)]
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_before, files_before) = (rss_kib(pid), open_files(pid));

    // The endpoint now holds every delivery. Load: lifecycles whose events go to all 1,501
    // subscriptions, /health probes, and the broker's descriptors sampled, for 20 s.
    holding.hold.store(true, Ordering::SeqCst);
    let stop = CancellationToken::new();
    let load = tokio::spawn(lifecycles(sender(), recipient(), stop.clone()));
    let probes = probe_health(broker.served.url.clone(), stop.clone());
    let load_started = Instant::now();
    let mut most_files = 0;
    while load_started.elapsed() < Duration::from_secs(20) {
        most_files = most_files.max(open_files(pid));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    let (lifecycle, uploaded) = load.await.unwrap();
    let health = probes.await.unwrap();
    let held = holding.held.load(Ordering::SeqCst);
    let most_open = holding.most_open.load(Ordering::SeqCst);
    eprintln!(
        "fan-out: {} lifecycle requests (slowest {:?}, {}), {} /health probes (slowest {:?}); \
         descriptors {files_before} before, at most {most_files} under load; \
         {held} deliveries held, at most {most_open} connections to the holding host",
        lifecycle.count, lifecycle.slowest, lifecycle.slowest_kind, health.count, health.slowest
    );
    for (what, t) in [("lifecycle", &lifecycle), ("/health", &health)] {
        assert!(
            t.failures.is_empty(),
            "{} {what} requests failed, the first: {:?}",
            t.failures.len(),
            &t.failures[..t.failures.len().min(3)]
        );
    }
    assert!(
        uploaded.len() >= 10,
        "only {} lifecycles ran",
        uploaded.len()
    );
    assert!(health.count >= 100, "only {} probes ran", health.count);
    assert!(
        lifecycle.slowest < Duration::from_secs(1),
        "slowest lifecycle request: {:?}",
        lifecycle.slowest
    );
    assert!(
        health.slowest < Duration::from_secs(1),
        "slowest /health: {:?}",
        health.slowest
    );
    assert!(held >= PER_HOST, "the endpoint held only {held} deliveries");
    // In flight (at most per_host) and idle kept-alive connections (at most as many).
    assert!(
        most_open <= 2 * PER_HOST,
        "{most_open} connections to one host at once (per_host is {PER_HOST})"
    );
    // The stated bound: the per-host budget's connections, in flight and idle, and the test's own
    // few, over what the broker had open before.
    let bound = files_before + 2 * PER_HOST + 64;
    assert!(
        most_files <= bound,
        "{most_files} descriptors open, the bound is {bound}"
    );

    // The other host's subscriber got every transfer's Published event, promptly.
    let published = |id: &str| {
        healthy
            .received
            .lock()
            .unwrap()
            .iter()
            .find(|(kind, t, _)| kind == "no.altinn.broker.published" && t == id)
            .map(|(_, _, when)| *when)
    };
    wait_until(
        Duration::from_secs(10),
        "the other host's subscriber is missing Published events",
        || uploaded.iter().all(|(id, _)| published(id).is_some()),
    )
    .await;
    let slowest_healthy = uploaded
        .iter()
        .filter_map(|(id, at)| Some(published(id)?.saturating_duration_since(*at)))
        .max()
        .unwrap_or_default();
    assert!(
        slowest_healthy < Duration::from_secs(5),
        "the other host's subscriber waited {slowest_healthy:?} for a Published event"
    );

    // The endpoint goes away: memory and descriptors return.
    holding.stop.cancel();
    let returned =
        |rss: u64, files: usize| rss <= rss_before + rss_before / 10 && files <= files_before + 16;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (rss_after, files_after) = loop {
        let (rss, files) = (rss_kib(pid), open_files(pid));
        if returned(rss, files) || Instant::now() > deadline {
            break (rss, files);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "fan-out: RSS {rss_before} KiB before, {rss_after} KiB after; descriptors {files_after} after"
    );
    assert!(
        returned(rss_after, files_after),
        "RSS {rss_before} KiB and {files_before} descriptors before, {rss_after} KiB and {files_after} after the endpoint went away"
    );
    healthy.stop.cancel();
}
