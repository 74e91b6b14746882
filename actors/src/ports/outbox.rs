//! The durable event outbox. Events are appended in the same transaction as the transition that
//! caused them ([`super::MetadataStore::commit_change`], `create_transfer`); this port reads them back in
//! order, for `maintenance/events`, and keeps their deliveries to subscriptions.
//!
//! Delivery is claim/ack per subscription, never a cursor: routing records one delivery row per
//! (subscription, event) for every event not yet routed, whatever order events committed in; a claim
//! takes due deliveries with a lease, and an attempt's outcome acknowledges, reschedules or
//! dead-letters it. Outbox rows are never removed by delivery.

use super::StoreError;
use async_trait::async_trait;
use broker_protocol::events::{CloudEvent, OutboxEntry};
use broker_protocol::subscriptions::DeliveryState;
use broker_protocol::time::Timestamp;

/// A delivery a claimer holds until its lease ends.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedDelivery {
    pub subscription: i64,
    pub sequence: i64,
    pub event: CloudEvent,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When the first attempt was made (the retry period counts from it).
    pub first_attempt: Option<Timestamp>,
}

/// What happens to a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(Timestamp),
    DeadLettered,
}

/// One attempt, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at: Timestamp,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

/// A delivery as its history shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub sequence: i64,
    pub event: CloudEvent,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_latency_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_attempt: Option<Timestamp>,
    pub next_attempt: Option<Timestamp>,
}

/// How much delivery work is waiting (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryBacklog {
    /// Events not yet routed to subscriptions.
    pub unrouted: u64,
    pub pending: u64,
    pub dead_lettered: u64,
}

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Up to `limit` events with a sequence number above `after`, oldest first.
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Up to `limit` events not yet routed, oldest first.
    async fn unrouted_events(&self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError>;
    /// For each `(sequence, subscriptions)`: records a pending delivery of the event to each
    /// subscription, due at `due` (a delivery already recorded is kept as it is), and marks the event
    /// routed. One transaction.
    async fn route_events(
        &self,
        routes: &[(i64, Vec<i64>)],
        due: Timestamp,
    ) -> Result<(), StoreError>;
    /// Claims up to `limit` pending deliveries of `subscription` due at `now` whose lease is free, for
    /// `owner` until `lease_until`, oldest first; never a delivery while an earlier pending one of the
    /// same transfer waits (per-transfer order).
    async fn claim_deliveries(
        &self,
        subscription: i64,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Records attempts on claimed deliveries and their outcomes, releasing the leases, in one
    /// transaction; for each, `false` when `owner` no longer holds it (nothing is recorded for it).
    async fn record_attempts(
        &self,
        owner: &str,
        attempts: &[(ClaimedDelivery, Attempt)],
    ) -> Result<Vec<bool>, StoreError>;
    /// [`Outbox::record_attempts`] for one attempt.
    async fn record_attempt(
        &self,
        delivery: &ClaimedDelivery,
        owner: &str,
        attempt: &Attempt,
    ) -> Result<bool, StoreError> {
        let recorded = self
            .record_attempts(owner, &[(delivery.clone(), attempt.clone())])
            .await?;
        Ok(recorded.first().copied().unwrap_or(false))
    }
    /// When `subscription`'s next pending delivery becomes claimable (its due time or lease end).
    async fn next_delivery_due(&self, subscription: i64) -> Result<Option<Timestamp>, StoreError>;
    /// The subscriptions with a pending delivery that came due after `since` (any time, when
    /// `None`) and by `now`, each once: a hint of whose worker to wake (what it may claim is for
    /// [`Outbox::claim_deliveries`] to say), cheap however many deliveries wait.
    async fn due_subscriptions(
        &self,
        since: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Vec<i64>, StoreError>;
    /// `subscription`'s deliveries with a sequence above `after`, oldest first.
    async fn deliveries(
        &self,
        subscription: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError>;
    /// Makes `subscription`'s dead-lettered deliveries pending again, due at `now`, with their attempt
    /// count and retry period started afresh; how many.
    async fn redeliver(&self, subscription: i64, now: Timestamp) -> Result<u64, StoreError>;
    async fn delivery_backlog(&self) -> Result<DeliveryBacklog, StoreError>;
}
