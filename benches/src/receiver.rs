//! A webhook receiver for the delivery benchmarks: HTTP/1.1 on a loopback port, verifying each
//! delivery's Standard Webhooks signature and recording its lag (from the event's `time` to its
//! arrival) and arrival count. Fast enough not to be what is measured.

use crate::stats::Recorder;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Received {
    /// Lag of each event's first arrival.
    pub lag: Recorder,
    /// Distinct events (by webhook-id) that arrived.
    pub events: u64,
    pub duplicates: u64,
    pub bad_signatures: u64,
    pub validations: u64,
    /// When the last new event arrived.
    pub last: Option<std::time::Instant>,
    seen: HashSet<String>,
}

pub struct Receiver {
    pub port: u16,
    secrets: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

fn header<'a>(request: &'a hyper::Request<hyper::body::Incoming>, name: &str) -> &'a str {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let secrets: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let received: Arc<Mutex<Received>> = Arc::default();
        let (s, r) = (secrets.clone(), received.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (s, r) = (s.clone(), r.clone());
                        async move { Ok::<_, hyper::Error>(handle(request, &s, &r).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Receiver {
            port,
            secrets,
            received,
            task,
        })
    }

    /// The endpoint of subscriber `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/hook/{name}", self.port)
    }

    /// The secret `name`'s deliveries are verified against.
    pub fn set_secret(&self, name: &str, secret: &str) {
        let key = broker_protocol::webhooks::secret_key(secret).unwrap_or_default();
        self.secrets
            .lock()
            .expect("secrets")
            .insert(name.to_string(), key);
    }

    /// Takes what arrived so far and starts counting afresh.
    pub fn take(&self) -> Received {
        std::mem::take(&mut *self.received.lock().expect("received"))
    }

    pub fn events(&self) -> u64 {
        self.received.lock().expect("received").events
    }

    /// Waits until `n` events arrived in all (or `limit` passed); how many did.
    pub async fn wait_for(&self, n: u64, limit: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + limit;
        while self.events() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.events()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    request: hyper::Request<hyper::body::Incoming>,
    secrets: &Mutex<HashMap<String, Vec<u8>>>,
    received: &Mutex<Received>,
) -> hyper::Response<Full<Bytes>> {
    let arrived = chrono::Utc::now();
    let name = request
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    let id = header(&request, "webhook-id").to_string();
    let timestamp: i64 = header(&request, "webhook-timestamp").parse().unwrap_or(0);
    let signature = header(&request, "webhook-signature").to_string();
    let body = match request.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return answer(400),
    };
    let key = secrets.lock().expect("secrets").get(&name).cloned();
    let valid = key
        .is_some_and(|k| broker_protocol::webhooks::verify(&k, &id, timestamp, &body, &signature));
    let mut r = received.lock().expect("received");
    if !valid {
        r.bad_signatures += 1;
        return answer(401);
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if event["type"] == broker_protocol::subscriptions::VALIDATION_EVENT_TYPE {
        r.validations += 1;
        return answer(200);
    }
    if !r.seen.insert(id) {
        r.duplicates += 1;
        return answer(200);
    }
    if let Some(time) = event["time"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        let lag = (arrived - time.with_timezone(&chrono::Utc))
            .to_std()
            .unwrap_or_default();
        r.lag.record(lag);
    }
    r.events += 1;
    r.last = Some(std::time::Instant::now());
    answer(200)
}

fn answer(status: u16) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("a valid status");
    response
}
