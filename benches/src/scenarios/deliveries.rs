//! `deliveries`: signed webhook delivery to a local receiver. For each offered rate (events/s, or
//! `max`: 64 clients initializing as fast as the broker takes them) one subscription receives every
//! `filetransferinitialized` event; reports the rate delivered and the lag from each event's commit
//! (its `time`) to its arrival. Then lifecycles/s at a concurrency without subscriptions and with one
//! per party (sender, recipient, service owner) receiving every event.

use super::Context;
use crate::procwatch::ProcWatch;
use crate::receiver::Receiver;
use crate::report::ScenarioResult;
use crate::stats::Errors;
use crate::target::{OWNER_ORG, RECIPIENT_ORG, SENDER_ORG};
use broker_protocol::client::BrokerClient;
use broker_protocol::subscriptions::SubscriptionRequest;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SUBSCRIBE: &str = "altinn:events.subscribe";
/// Clients initializing at once for the `max` rate.
const MAX_RATE_CLIENTS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    PerSec(u64),
    Max,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(s: &str) -> Result<Rate, String> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        s.parse()
            .ok()
            .filter(|n| *n > 0)
            .map(Rate::PerSec)
            .ok_or_else(|| format!("{s:?} is not a positive number of events/s or max"))
    }
}

pub struct DeliveryOptions {
    pub rates: Vec<Rate>,
    pub duration: Duration,
    /// Clients of the lifecycle comparison (0 skips it).
    pub lifecycle_concurrency: usize,
    pub lifecycle_duration: Duration,
}

