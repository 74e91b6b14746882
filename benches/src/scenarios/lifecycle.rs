//! `lifecycle`: C concurrent clients each repeat initialize -> upload -> search -> download -> confirm
//! with a small file for a fixed duration. Reports whole lifecycles/s, per-step throughput and latency
//! percentiles, and failed requests by status.

use super::Context;
use crate::payload::fill_random;
use crate::procwatch::ProcWatch;
use crate::report::{ScenarioResult, StepFigures};
use crate::stats::{Errors, Recorder};
use broker_protocol::client::{BrokerClient, ClientError};
use bytes::Bytes;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const STEPS: [&str; 5] = ["initialize", "upload", "search", "download", "confirm"];

#[derive(Default, Clone)]
struct WorkerFigures {
    steps: [Recorder; 5],
    lifecycle: Recorder,
    errors: Errors,
    completed: u64,
}

/// Measures one request; a failure is counted by status and ends this lifecycle.
async fn timed<T>(
    figures: &mut WorkerFigures,
    step: usize,
    request: impl std::future::Future<Output = Result<T, ClientError>>,
) -> Option<T> {
    let started = Instant::now();
    match request.await {
        Ok(v) => {
            figures.steps[step].record(started.elapsed());
            Some(v)
        }
        Err(e) => {
            figures.errors.add(e.status());
            None
        }
    }
}

async fn one_lifecycle(ctx: &Context, body: &Bytes, figures: &mut WorkerFigures) -> Option<()> {
    let (sender, recipient): (&BrokerClient, &BrokerClient) =
        (&ctx.target.sender, &ctx.target.recipient);
    let resource = ctx.target.resource.as_str();
    let started = Instant::now();
    let init = super::initialize_body(resource, "small.bin");
    let id = timed(figures, 0, sender.initialize(&init)).await?;
    timed(figures, 1, sender.upload(id, body.clone())).await?;
    let query = [
        ("resourceId", resource),
        ("status", "Published"),
        ("recipientStatus", "Initialized"),
    ];
    timed(figures, 2, recipient.search(&query)).await?;
    let download = async {
        let response = recipient.download(id, None).await?;
        response.bytes().await.map_err(ClientError::Http)
    };
    let received = timed(figures, 3, download).await?;
    if received.len() != body.len() {
        figures.errors.add(None);
        return None;
    }
    timed(figures, 4, recipient.confirm_download(id)).await?;
    figures.lifecycle.record(started.elapsed());
    figures.completed += 1;
    Some(())
}

/// Requests of each kind (at most) in the phases that measure the broker's CPU per request kind.
const REQUESTS_PER_KIND_PHASE: usize = 1000;
/// Enough requests that a phase spans many of the kernel's 10 ms CPU ticks.
const MIN_REQUESTS_PER_KIND_PHASE: usize = 200;

/// How long wrk gets `/health` for the anchor: a quarter of the load's duration, 1 to 5 s.
fn wrk_duration(load: Duration) -> Duration {
    (load / 4).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// Runs the load alone, then (on a broker this tool started) one phase per request kind, and
/// returns the scenario's figures.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: usize,
    duration: Duration,
    size: u64,
) -> anyhow::Result<ScenarioResult> {
    // The anchor first, on the idle broker: its figure is this machine's, not the broker's load.
    let wrk = if ctx.anchors {
        let url = format!("{}/health", ctx.target.url);
        eprintln!("lifecycle: anchor: wrk on {url} ...");
        tokio::task::spawn_blocking(move || {
            crate::anchors::wrk_rate(&url, concurrency, wrk_duration(duration))
        })
        .await?
    } else {
        None
    };
    let mut result = run_named(ctx.clone(), "lifecycle", concurrency, duration, size).await?;
    if let (Some(rate), Some(lifecycles)) = (wrk, result.lifecycles_per_sec) {
        let requests = lifecycles * STEPS.len() as f64;
        result
            .figures
            .insert("anchor_wrk_health_requests_per_sec".into(), rate);
        result.figures.insert("requests_per_sec".into(), requests);
        result
            .figures
            .insert("requests_to_wrk_health".into(), requests / rate);
    }
    if let Some(pid) = ctx.target.pid() {
        // As many requests per kind as the load made lifecycles, within bounds (a short run stays short).
        let completed =
            (result.lifecycles_per_sec.unwrap_or(0.0) * duration.as_secs_f64()) as usize;
        let per_phase = REQUESTS_PER_KIND_PHASE.min(completed.max(MIN_REQUESTS_PER_KIND_PHASE));
        eprintln!("lifecycle: {per_phase} requests of each kind alone, for the CPU each costs ...");
        let mut errors = Errors::default();
        let costs = super::request_cost::measure(
            &ctx,
            pid,
            concurrency,
            per_phase,
            &payload(size),
            &mut errors,
        )
        .await;
        result.figures.extend(costs);
        result.errors += errors.total();
        for (status, n) in errors.0 {
            *result.errors_by_status.entry(status).or_default() += n;
        }
    }
    Ok(result)
}

