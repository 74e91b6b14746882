//! The fan-out actor: routes every outbox event to the subscriptions it matches (a durable delivery
//! row each, written before anything is sent), and runs one delivery worker per subscription, so a
//! slow or dead endpoint only ever delays its own deliveries.

mod routing;
mod worker;

pub use routing::matches;

use crate::Broker;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How deliveries are retried.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// The delay after the first failed attempt; each further failure doubles it, up to `retry_max`.
    pub retry_base: chrono::Duration,
    pub retry_max: chrono::Duration,
    /// How long a delivery is retried (from its first attempt) before it is dead-lettered.
    pub retry_for: chrono::Duration,
    /// Attempts in flight at once per subscription.
    pub per_endpoint: usize,
    /// How long a claimed delivery stays with its claimer (longer than one attempt may take).
    pub lease: chrono::Duration,
    /// How often routing and idle workers look again without being woken (other nodes' work).
    pub poll: std::time::Duration,
    /// How long a rotated-out secret keeps signing beside the new one.
    pub secret_overlap: chrono::Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            retry_base: chrono::Duration::seconds(1),
            retry_max: chrono::Duration::hours(1),
            retry_for: chrono::Duration::hours(24),
            per_endpoint: 4,
            lease: chrono::Duration::seconds(60),
            poll: std::time::Duration::from_secs(1),
            secret_overlap: chrono::Duration::hours(24),
        }
    }
}

/// Events routed per round.
const ROUTE_BATCH: u32 = 512;

struct Worker {
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
}

impl Broker {
    /// Runs the fan-out until shutdown: routes new events, keeps one worker per subscription.
    pub async fn run_fan_out(self) {
        let appended = self.ports().outbox.appended();
        let mut workers: HashMap<i64, Worker> = HashMap::new();
        loop {
            match self.route_events().await {
                Ok(woken) => {
                    self.reconcile_workers(&mut workers).await;
                    for id in woken {
                        if let Some(w) = workers.get(&id) {
                            w.wake.notify_one();
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "routing events to subscriptions failed"),
            }
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => break,
                _ = appended.notified() => {}
                _ = self.inner.subscriptions_changed.notified() => {}
                _ = tokio::time::sleep(self.settings().deliveries.poll) => {}
            }
        }
        for w in workers.values() {
            w.stop.cancel();
        }
    }

    /// Routes every unrouted event; returns the subscriptions that got deliveries.
    async fn route_events(&self) -> crate::error::Result<Vec<i64>> {
        let ports = self.ports();
        let mut woken = std::collections::BTreeSet::new();
        loop {
            let events = ports.outbox.unrouted_events(ROUTE_BATCH).await?;
            if events.is_empty() {
                break;
            }
            let subscriptions = ports.subscriptions.all_subscriptions().await?;
            let routes: Vec<(i64, Vec<i64>)> = events
                .iter()
                .map(|e| {
                    let to: Vec<i64> = subscriptions
                        .iter()
                        .filter(|s| matches(&s.spec, &e.event))
                        .map(|s| s.id)
                        .collect();
                    woken.extend(to.iter().copied());
                    let kind = e
                        .event
                        .type_
                        .trim_start_matches("no.altinn.broker.")
                        .to_string();
                    metrics::counter!("broker_events_total", "type" => kind).increment(1);
                    (e.sequence, to)
                })
                .collect();
            ports.outbox.route_events(&routes, self.now()).await?;
            if events.len() < ROUTE_BATCH as usize {
                break;
            }
        }
        Ok(woken.into_iter().collect())
    }

    /// Starts a worker for each subscription that has none, stops those whose subscription is gone.
    async fn reconcile_workers(&self, workers: &mut HashMap<i64, Worker>) {
        let Ok(subscriptions) = self.ports().subscriptions.all_subscriptions().await else {
            return;
        };
        let live: std::collections::HashSet<i64> = subscriptions.iter().map(|s| s.id).collect();
        workers.retain(|id, w| {
            let keep = live.contains(id);
            if !keep {
                w.stop.cancel();
            }
            keep
        });
        for s in subscriptions {
            if workers.contains_key(&s.id) {
                continue;
            }
            let worker = Worker {
                wake: Arc::new(tokio::sync::Notify::new()),
                stop: self.inner.shutdown.child_token(),
            };
            tokio::spawn(self.clone().run_delivery_worker(
                s.id,
                worker.wake.clone(),
                worker.stop.clone(),
            ));
            workers.insert(s.id, worker);
        }
    }
}