async fn subscribe(
    ctx: &Context,
    receiver: &Receiver,
    client: &BrokerClient,
    name: &str,
    type_filter: Option<&str>,
) -> anyhow::Result<i64> {
    let request = SubscriptionRequest {
        end_point: Some(receiver.url(name)),
        resource_filter: Some(format!("urn:altinn:resource:{}", ctx.target.resource)),
        type_filter: type_filter.map(str::to_string),
        ..Default::default()
    };
    let created = client.create_subscription(&request).await?;
    // A validation that arrives before the secret is refused (401) and retried by the broker.
    receiver.set_secret(name, created.secret.as_deref().unwrap_or_default());
    for _ in 0..500 {
        if client.subscription(created.id).await?.validated {
            return Ok(created.id);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("the subscription {name} was not validated within 10 s")
}

/// Initializes transfers at `rate` for `duration`; how many succeeded, and the failures.
async fn offer(ctx: &Arc<Context>, rate: Rate, duration: Duration) -> (u64, Errors) {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Errors::default()));
    let deadline = Instant::now() + duration;
    let one = |ctx: Arc<Context>, ok: Arc<AtomicU64>, errors: Arc<std::sync::Mutex<Errors>>| async move {
        match ctx.initialize("event.bin").await {
            Ok(_) => {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let status = e
                    .downcast_ref::<broker_protocol::client::ClientError>()
                    .and_then(|c| c.status());
                errors.lock().expect("errors").add(status);
            }
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    match rate {
        Rate::Max => {
            for _ in 0..MAX_RATE_CLIENTS {
                let (ctx, ok, errors) = (ctx.clone(), ok.clone(), errors.clone());
                tasks.spawn(async move {
                    while Instant::now() < deadline {
                        one(ctx.clone(), ok.clone(), errors.clone()).await;
                    }
                });
            }
        }
        Rate::PerSec(n) => {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / n as f64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            while Instant::now() < deadline {
                tick.tick().await;
                tasks.spawn(one(ctx.clone(), ok.clone(), errors.clone()));
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let errors = errors.lock().expect("errors").clone();
    (ok.load(Ordering::Relaxed), errors)
}

async fn rate_round(
    ctx: &Arc<Context>,
    receiver: &Receiver,
    rate: Rate,
    duration: Duration,
) -> anyhow::Result<ScenarioResult> {
    let label = match rate {
        Rate::PerSec(n) => n.to_string(),
        Rate::Max => "max".to_string(),
    };
    eprintln!("deliveries: offering {label} events/s for {duration:?} ...");
    receiver.take();
    let watch = ctx.target.pid().map(ProcWatch::start);
    let started = Instant::now();
    let (offered, errors) = offer(ctx, rate, duration).await;
    let offering = started.elapsed().as_secs_f64();
    let arrived = receiver.wait_for(offered, Duration::from_secs(120)).await;
    let received = receiver.take();
    let procs = watch.map(ProcWatch::finish);
    let span = received
        .last
        .map_or(offering, |l| l.duration_since(started).as_secs_f64());
    let lag = received.lag.latency();
    let mut result = ScenarioResult {
        scenario: "deliveries".into(),
        params: [
            ("offered_rate".to_string(), json!(label)),
            ("duration_secs".to_string(), json!(duration.as_secs_f64())),
        ]
        .into(),
        errors: errors.total() + offered.saturating_sub(arrived) + received.bad_signatures,
        errors_by_status: errors.0.clone(),
        latency_ms: lag,
        peak_rss_mib: procs.map(|p| p.peak_rss_mib),
        cpu_seconds: procs.map(|p| p.cpu_seconds),
        ..Default::default()
    };
    let f = &mut result.figures;
    f.insert("events_offered_per_sec".into(), offered as f64 / offering);
    f.insert("events_delivered_per_sec".into(), arrived as f64 / span);
    f.insert("events_lost".into(), offered.saturating_sub(arrived) as f64);
    f.insert("duplicates".into(), received.duplicates as f64);
    f.insert("bad_signatures".into(), received.bad_signatures as f64);
    if let Some(lag) = lag {
        f.insert("lag_p50_ms".into(), lag.p50);
        f.insert("lag_p99_ms".into(), lag.p99);
    }
    Ok(result)
}

pub async fn run(
    ctx: Arc<Context>,
    options: &DeliveryOptions,
) -> anyhow::Result<Vec<ScenarioResult>> {
    let receiver = Receiver::start().await?;
    let target = &ctx.target;
    let mut results = vec![];
    if !options.rates.is_empty() {
        let sender = target.client_for(SENDER_ORG, SUBSCRIBE)?;
        let id = subscribe(
            &ctx,
            &receiver,
            &sender,
            "initialized",
            Some("no.altinn.broker.filetransferinitialized"),
        )
        .await?;
        for rate in &options.rates {
            results.push(rate_round(&ctx, &receiver, *rate, options.duration).await?);
        }
        sender.delete_subscription(id).await?;
    }
    if options.lifecycle_concurrency > 0 {
        let (c, d) = (options.lifecycle_concurrency, options.lifecycle_duration);
        let without =
            super::lifecycle::run_named(ctx.clone(), "lifecycle_without_subscriptions", c, d, 1024)
                .await?;
        let parties = [
            ("sender", target.client_for(SENDER_ORG, SUBSCRIBE)?),
            ("recipient", target.client_for(RECIPIENT_ORG, SUBSCRIBE)?),
            (
                "owner",
                target.client_for(OWNER_ORG, &format!("altinn:serviceowner {SUBSCRIBE}"))?,
            ),
        ];
        for (name, client) in &parties {
            subscribe(&ctx, &receiver, client, name, None).await?;
        }
        receiver.take();
        let mut with =
            super::lifecycle::run_named(ctx.clone(), "lifecycle_with_subscriptions", c, d, 1024)
                .await?;
        // Lifecycles emit about 8 events each to these three subscribers; wait for the tail.
        let mut last = receiver.events();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = receiver.events();
            if now == last {
                break;
            }
            last = now;
        }
        let received = receiver.take();
        if let (Some(a), Some(b)) = (with.lifecycles_per_sec, without.lifecycles_per_sec) {
            with.figures
                .insert("to_without_subscriptions_lifecycles_per_sec".into(), a / b);
        }
        with.figures
            .insert("events_delivered".into(), received.events as f64);
        with.figures.insert(
            "events_delivered_per_sec".into(),
            received.events as f64 / d.as_secs_f64(),
        );
        with.figures
            .insert("bad_signatures".into(), received.bad_signatures as f64);
        if let Some(lag) = received.lag.latency() {
            with.figures.insert("lag_p50_ms".into(), lag.p50);
            with.figures.insert("lag_p99_ms".into(), lag.p99);
        }
        with.errors += received.bad_signatures;
        results.push(without);
        results.push(with);
    }
    Ok(results)
}
