//! The fan-out actor: routes every outbox event to the subscriptions it matches (a durable delivery
//! row each, written before anything is sent), and runs one delivery worker per subscription, so a
//! slow or dead endpoint only ever delays its own deliveries.

mod budget;
mod routing;
mod worker;

pub use budget::{destination, DeliveryBudget};
pub use routing::matches;

use crate::ports::signals::topics;
use crate::Broker;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The consumer of the built-in subscription that forwards every event to an external Altinn
/// Events-compatible publisher (`[events] forward_url`).
pub const FORWARD_CONSUMER: &str = "/broker/forward";

/// A bearer token kept out of debug output.
#[derive(Clone, Default)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

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
    /// Webhook subscriptions one organisation may have.
    pub max_subscriptions: usize,
    /// Attempts in flight at once on this node, over every subscription and contact point.
    pub max_in_flight: usize,
    /// Attempts in flight at once to one destination host (or one notification channel).
    pub per_host: usize,
    /// How long a claimed delivery stays with its claimer (longer than one attempt may take).
    pub lease: chrono::Duration,
    /// How often the fan-out looks for subscriptions and due deliveries without being woken (other
    /// nodes' work, retries coming due).
    pub poll: std::time::Duration,
    /// How long a rotated-out secret keeps signing beside the new one.
    pub secret_overlap: chrono::Duration,
    /// The token forwarded events are published with.
    pub forward_token: Option<Token>,
    /// The `Content-Type` of webhook bodies: `application/json` (as Altinn Events sends) or
    /// `application/cloudevents+json`.
    pub webhook_content_type: &'static str,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            retry_base: chrono::Duration::seconds(1),
            retry_max: chrono::Duration::hours(1),
            retry_for: chrono::Duration::hours(24),
            per_endpoint: 16,
            max_subscriptions: 100,
            max_in_flight: 256,
            per_host: 64,
            lease: chrono::Duration::seconds(60),
            poll: std::time::Duration::from_secs(1),
            secret_overlap: chrono::Duration::hours(24),
            forward_token: None,
            webhook_content_type: "application/json",
        }
    }
}

/// Events routed per round.
const ROUTE_BATCH: u32 = 512;
/// Deliveries recorded per routing write (more when one event alone has more).
const ROUTE_WRITE: usize = 2048;

struct Worker {
    wake: Arc<tokio::sync::Notify>,
    stop: CancellationToken,
    running: tokio::task::JoinHandle<()>,
}

