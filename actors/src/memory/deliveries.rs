//! The outbox port (events and their deliveries) and the subscriptions port in memory.

use super::MemoryStore;
use crate::ports::notifier::Channel;
use crate::ports::outbox::*;
use crate::ports::subscriptions::*;
use crate::ports::StoreError;
use async_trait::async_trait;
use broker_protocol::events::OutboxEntry;
use broker_protocol::subscriptions::DeliveryState;
use broker_protocol::time::Timestamp;
use std::collections::{BTreeMap, HashSet};

#[derive(Default)]
pub(super) struct Deliveries {
    subscriptions: BTreeMap<i64, SubscriptionRow>,
    next_id: i64,
    routed: HashSet<i64>,
    /// By (subscription, sequence).
    rows: BTreeMap<(i64, i64), Record>,
}

#[derive(Clone)]
struct Record {
    state: DeliveryState,
    due: Timestamp,
    lease: Option<(String, Timestamp)>,
    attempts: u32,
    first_attempt: Option<Timestamp>,
    last: Option<Attempt>,
}

#[async_trait]
impl Outbox for MemoryStore {
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let tables = self.lock();
        Ok(tables
            .outbox
            .iter()
            .filter(|e| e.sequence > after)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn unrouted_events(&self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let tables = self.lock();
        Ok(tables
            .outbox
            .iter()
            .filter(|e| !tables.deliveries.routed.contains(&e.sequence))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn route_events(
        &self,
        routes: &[(i64, Vec<i64>)],
        due: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tables = self.lock();
        let d = &mut tables.deliveries;
        for (sequence, subscriptions) in routes {
            for sub in subscriptions {
                if !d.subscriptions.contains_key(sub) {
                    continue;
                }
                d.rows.entry((*sub, *sequence)).or_insert(Record {
                    state: DeliveryState::Pending,
                    due,
                    lease: None,
                    attempts: 0,
                    first_attempt: None,
                    last: None,
                });
            }
            d.routed.insert(*sequence);
        }
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        subscription: i64,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let mut tables = self.lock();
        let transfer_of = |seq: i64| {
            tables.outbox[(seq - 1) as usize]
                .event
                .resourceinstance
                .clone()
        };
        let mut waiting = HashSet::new();
        let mut chosen = vec![];
        for ((_, seq), r) in tables
            .deliveries
            .rows
            .range((subscription, 0)..=(subscription, i64::MAX))
        {
            if r.state != DeliveryState::Pending {
                continue;
            }
            let transfer = transfer_of(*seq);
            // The first pending delivery of each transfer is the only one that may go.
            if !waiting.insert(transfer) {
                continue;
            }
            let free = r.lease.as_ref().is_none_or(|(_, until)| *until < now);
            if r.due <= now && free && chosen.len() < limit as usize {
                chosen.push(*seq);
            }
        }
        let mut claimed = vec![];
        for seq in chosen {
            let event = tables.outbox[(seq - 1) as usize].event.clone();
            let r = tables
                .deliveries
                .rows
                .get_mut(&(subscription, seq))
                .expect("chosen");
            r.lease = Some((owner.to_string(), lease_until));
            claimed.push(ClaimedDelivery {
                subscription,
                sequence: seq,
                event,
                attempts: r.attempts,
                first_attempt: r.first_attempt,
            });
        }
        Ok(claimed)
    }

    async fn record_attempts(
        &self,
        owner: &str,
        attempts: &[(ClaimedDelivery, Attempt)],
    ) -> Result<Vec<bool>, StoreError> {
        let mut tables = self.lock();
        Ok(attempts
            .iter()
            .map(|(delivery, attempt)| record(&mut tables.deliveries, delivery, owner, attempt))
            .collect())
    }

    async fn next_delivery_due(&self, subscription: i64) -> Result<Option<Timestamp>, StoreError> {
        let tables = self.lock();
        let mut heads = HashSet::new();
        Ok(tables
            .deliveries
            .rows
            .range((subscription, 0)..=(subscription, i64::MAX))
            .filter(|(_, r)| r.state == DeliveryState::Pending)
            // Only the first pending delivery of each transfer can be claimed.
            .filter(|((_, seq), _)| {
                heads.insert(
                    tables.outbox[(*seq - 1) as usize]
                        .event
                        .resourceinstance
                        .clone(),
                )
            })
            .map(|(_, r)| match &r.lease {
                Some((_, until)) => r.due.max(*until),
                None => r.due,
            })
            .min())
    }

    async fn due_subscriptions(
        &self,
        since: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Vec<i64>, StoreError> {
        let tables = self.lock();
        let mut due: Vec<i64> = tables
            .deliveries
            .rows
            .iter()
            .filter(|(_, r)| {
                r.state == DeliveryState::Pending
                    && r.due <= now
                    && since.is_none_or(|since| r.due > since)
            })
            .map(|((sub, _), _)| *sub)
            .collect();
        due.dedup();
        Ok(due)
    }

    async fn deliveries(
        &self,
        subscription: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let tables = self.lock();
        Ok(tables
            .deliveries
            .rows
            .range((subscription, after + 1)..=(subscription, i64::MAX))
            .take(limit as usize)
            .map(|((_, seq), r)| DeliveryRow {
                sequence: *seq,
                event: tables.outbox[(*seq - 1) as usize].event.clone(),
                state: r.state,
                attempts: r.attempts,
                last_status: r.last.as_ref().and_then(|a| a.status),
                last_latency_ms: r.last.as_ref().map(|a| a.latency_ms),
                last_error: r.last.as_ref().and_then(|a| a.error.clone()),
                last_attempt: r.last.as_ref().map(|a| a.at),
                next_attempt: (r.state == DeliveryState::Pending).then_some(r.due),
            })
            .collect())
    }

    async fn redeliver(&self, subscription: i64, now: Timestamp) -> Result<u64, StoreError> {
        let mut tables = self.lock();
        let mut n = 0;
        for (_, r) in tables
            .deliveries
            .rows
            .range_mut((subscription, 0)..=(subscription, i64::MAX))
        {
            if r.state == DeliveryState::DeadLettered {
                r.state = DeliveryState::Pending;
                r.due = now;
                r.attempts = 0;
                r.first_attempt = None;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn delivery_backlog(&self) -> Result<DeliveryBacklog, StoreError> {
        let tables = self.lock();
        let d = &tables.deliveries;
        let count = |s| d.rows.values().filter(|r| r.state == s).count() as u64;
        Ok(DeliveryBacklog {
            unrouted: tables
                .outbox
                .iter()
                .filter(|e| !d.routed.contains(&e.sequence))
                .count() as u64,
            pending: count(DeliveryState::Pending),
            dead_lettered: count(DeliveryState::DeadLettered),
        })
    }
}

#[async_trait]
impl Subscriptions for MemoryStore {
    async fn create_subscription(
        &self,
        new: NewSubscription,
        cap: usize,
    ) -> Result<Option<SubscriptionRow>, StoreError> {
        let mut tables = self.lock();
        let d = &mut tables.deliveries;
        let kind = |s: &NewSubscription| Channel::of_endpoint(&s.end_point).is_some();
        let held = d
            .subscriptions
            .values()
            .filter(|s| s.spec.consumer == new.consumer && kind(&s.spec) == kind(&new))
            .count();
        if held >= cap {
            return Ok(None);
        }
        d.next_id += 1;
        let row = SubscriptionRow {
            id: d.next_id,
            spec: new,
            validated: false,
            previous_secret: None,
        };
        d.subscriptions.insert(row.id, row.clone());
        Ok(Some(row))
    }

    async fn subscription(&self, id: i64) -> Result<Option<SubscriptionRow>, StoreError> {
        Ok(self.lock().deliveries.subscriptions.get(&id).cloned())
    }

    async fn subscriptions_of(&self, consumer: &str) -> Result<Vec<SubscriptionRow>, StoreError> {
        let tables = self.lock();
        Ok(tables
            .deliveries
            .subscriptions
            .values()
            .filter(|s| s.spec.consumer == consumer)
            .cloned()
            .collect())
    }

    async fn all_subscriptions(&self) -> Result<Vec<SubscriptionRow>, StoreError> {
        Ok(self
            .lock()
            .deliveries
            .subscriptions
            .values()
            .cloned()
            .collect())
    }

    async fn delete_subscription(&self, id: i64) -> Result<bool, StoreError> {
        let mut tables = self.lock();
        let d = &mut tables.deliveries;
        d.rows.retain(|(sub, _), _| *sub != id);
        Ok(d.subscriptions.remove(&id).is_some())
    }

    async fn mark_validated(&self, id: i64) -> Result<(), StoreError> {
        if let Some(s) = self.lock().deliveries.subscriptions.get_mut(&id) {
            s.validated = true;
        }
        Ok(())
    }

    async fn rotate_secret(
        &self,
        id: i64,
        secret: &str,
        previous_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tables = self.lock();
        let Some(s) = tables.deliveries.subscriptions.get_mut(&id) else {
            return Ok(false);
        };
        let previous = std::mem::replace(&mut s.spec.secret, secret.to_string());
        s.previous_secret = Some((previous, previous_until));
        Ok(true)
    }
}

fn record(
    deliveries: &mut Deliveries,
    delivery: &ClaimedDelivery,
    owner: &str,
    attempt: &Attempt,
) -> bool {
    let Some(r) = deliveries
        .rows
        .get_mut(&(delivery.subscription, delivery.sequence))
    else {
        return false;
    };
    if r.state != DeliveryState::Pending || r.lease.as_ref().is_none_or(|(o, _)| o != owner) {
        return false;
    }
    r.lease = None;
    r.attempts += 1;
    r.first_attempt.get_or_insert(attempt.at);
    r.last = Some(attempt.clone());
    match attempt.outcome {
        AttemptOutcome::Delivered => r.state = DeliveryState::Delivered,
        AttemptOutcome::DeadLettered => r.state = DeliveryState::DeadLettered,
        AttemptOutcome::RetryAt(at) => r.due = at,
    }
    true
}
