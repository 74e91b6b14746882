//! The outbox port on SQLite: events in commit order, their routing to subscriptions, and the
//! deliveries' claims, attempts and history.

use super::jobs::{from_micros, micros};
use super::{failure, SqliteStore};
use crate::db::*;
use broker_actors::ports::outbox::{
    Attempt, AttemptOutcome, ClaimedDelivery, DeliveryBacklog, DeliveryRow, Outbox,
};
use broker_protocol::subscriptions::DeliveryState;
use rusqlite::{params, Connection, Row};

/// Routed with one insert per subscription; an event for more is one statement over all of them.
const FEW_SUBSCRIPTIONS: usize = 8;

const PENDING: i64 = 0;
const DELIVERED: i64 = 1;
const DEAD: i64 = 2;

/// A pending delivery no earlier pending delivery of the same transfer waits before.
const IS_HEAD: &str =
    "NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.subscription_id = d.subscription_id
     AND e.file_transfer_id = d.file_transfer_id AND e.state = 0 AND e.seq < d.seq)";

fn event(text: String) -> Result<CloudEvent, StoreError> {
    serde_json::from_str(&text).map_err(failure)
}

fn entries(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let rows = conn
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(p, |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(failure)?;
    rows.into_iter()
        .map(|(sequence, text)| {
            Ok(OutboxEntry {
                sequence,
                event: event(text)?,
            })
        })
        .collect()
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read(|conn| {
            entries(
                conn,
                "SELECT seq, event FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                params![after, limit as i64],
            )
        })
    }

    async fn unrouted_events(&self, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read(|conn| {
            entries(
                conn,
                "SELECT o.seq, o.event FROM outbox_unrouted u JOIN outbox o ON o.seq = u.seq ORDER BY u.seq LIMIT ?",
                params![limit as i64],
            )
        })
    }

    async fn route_events(
        &self,
        routes: &[(i64, Vec<i64>)],
        due: Timestamp,
    ) -> Result<(), StoreError> {
        let routes = routes.to_vec();
        let due = micros(due);
        self.write(move |conn| {
            // An event for a few subscriptions is one insert each; one for many is a single
            // statement over their ids as a JSON array, so a thousand subscribers cost one
            // execution, not a thousand.
            let mut insert_one = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO deliveries (subscription_id, seq, file_transfer_id, due_at)
                     SELECT s.id, o.seq, o.file_transfer_id, ?1 FROM subscriptions s, outbox o
                     WHERE s.id = ?2 AND o.seq = ?3",
                )
                .map_err(failure)?;
            let mut insert_many = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO deliveries (subscription_id, seq, file_transfer_id, due_at)
                     SELECT s.id, o.seq, o.file_transfer_id, ?1 FROM outbox o
                     JOIN subscriptions s ON s.id IN (SELECT value FROM json_each(?2))
                     WHERE o.seq = ?3",
                )
                .map_err(failure)?;
            let mut mark = conn
                .prepare_cached("DELETE FROM outbox_unrouted WHERE seq = ?")
                .map_err(failure)?;
            for (seq, subscriptions) in &routes {
                if subscriptions.len() <= FEW_SUBSCRIPTIONS {
                    for sub in subscriptions {
                        insert_one.execute(params![due, sub, seq]).map_err(failure)?;
                    }
                } else {
                    let ids = serde_json::to_string(subscriptions).map_err(failure)?;
                    insert_many.execute(params![due, ids, seq]).map_err(failure)?;
                }
                mark.execute(params![seq]).map_err(failure)?;
            }
            Ok(())
        })
        .await
    }

    async fn claim_deliveries(
        &self,
        subscription: i64,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let owner = owner.to_string();
        let (now, until) = (micros(now), micros(lease_until));
        self.write(move |conn| {
            let rows = conn
                .prepare_cached(&format!(
                    "SELECT d.seq, o.event, d.attempts, d.first_attempt FROM deliveries d
                     JOIN outbox o ON o.seq = d.seq
                     WHERE d.subscription_id = ?1 AND d.state = 0 AND d.due_at <= ?2
                       AND (d.lease_until IS NULL OR d.lease_until < ?2) AND {IS_HEAD}
                     ORDER BY d.seq LIMIT ?3"
                ))
                .and_then(|mut s| {
                    s.query_map(params![subscription, now, limit as i64], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, u32>(2)?, r.get::<_, Option<i64>>(3)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(failure)?;
            let mut lease = conn
                .prepare_cached(
                    "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE subscription_id = ? AND seq = ?",
                )
                .map_err(failure)?;
            rows.into_iter()
                .map(|(sequence, text, attempts, first)| {
                    lease.execute(params![owner, until, subscription, sequence]).map_err(failure)?;
                    Ok(ClaimedDelivery {
                        subscription,
                        sequence,
                        event: event(text)?,
                        attempts,
                        first_attempt: first.map(from_micros).transpose()?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn record_attempts(
        &self,
        owner: &str,
        attempts: &[(ClaimedDelivery, Attempt)],
    ) -> Result<Vec<bool>, StoreError> {
        let owner = owner.to_string();
        let attempts = attempts.to_vec();
        self.write(move |conn| {
            let mut update = conn
                .prepare_cached(
                    "UPDATE deliveries SET state = ?, due_at = COALESCE(?, due_at), lease_owner = NULL,
                        lease_until = NULL, attempts = attempts + 1, first_attempt = COALESCE(first_attempt, ?),
                        last_attempt = ?, last_status = ?, last_latency_ms = ?, last_error = ?
                     WHERE subscription_id = ? AND seq = ? AND state = 0 AND lease_owner = ?",
                )
                .map_err(failure)?;
            attempts
                .iter()
                .map(|(d, a)| {
                    let (state, due) = match a.outcome {
                        AttemptOutcome::Delivered => (DELIVERED, None),
                        AttemptOutcome::DeadLettered => (DEAD, None),
                        AttemptOutcome::RetryAt(at) => (PENDING, Some(micros(at))),
                    };
                    let at = micros(a.at);
                    let changed = update
                        .execute(params![
                            state,
                            due,
                            at,
                            at,
                            a.status,
                            a.latency_ms as i64,
                            a.error,
                            d.subscription,
                            d.sequence,
                            owner
                        ])
                        .map_err(failure)?;
                    Ok(changed == 1)
                })
                .collect()
        })
        .await
    }

    async fn next_delivery_due(&self, subscription: i64) -> Result<Option<Timestamp>, StoreError> {
        let next: Option<i64> = self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT MIN(MAX(d.due_at, COALESCE(d.lease_until, 0))) FROM deliveries d
                 WHERE d.subscription_id = ? AND d.state = 0 AND {IS_HEAD}"
            ))
            .and_then(|mut s| s.query_row(params![subscription], |r| r.get(0)))
            .map_err(failure)
        })?;
        next.map(from_micros).transpose()
    }

    async fn due_subscriptions(
        &self,
        since: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<Vec<i64>, StoreError> {
        let (since, now) = (since.map_or(i64::MIN, micros), micros(now));
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT DISTINCT subscription_id FROM deliveries
                 WHERE state = 0 AND due_at > ?1 AND due_at <= ?2 ORDER BY subscription_id",
            )
            .and_then(|mut s| {
                s.query_map(params![since, now], |r| r.get::<_, i64>(0))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(failure)
        })
    }

    async fn deliveries(
        &self,
        subscription: i64,
        after: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT d.seq, o.event, d.state, d.attempts, d.last_status, d.last_latency_ms, d.last_error,
                        d.last_attempt, d.due_at
                 FROM deliveries d JOIN outbox o ON o.seq = d.seq
                 WHERE d.subscription_id = ? AND d.seq > ? ORDER BY d.seq LIMIT ?",
            )
            .and_then(|mut s| {
                s.query_map(params![subscription, after, limit as i64], |r| Ok(delivery_row(r)))?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(failure)?
            .into_iter()
            .collect()
        })
    }

    async fn redeliver(&self, subscription: i64, now: Timestamp) -> Result<u64, StoreError> {
        let now = micros(now);
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE deliveries SET state = 0, due_at = ?, attempts = 0, first_attempt = NULL
                 WHERE subscription_id = ? AND state = 2",
            )
            .and_then(|mut s| s.execute(params![now, subscription]))
            .map(|n| n as u64)
            .map_err(failure)
        })
        .await
    }

    async fn delivery_backlog(&self) -> Result<DeliveryBacklog, StoreError> {
        self.read(|conn| {
            let count = |sql: &str| -> Result<u64, StoreError> {
                conn.prepare_cached(sql)
                    .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                    .map(|n| n as u64)
                    .map_err(failure)
            };
            Ok(DeliveryBacklog {
                unrouted: count("SELECT COUNT(*) FROM outbox_unrouted")?,
                pending: count("SELECT COUNT(*) FROM deliveries WHERE state = 0")?,
                dead_lettered: count("SELECT COUNT(*) FROM deliveries WHERE state = 2")?,
            })
        })
    }
}

fn delivery_row(r: &Row) -> Result<DeliveryRow, StoreError> {
    let get = |e: rusqlite::Error| failure(e);
    let state = match r.get::<_, i64>(2).map_err(get)? {
        PENDING => DeliveryState::Pending,
        DELIVERED => DeliveryState::Delivered,
        _ => DeliveryState::DeadLettered,
    };
    Ok(DeliveryRow {
        sequence: r.get(0).map_err(get)?,
        event: event(r.get(1).map_err(get)?)?,
        state,
        attempts: r.get(3).map_err(get)?,
        last_status: r.get(4).map_err(get)?,
        last_latency_ms: r.get::<_, Option<i64>>(5).map_err(get)?.map(|n| n as u64),
        last_error: r.get(6).map_err(get)?,
        last_attempt: r
            .get::<_, Option<i64>>(7)
            .map_err(get)?
            .map(from_micros)
            .transpose()?,
        next_attempt: match state {
            DeliveryState::Pending => Some(from_micros(r.get(8).map_err(get)?)?),
            _ => None,
        },
    })
}