impl Broker {
    /// Runs the fan-out until shutdown: routes new events, keeps one worker per subscription, and
    /// once per poll wakes the workers whose deliveries came due since the last look (redeliveries,
    /// other nodes' routing). A worker also sleeps until its own next delivery is due, so no idle
    /// worker polls: idle subscriptions cost nothing however many there are.
    pub async fn run_fan_out(self) {
        let signals = self.ports().signals.clone();
        let poll = self.settings().deliveries.poll;
        let mut workers: HashMap<i64, Worker> = HashMap::new();
        let mut subscriptions_changed = true;
        let mut next_sweep = tokio::time::Instant::now();
        // Each sweep names what came due since the last one (the first, everything due).
        let mut swept_until = None;
        loop {
            // Listened on before looking, so a change made while this round reads is not missed.
            let (appended, changed) = (
                signals.listen(topics::OUTBOX),
                signals.listen(topics::SUBSCRIPTIONS),
            );
            let sweep = tokio::time::Instant::now() >= next_sweep;
            if sweep {
                next_sweep = tokio::time::Instant::now() + poll;
            }
            match self.route_events().await {
                Ok(mut woken) => {
                    if subscriptions_changed || sweep {
                        subscriptions_changed = false;
                        self.reconcile_workers(&mut workers).await;
                    }
                    if sweep {
                        let now = self.now();
                        match self
                            .ports()
                            .outbox
                            .due_subscriptions(swept_until, now)
                            .await
                        {
                            Ok(due) => {
                                woken.extend(due);
                                swept_until = Some(now);
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot find due deliveries"),
                        }
                    }
                    for id in woken {
                        if let Some(w) = workers.get(&id) {
                            w.wake.notify_one();
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "routing events to subscriptions failed"),
            }
            // Without subscriptions nothing waits for routing: events are marked routed once per
            // poll, in large batches, rather than one write per commit on the lifecycle's path.
            let idle = workers.is_empty();
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => break,
                _ = appended, if !idle => {}
                _ = changed => subscriptions_changed = true,
                _ = tokio::time::sleep_until(next_sweep) => {}
            }
        }
        // Stopping: each worker finishes the batch it claimed and records it, so nothing is sent
        // after the broker stopped and nothing sent is left unrecorded.
        for w in workers.values() {
            w.stop.cancel();
        }
        for (_, w) in workers {
            let _ = w.running.await;
        }
    }

    /// Makes the forwarding subscription match `url` (an Altinn Events base URL; events go to
    /// `{url}/events/api/v1/events`): created when missing, replaced when the URL changed, removed
    /// when forwarding is off. Only events committed from its creation on are forwarded.
    pub async fn ensure_forwarding(&self, url: Option<&str>) -> crate::error::Result<()> {
        let subscriptions = &self.ports().subscriptions;
        let end_point = url.map(|u| format!("{}/events/api/v1/events", u.trim_end_matches('/')));
        let (current, stale): (Vec<_>, Vec<_>) = subscriptions
            .subscriptions_of(FORWARD_CONSUMER)
            .await?
            .into_iter()
            .partition(|s| Some(&s.spec.end_point) == end_point.as_ref());
        for existing in stale {
            subscriptions.delete_subscription(existing.id).await?;
        }
        if let (Some(end_point), true) = (end_point, current.is_empty()) {
            let row = subscriptions
                .create_subscription(
                    crate::ports::NewSubscription {
                        end_point,
                        source_filter: None,
                        resource_filter: String::new(),
                        subject_filter: None,
                        alternative_subject_filter: None,
                        type_filter: None,
                        consumer: FORWARD_CONSUMER.into(),
                        created_by: FORWARD_CONSUMER.into(),
                        created: self.now(),
                        secret: String::new(),
                        include_subunits: false,
                        api: crate::ports::subscriptions::SubscriptionApi::Broker,
                    },
                    usize::MAX,
                )
                .await?
                .ok_or_else(|| {
                    crate::error::Error::Internal(
                        "the forwarding subscription was not created".into(),
                    )
                })?;
            // A publisher is configured by the operator, not validated like a subscriber.
            subscriptions.mark_validated(row.id).await?;
            tracing::info!(end_point = %row.spec.end_point, "every event is forwarded");
        }
        self.subscriptions_changed().await;
        Ok(())
    }

    /// Tells every node's fan-out that subscriptions changed.
    pub(crate) async fn subscriptions_changed(&self) {
        self.ports().signals.signal(topics::SUBSCRIPTIONS).await;
    }

    /// Routes every unrouted event; returns the subscriptions that got deliveries.
    async fn route_events(&self) -> crate::error::Result<std::collections::BTreeSet<i64>> {
        let ports = self.ports();
        let mut woken = std::collections::BTreeSet::new();
        loop {
            let events = ports.outbox.unrouted_events(ROUTE_BATCH).await?;
            if events.is_empty() {
                break;
            }
            // Read after the events: a subscription created before an event committed is seen.
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
            // Each write records at most ROUTE_WRITE deliveries (an event's all in one), so a
            // thousand subscriptions per event never hold the writer from the lifecycle for long.
            let mut start = 0;
            while start < routes.len() {
                let mut end = start + 1;
                let mut deliveries = routes[start].1.len();
                while end < routes.len() && deliveries + routes[end].1.len() <= ROUTE_WRITE {
                    deliveries += routes[end].1.len();
                    end += 1;
                }
                ports
                    .outbox
                    .route_events(&routes[start..end], self.now())
                    .await?;
                start = end;
            }
            if events.len() < ROUTE_BATCH as usize {
                break;
            }
        }
        Ok(woken)
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
            let (wake, stop) = (
                Arc::new(tokio::sync::Notify::new()),
                self.inner.shutdown.child_token(),
            );
            let running = tokio::spawn(self.clone().run_delivery_worker(
                s.id,
                wake.clone(),
                stop.clone(),
            ));
            workers.insert(
                s.id,
                Worker {
                    wake,
                    stop,
                    running,
                },
            );
        }
    }
}