fn payload(size: u64) -> Bytes {
    let mut payload = vec![0u8; size as usize];
    fill_random(&mut payload, &mut 0x2545_F491_4F6C_DD1D);
    Bytes::from(payload)
}

pub async fn run_named(
    ctx: Arc<Context>,
    name: &str,
    concurrency: usize,
    duration: Duration,
    size: u64,
) -> anyhow::Result<ScenarioResult> {
    let body = payload(size);
    eprintln!("{name}: {concurrency} clients for {duration:?}, {size}-byte files ...");
    let watch = ctx.target.pid().map(ProcWatch::start);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprintln!("  {secs:5.1} s  {n} lifecycles  ({:.0}/s)", n as f64 / secs);
            }
        })
    };
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (ctx, body, done) = (ctx.clone(), body.clone(), done.clone());
            tokio::spawn(async move {
                let mut figures = WorkerFigures::default();
                while Instant::now() < deadline {
                    if one_lifecycle(&ctx, &body, &mut figures).await.is_some() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                figures
            })
        })
        .collect();
    let mut total = WorkerFigures::default();
    for worker in workers {
        let f = worker.await?;
        for (all, one) in total.steps.iter_mut().zip(f.steps.iter()) {
            all.merge(one);
        }
        total.lifecycle.merge(&f.lifecycle);
        total.errors.merge(&f.errors);
        total.completed += f.completed;
    }
    progress.abort();
    let elapsed = started.elapsed().as_secs_f64();
    let proc = watch.map(ProcWatch::finish);
    let mut all_requests = Recorder::default();
    let mut steps = std::collections::BTreeMap::new();
    for (name, recorder) in STEPS.iter().zip(total.steps.iter()) {
        all_requests.merge(recorder);
        if let Some(latency) = recorder.latency() {
            steps.insert(
                name.to_string(),
                StepFigures {
                    per_sec: recorder.count() as f64 / elapsed,
                    latency_ms: latency,
                },
            );
        }
    }
    if let Some(latency) = total.lifecycle.latency() {
        steps.insert(
            "whole_lifecycle".into(),
            StepFigures {
                per_sec: total.completed as f64 / elapsed,
                latency_ms: latency,
            },
        );
    }
    let mut figures = std::collections::BTreeMap::new();
    if let Some(p) = proc.filter(|_| total.completed > 0) {
        // The broker's CPU for the whole run over the lifecycles it completed.
        figures.insert(
            "cpu_ms_per_lifecycle".to_string(),
            p.cpu_seconds * 1000.0 / total.completed as f64,
        );
    }
    Ok(ScenarioResult {
        scenario: name.into(),
        figures,
        params: [
            ("concurrency".to_string(), json!(concurrency)),
            ("duration_secs".to_string(), json!(duration.as_secs_f64())),
            ("size".to_string(), json!(size)),
        ]
        .into(),
        lifecycles_per_sec: Some(total.completed as f64 / elapsed),
        errors: total.errors.total(),
        errors_by_status: total.errors.0.clone(),
        latency_ms: all_requests.latency(),
        steps,
        peak_rss_mib: proc.map(|p| p.peak_rss_mib),
        cpu_seconds: proc.map(|p| p.cpu_seconds),
        ..Default::default()
    })
}
