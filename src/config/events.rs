//! The `[events]` (subscriptions and webhook deliveries) and `[metrics]` sections.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Deliver to loopback, link-local and private addresses even in production (they are always
    /// allowed in development).
    pub allow_internal_endpoints: bool,
    /// The media type webhook bodies (structured CloudEvents) are sent as.
    pub webhook_content_type: WebhookContentType,
    /// The longest one delivery attempt may take.
    pub timeout_ms: u64,
    /// Delay after a delivery's first failure; doubled per further failure up to `retry_max_secs`.
    pub retry_base_ms: u64,
    pub retry_max_secs: u64,
    /// How long a delivery is retried before it is dead-lettered (at least 24 h in production).
    pub retry_for_secs: u64,
    /// Attempts in flight at once per subscription.
    pub per_endpoint: usize,
    /// Attempts in flight at once to one destination host (every subscription to it together), and
    /// e-mails or texts being handed to their gateway at once.
    pub per_host: usize,
    /// Attempts in flight at once on this node, in all: the most outgoing connections deliveries
    /// open (besides up to `per_host` idle kept-alive ones per recently used host, for 30 s).
    pub max_in_flight: usize,
    /// Webhook subscriptions one organisation may have (contact points: at most 20).
    pub max_subscriptions_per_org: usize,
    /// How often idle delivery workers look for work other nodes routed.
    pub poll_ms: u64,
    /// How long a rotated-out signing secret keeps signing beside the new one.
    pub secret_overlap_secs: u64,
    /// Forward every event to this Altinn Events-compatible publisher (`POST {url}/events/api/v1/events`),
    /// as the original broker publishes, with the same retries as deliveries.
    pub forward_url: Option<String>,
    /// The bearer token forwarded events are published with.
    pub forward_token: Option<String>,
}

/// How a webhook body is labelled: Altinn Events sends `application/json`, which every JSON
/// receiver parses; CloudEvents' own structured media type is for receivers that ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookContentType {
    #[serde(rename = "application/json")]
    Json,
    #[serde(rename = "application/cloudevents+json")]
    CloudEvents,
}

impl WebhookContentType {
    pub fn media_type(self) -> &'static str {
        match self {
            WebhookContentType::Json => "application/json",
            WebhookContentType::CloudEvents => "application/cloudevents+json",
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            allow_internal_endpoints: false,
            webhook_content_type: WebhookContentType::Json,
            timeout_ms: 10_000,
            retry_base_ms: 1_000,
            retry_max_secs: 3_600,
            retry_for_secs: 86_400,
            per_endpoint: 16,
            per_host: 64,
            max_in_flight: 256,
            max_subscriptions_per_org: 100,
            poll_ms: 1_000,
            secret_overlap_secs: 86_400,
            forward_url: None,
            forward_token: None,
        }
    }
}

impl EventsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.timeout_ms == 0
            || self.per_endpoint == 0
            || self.per_host == 0
            || self.max_in_flight == 0
            || self.poll_ms == 0
        {
            return Err(
                "events.timeout_ms, events.per_endpoint, events.per_host, events.max_in_flight and events.poll_ms must be at least 1"
                    .into(),
            );
        }
        if self.retry_base_ms == 0 || self.retry_max_secs * 1000 < self.retry_base_ms {
            return Err(
                "events.retry_base_ms must be at least 1 and at most events.retry_max_secs".into(),
            );
        }
        if let Some(url) = &self.forward_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "events.forward_url must be an http or https URL, not {url:?}"
                ));
            }
        }
        Ok(())
    }

    pub fn settings(&self) -> broker_actors::fanout::DeliverySettings {
        let ms = |n: u64| chrono::Duration::milliseconds(n as i64);
        let secs = |n: u64| chrono::Duration::seconds(n as i64);
        broker_actors::fanout::DeliverySettings {
            retry_base: ms(self.retry_base_ms),
            retry_max: secs(self.retry_max_secs),
            retry_for: secs(self.retry_for_secs),
            per_endpoint: self.per_endpoint,
            per_host: self.per_host,
            max_in_flight: self.max_in_flight,
            max_subscriptions: self.max_subscriptions_per_org,
            // A claim outlives the attempt it is for.
            lease: ms(self.timeout_ms * 2 + 5_000),
            poll: std::time::Duration::from_millis(self.poll_ms),
            secret_overlap: secs(self.secret_overlap_secs),
            forward_token: self.forward_token.clone().map(broker_actors::fanout::Token),
            webhook_content_type: self.webhook_content_type.media_type(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// With a token, `/metrics` requires `Authorization: Bearer <token>`; without one it answers
    /// loopback peers only.
    pub token: Option<String>,
}
