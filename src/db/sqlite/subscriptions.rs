//! The outbox port (events and their deliveries) and the subscriptions port on SQLite.

use super::jobs::{from_micros, micros};
use super::{failure, SqliteStore};
use crate::db::*;
use broker_actors::ports::notifier::Channel;
use broker_actors::ports::outbox::{
    Attempt, AttemptOutcome, ClaimedDelivery, DeliveryBacklog, DeliveryRow, Outbox,
};
use broker_actors::ports::subscriptions::{NewSubscription, SubscriptionRow, Subscriptions};
use broker_protocol::subscriptions::DeliveryState;
use rusqlite::{params, Connection, Row};
use std::sync::Arc;

/// Whether a subscription row is a contact point (`mailto:` or `sms:`, as [`Channel::of_endpoint`]
/// reads them), as an SQL expression.
const IS_CONTACT_POINT: &str =
    "(substr(end_point, 1, 7) = 'mailto:' OR substr(end_point, 1, 4) = 'sms:')";

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

    fn appended(&self) -> Arc<tokio::sync::Notify> {
        self.appended.clone()
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
            // One statement per event, however many subscriptions it goes to (their ids as a JSON
            // array): a thousand subscribers cost one execution, not a thousand.
            let mut insert = conn
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
            let mut ids = String::new();
            for (seq, subscriptions) in &routes {
                if !subscriptions.is_empty() {
                    ids.clear();
                    ids.push('[');
                    for (i, sub) in subscriptions.iter().enumerate() {
                        if i > 0 {
                            ids.push(',');
                        }
                        ids.push_str(&sub.to_string());
                    }
                    ids.push(']');
                    insert.execute(params![due, ids, seq]).map_err(failure)?;
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

const SUBSCRIPTION_COLUMNS: &str = "id, end_point, source_filter, resource_filter, subject_filter,
    alternative_subject_filter, type_filter, consumer, created_by, created, secret, previous_secret,
    previous_secret_until, validated";

fn subscription_row(r: &Row) -> rusqlite::Result<(SubscriptionRow, i64, Option<i64>)> {
    let previous: Option<String> = r.get(11)?;
    let until: Option<i64> = r.get(12)?;
    let created: i64 = r.get(9)?;
    Ok((
        SubscriptionRow {
            id: r.get(0)?,
            spec: NewSubscription {
                end_point: r.get(1)?,
                source_filter: r.get(2)?,
                resource_filter: r.get(3)?,
                subject_filter: r.get(4)?,
                alternative_subject_filter: r.get(5)?,
                type_filter: r.get(6)?,
                consumer: r.get(7)?,
                created_by: r.get(8)?,
                created: chrono::DateTime::UNIX_EPOCH,
                secret: r.get(10)?,
            },
            validated: r.get::<_, i64>(13)? != 0,
            previous_secret: previous.map(|p| (p, chrono::DateTime::UNIX_EPOCH)),
        },
        created,
        until,
    ))
}

fn subscriptions(
    conn: &Connection,
    filter: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<SubscriptionRow>, StoreError> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions {filter} ORDER BY id"
        ))
        .and_then(|mut s| {
            s.query_map(p, subscription_row)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(failure)?;
    rows.into_iter()
        .map(|(mut row, created, until)| {
            row.spec.created = from_micros(created)?;
            if let (Some(previous), Some(until)) = (row.previous_secret.as_mut(), until) {
                previous.1 = from_micros(until)?;
            }
            Ok(row)
        })
        .collect()
}

#[async_trait]
impl Subscriptions for SqliteStore {
    async fn create_subscription(
        &self,
        new: NewSubscription,
        cap: usize,
    ) -> Result<Option<SubscriptionRow>, StoreError> {
        let spec = new.clone();
        let contact_point = Channel::of_endpoint(&new.end_point).is_some();
        // One closure on the single writer: the count and the insert cannot interleave with another.
        let id = self
            .write(move |conn| {
                let held: i64 = conn
                    .prepare_cached(&format!(
                        "SELECT COUNT(*) FROM subscriptions WHERE consumer = ? AND {IS_CONTACT_POINT} = ?"
                    ))
                    .and_then(|mut s| s.query_row(params![spec.consumer, contact_point], |r| r.get(0)))
                    .map_err(failure)?;
                if held as u64 >= cap as u64 {
                    return Ok(None);
                }
                conn.prepare_cached(
                    "INSERT INTO subscriptions (end_point, source_filter, resource_filter, subject_filter,
                        alternative_subject_filter, type_filter, consumer, created_by, created, secret)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        spec.end_point,
                        spec.source_filter,
                        spec.resource_filter,
                        spec.subject_filter,
                        spec.alternative_subject_filter,
                        spec.type_filter,
                        spec.consumer,
                        spec.created_by,
                        micros(spec.created),
                        spec.secret
                    ])
                })
                .map_err(failure)?;
                Ok(Some(conn.last_insert_rowid()))
            })
            .await?;
        Ok(id.map(|id| SubscriptionRow {
            id,
            spec: new,
            validated: false,
            previous_secret: None,
        }))
    }

    async fn subscription(&self, id: i64) -> Result<Option<SubscriptionRow>, StoreError> {
        Ok(self
            .read(|conn| subscriptions(conn, "WHERE id = ?", params![id]))?
            .pop())
    }

    async fn subscriptions_of(&self, consumer: &str) -> Result<Vec<SubscriptionRow>, StoreError> {
        self.read(|conn| subscriptions(conn, "WHERE consumer = ?", params![consumer]))
    }

    async fn all_subscriptions(&self) -> Result<Vec<SubscriptionRow>, StoreError> {
        self.read(|conn| subscriptions(conn, "", []))
    }

    async fn delete_subscription(&self, id: i64) -> Result<bool, StoreError> {
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM deliveries WHERE subscription_id = ?",
                params![id],
            )
            .map_err(failure)?;
            let n = conn
                .execute("DELETE FROM subscriptions WHERE id = ?", params![id])
                .map_err(failure)?;
            Ok(n == 1)
        })
        .await
    }

    async fn mark_validated(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.execute(
                "UPDATE subscriptions SET validated = 1 WHERE id = ?",
                params![id],
            )
            .map(|_| ())
            .map_err(failure)
        })
        .await
    }

    async fn rotate_secret(
        &self,
        id: i64,
        secret: &str,
        previous_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let (secret, until) = (secret.to_string(), micros(previous_until));
        self.write(move |conn| {
            conn.execute(
                "UPDATE subscriptions SET previous_secret = secret, previous_secret_until = ?, secret = ?
                 WHERE id = ?",
                params![until, secret, id],
            )
            .map(|n| n == 1)
            .map_err(failure)
        })
        .await
    }
}
