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

/// Runs the load alone and returns the scenario's figures.
pub async fn run(
    ctx: Arc<Context>,
    concurrency: usize,
    duration: Duration,
    size: u64,
) -> anyhow::Result<ScenarioResult> {
    run_named(ctx, "lifecycle", concurrency, duration, size).await
}

pub async fn run_named(
    ctx: Arc<Context>,
    name: &str,
    concurrency: usize,
    duration: Duration,
    size: u64,
) -> anyhow::Result<ScenarioResult> {
    let mut payload = vec![0u8; size as usize];
    fill_random(&mut payload, &mut 0x2545_F491_4F6C_DD1D);
    let body = Bytes::from(payload);
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
