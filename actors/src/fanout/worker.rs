//! One subscription's delivery worker: validates the endpoint first (nothing else is sent before it
//! answers 2xx), then claims due deliveries (at most one per transfer at a time, so each transfer's
//! events arrive in order), signs and POSTs each, and records the outcome.

use crate::ports::outbox::{Attempt, AttemptOutcome, ClaimedDelivery};
use crate::ports::subscriptions::SubscriptionRow;
use crate::ports::webhooks::{WebhookAnswer, WebhookRequest};
use crate::Broker;
use broker_protocol::subscriptions::VALIDATION_EVENT_TYPE;
use broker_protocol::time::Timestamp;
use bytes::Bytes;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

impl Broker {
    pub(super) async fn run_delivery_worker(
        self,
        id: i64,
        wake: Arc<tokio::sync::Notify>,
        stop: CancellationToken,
    ) {
        let mut validation_failures = 0u32;
        while !stop.is_cancelled() {
            let sub = match self.ports().subscriptions.subscription(id).await {
                Ok(Some(sub)) => sub,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(subscription = id, error = %e, "cannot read the subscription");
                    self.idle(&stop, &wake, self.settings().deliveries.poll)
                        .await;
                    continue;
                }
            };
            if !sub.validated {
                if self.validate(&sub).await {
                    if let Err(e) = self.ports().subscriptions.mark_validated(id).await {
                        tracing::warn!(subscription = id, error = %e, "cannot record the validation");
                    }
                    continue;
                }
                let delay = self.retry_delay(validation_failures);
                validation_failures = validation_failures.saturating_add(1);
                self.idle(&stop, &wake, delay.to_std().unwrap_or_default())
                    .await;
                continue;
            }
            let d = &self.settings().deliveries;
            let now = self.now();
            let claimed = self
                .ports()
                .outbox
                .claim_deliveries(
                    id,
                    &self.inner.node,
                    now,
                    now + d.lease,
                    d.per_endpoint as u32,
                )
                .await;
            match claimed {
                Ok(claimed) if !claimed.is_empty() => {
                    let sends = claimed.iter().map(|c| self.deliver(&sub, c));
                    futures::future::join_all(sends).await;
                }
                Ok(_) => {
                    let next = self
                        .ports()
                        .outbox
                        .next_delivery_due(id)
                        .await
                        .ok()
                        .flatten();
                    let wait = match next {
                        Some(at) => (at - self.now()).to_std().unwrap_or_default().min(d.poll),
                        None => d.poll,
                    };
                    self.idle(&stop, &wake, wait).await;
                }
                Err(e) => {
                    tracing::warn!(subscription = id, error = %e, "cannot claim deliveries");
                    self.idle(&stop, &wake, d.poll).await;
                }
            }
        }
    }

    async fn idle(
        &self,
        stop: &CancellationToken,
        wake: &tokio::sync::Notify,
        wait: std::time::Duration,
    ) {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }

    /// Sends the validation event; true when the endpoint answered 2xx.
    async fn validate(&self, sub: &SubscriptionRow) -> bool {
        let now = self.now();
        let event = serde_json::json!({
            "specversion": "1.0",
            "id": uuid::Uuid::new_v4(),
            "type": VALIDATION_EVENT_TYPE,
            "source": self.subscription_url(sub.id),
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

    /// The URL a subscription is read at (the validation event's source).
    fn subscription_url(&self, id: i64) -> String {
        let source = &self.settings().event_source;
        let base = source
            .strip_suffix("/filetransfer")
            .unwrap_or(source.as_str());
        format!("{base}/subscriptions/{id}")
    }

    async fn post_signed(
        &self,
        sub: &SubscriptionRow,
        webhook_id: &str,
        body: Bytes,
        now: Timestamp,
    ) -> WebhookAnswer {
        let timestamp = now.timestamp();
        let signatures: Vec<String> = sub
            .signing_secrets(now)
            .into_iter()
            .filter_map(broker_protocol::webhooks::secret_key)
            .map(|key| broker_protocol::webhooks::sign(&key, webhook_id, timestamp, &body))
            .collect();
        let request = WebhookRequest {
            url: sub.spec.end_point.clone(),
            content_type: CLOUDEVENTS_JSON,
            headers: vec![
                ("webhook-id", webhook_id.to_string()),
                ("webhook-timestamp", timestamp.to_string()),
                ("webhook-signature", signatures.join(" ")),
            ],
            body,
        };
        self.ports().webhooks.post(request).await
    }

    /// One attempt at one claimed delivery, and its outcome recorded.
    async fn deliver(&self, sub: &SubscriptionRow, claimed: &ClaimedDelivery) {
        let body = Bytes::from(serde_json::to_vec(&claimed.event).expect("JSON"));
        let started = std::time::Instant::now();
        let at = self.now();
        let answer = self
            .post_signed(sub, &claimed.event.id.to_string(), body, at)
            .await;
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
        let attempt = Attempt {
            at,
            status,
            latency_ms,
            error,
            outcome,
        };
        match self
            .ports()
            .outbox
            .record_attempt(claimed, &self.inner.node, &attempt)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                subscription = sub.id,
                sequence = claimed.sequence,
                "the delivery's lease ended before its outcome was recorded"
            ),
            Err(e) => {
                tracing::warn!(subscription = sub.id, error = %e, "cannot record a delivery attempt")
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
