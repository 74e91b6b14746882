//! One subscription's delivery worker: validates the endpoint first (nothing else is sent before it
//! answers 2xx), then claims due deliveries (at most one per transfer at a time, so each transfer's
//! events arrive in order), signs and POSTs each, and records the outcome.

use crate::ports::notifier::Channel;
use crate::ports::outbox::{Attempt, AttemptOutcome, ClaimedDelivery};
use crate::ports::subscriptions::{SubscriptionApi, SubscriptionRow};
use crate::ports::webhooks::{WebhookAnswer, WebhookRequest};
use crate::Broker;
use broker_protocol::subscriptions::VALIDATION_EVENT_TYPE;
use broker_protocol::time::Timestamp;
use bytes::Bytes;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// What the Altinn Events-compatible publisher that events are forwarded to takes.
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
/// Deliveries claimed per slot of an endpoint's concurrency (rounds of attempts per batch): a batch
/// is claimed in one transaction and its outcomes recorded in one.
const CLAIMS_PER_SLOT: usize = 4;

impl Broker {
    /// Delivers one subscription's events until `stop`. Each batch first takes slots of this node's
    /// outbound budget (so a worker waiting for a saturated host holds no claim whose lease could
    /// run out); an idle worker sleeps until its next delivery is due or it is woken, so idle
    /// subscriptions cost nothing.
    pub(super) async fn run_delivery_worker(
        self,
        id: i64,
        wake: Arc<tokio::sync::Notify>,
        stop: CancellationToken,
    ) {
        let mut validation_failures = 0u32;
        // Batches in a row with no delivery: the worker itself backs off for as long, so an
        // endpoint that is down (or holds every request) is not tried once per waiting transfer.
        let mut failed_batches = 0u32;
        while !stop.is_cancelled() {
            let sub = match self.ports().subscriptions.subscription(id).await {
                Ok(Some(sub)) => sub,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(subscription = id, error = %e, "cannot read the subscription");
                    self.idle(&stop, &wake, Some(self.settings().deliveries.poll))
                        .await;
                    continue;
                }
            };
            let destination = super::budget::destination(&sub.spec.end_point);
            let d = &self.settings().deliveries;
            if !sub.validated {
                let validated = {
                    let Some(_slot) = self.slots(&stop, &destination, 1).await else {
                        return;
                    };
                    self.validate(&sub).await
                };
                if validated {
                    if let Err(e) = self.ports().subscriptions.mark_validated(id).await {
                        tracing::warn!(subscription = id, error = %e, "cannot record the validation");
                    }
                    continue;
                }
                self.back_off(&stop, &mut validation_failures).await;
                continue;
            }
            // An endpoint that failed its last batch gets one round of attempts at a time.
            let rounds = if failed_batches == 0 {
                CLAIMS_PER_SLOT
            } else {
                1
            };
            let Some(mut slots) = self.slots(&stop, &destination, d.per_endpoint).await else {
                return;
            };
            let width = slots.count();
            let now = self.now();
            let claimed = self
                .ports()
                .outbox
                .claim_deliveries(
                    id,
                    &self.inner.node,
                    now,
                    now + d.lease * rounds as i32,
                    (width * rounds) as u32,
                )
                .await;
            match claimed {
                Ok(claimed) if !claimed.is_empty() => {
                    use futures::StreamExt;
                    // Slots this batch cannot use go back to the host's other subscriptions.
                    let width = width.min(claimed.len());
                    slots.keep(width);
                    let attempts: Vec<(ClaimedDelivery, Attempt)> = futures::stream::iter(claimed)
                        .map(|c| async {
                            let attempt = self.attempt(&sub, &c).await;
                            (c, attempt)
                        })
                        .buffer_unordered(width)
                        .collect()
                        .await;
                    drop(slots);
                    let delivered = attempts
                        .iter()
                        .any(|(_, a)| a.outcome == AttemptOutcome::Delivered);
                    self.record(&sub, &attempts).await;
                    if delivered {
                        failed_batches = 0;
                    } else {
                        self.back_off(&stop, &mut failed_batches).await;
                    }
                }
                Ok(_) => {
                    drop(slots);
                    let next = self
                        .ports()
                        .outbox
                        .next_delivery_due(id)
                        .await
                        .ok()
                        .flatten();
                    // Nothing pending: sleep until woken (routing and the fan-out's sweep of due
                    // deliveries wake this worker).
                    let wait = next.map(|at| (at - self.now()).to_std().unwrap_or_default());
                    self.idle(&stop, &wake, wait).await;
                }
                Err(e) => {
                    drop(slots);
                    tracing::warn!(subscription = id, error = %e, "cannot claim deliveries");
                    self.idle(&stop, &wake, Some(d.poll)).await;
                }
            }
        }
    }

    /// Sleeps the backoff after `failures` failures in a row, and counts this one. New events do
    /// not cut it short: an endpoint that is down is not asked again per event.
    async fn back_off(&self, stop: &CancellationToken, failures: &mut u32) {
        let delay = self.retry_delay(*failures);
        *failures = failures.saturating_add(1);
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(delay.to_std().unwrap_or_default()) => {}
        }
    }

    /// Up to `want` slots of the outbound budget for `destination`; `None` when stopped first.
    async fn slots(
        &self,
        stop: &CancellationToken,
        destination: &str,
        want: usize,
    ) -> Option<super::budget::Slots> {
        tokio::select! {
            _ = stop.cancelled() => None,
            slots = self.inner.delivery_budget.acquire(destination, want) => Some(slots),
        }
    }

    async fn idle(
        &self,
        stop: &CancellationToken,
        wake: &tokio::sync::Notify,
        wait: Option<std::time::Duration>,
    ) {
        let timer = async {
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = wake.notified() => {}
            _ = timer => {}
        }
    }

    /// Sends the validation event; true when the endpoint answered 2xx.
    async fn validate(&self, sub: &SubscriptionRow) -> bool {
        // A contact point has no endpoint to ask (it is marked validated as it is created).
        if Channel::of_endpoint(&sub.spec.end_point).is_some() {
            return true;
        }
        let now = self.now();
        let event = serde_json::json!({
            "specversion": "1.0",
            "id": uuid::Uuid::new_v4(),
            "type": VALIDATION_EVENT_TYPE,
            "source": self.subscription_url(sub),
            "time": broker_protocol::time::format(&now),
        });
        let body = Bytes::from(serde_json::to_vec(&event).expect("JSON"));
        let id = event["id"].as_str().unwrap_or_default().to_string();
        let answer = self.post_signed(sub, &id, body, now).await;
        if !answer.is_success() {
            tracing::info!(
                subscription = sub.id,
                ?answer,
                "the endpoint did not validate yet"
            );
        }
        answer.is_success()
    }

    /// The URL a subscription is read at, under the API it was created with (the validation
    /// event's source).
    fn subscription_url(&self, sub: &SubscriptionRow) -> String {
        // The event source is `{public_url}/broker/api/v1/filetransfer`.
        let source = &self.settings().event_source;
        let root = source
            .strip_suffix("/filetransfer")
            .and_then(|s| s.strip_suffix(SubscriptionApi::Broker.base()))
            .unwrap_or(source.as_str());
        format!("{root}{}/subscriptions/{}", sub.spec.api.base(), sub.id)
    }

    async fn post_signed(
        &self,
        sub: &SubscriptionRow,
        webhook_id: &str,
        body: Bytes,
        now: Timestamp,
    ) -> WebhookAnswer {
        if sub.spec.consumer == super::FORWARD_CONSUMER {
            return self.forward(sub, body).await;
        }
        let timestamp = now.timestamp();
        let signatures: Vec<String> = sub
            .signing_secrets(now)
            .into_iter()
            .filter_map(broker_protocol::webhooks::secret_key)
            .map(|key| broker_protocol::webhooks::sign(&key, webhook_id, timestamp, &body))
            .collect();
        let request = WebhookRequest {
            url: sub.spec.end_point.clone(),
            content_type: self.settings().deliveries.webhook_content_type,
            headers: vec![
                ("webhook-id", webhook_id.to_string()),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signatures.join(" ")),
            ],
            body,
        };
        self.ports().webhooks.post(request).await
    }

    /// Publishes to the external Altinn Events-compatible publisher, as the original broker does: the
    /// body as it is, with the configured bearer token.
    async fn forward(&self, sub: &SubscriptionRow, body: Bytes) -> WebhookAnswer {
        let mut headers = vec![];
        if let Some(token) = &self.settings().deliveries.forward_token {
            headers.push(("authorization", format!("Bearer {}", token.0)));
        }
        let request = WebhookRequest {
            url: sub.spec.end_point.clone(),
            content_type: CLOUDEVENTS_JSON,
            headers,
            body,
        };
        self.ports().webhooks.post(request).await
    }

    /// One attempt at one claimed delivery, and what is to happen to it.
    async fn attempt(&self, sub: &SubscriptionRow, claimed: &ClaimedDelivery) -> Attempt {
        let started = std::time::Instant::now();
        let at = self.now();
        let answer = match Channel::of_endpoint(&sub.spec.end_point) {
            Some((channel, to)) => self.notify(channel, to, &claimed.event).await,
            None => {
                let body = Bytes::from(serde_json::to_vec(&claimed.event).expect("JSON"));
                self.post_signed(sub, &claimed.event.id.to_string(), body, at)
                    .await
            }
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        metrics::histogram!("broker_delivery_attempt_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let outcome = if answer.is_success() {
            // From the event's transition (committed just after) to the subscriber's 2xx.
            let lag = (self.now() - claimed.event.time)
                .num_microseconds()
                .unwrap_or(0);
            metrics::histogram!("broker_delivery_lag_seconds").record(lag as f64 / 1e6);
            metrics::counter!("broker_delivery_attempts_total", "outcome" => "delivered")
                .increment(1);
            AttemptOutcome::Delivered
        } else {
            metrics::counter!("broker_delivery_attempts_total", "outcome" => "failed").increment(1);
            let d = &self.settings().deliveries;
            let first = claimed.first_attempt.unwrap_or(at);
            if at - first >= d.retry_for {
                metrics::counter!("broker_deliveries_dead_lettered_total").increment(1);
                tracing::warn!(
                    subscription = sub.id,
                    sequence = claimed.sequence,
                    ?answer,
                    "delivery dead-lettered"
                );
                AttemptOutcome::DeadLettered
            } else {
                AttemptOutcome::RetryAt(at + self.retry_delay(claimed.attempts))
            }
        };
        let (status, error) = match answer {
            WebhookAnswer::Status(s) => (Some(s), None),
            WebhookAnswer::Failed(e) => (None, Some(e)),
        };
        Attempt {
            at,
            status,
            latency_ms,
            error,
            outcome,
        }
    }

    /// Records a batch's outcomes in one transaction (an unrecorded one is sent again later).
    async fn record(&self, sub: &SubscriptionRow, attempts: &[(ClaimedDelivery, Attempt)]) {
        let outbox = &self.ports().outbox;
        match outbox.record_attempts(&self.inner.node, attempts).await {
            Ok(recorded) => {
                let lost = recorded.iter().filter(|r| !**r).count();
                if lost > 0 {
                    tracing::info!(
                        subscription = sub.id,
                        lost,
                        "leases ended before their outcomes were recorded"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(subscription = sub.id, error = %e, "cannot record delivery attempts")
            }
        }
    }

    /// Exponential backoff with jitter: `base * 2^failures`, at most `retry_max`, then a random
    /// 50-100% of it, so endpoints coming back are not hit by every retry at once.
    fn retry_delay(&self, failures: u32) -> chrono::Duration {
        let d = &self.settings().deliveries;
        let base = d.retry_base.num_milliseconds().max(1) as f64;
        let max = d.retry_max.num_milliseconds().max(1) as f64;
        let full = (base * 2f64.powi(failures.min(40) as i32)).min(max);
        let jitter = 0.5 + (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 2000.0;
        chrono::Duration::milliseconds((full * jitter) as i64)
    }
}
