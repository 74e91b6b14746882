//! The subscriptions port on SQLite: who wants which events where (webhooks and contact points),
//! under a per-consumer cap that holds under concurrent creation.

use super::jobs::{from_micros, micros};
use super::{failure, SqliteStore};
use crate::db::*;
use broker_actors::ports::notifier::Channel;
use broker_actors::ports::subscriptions::{
    NewSubscription, SubscriptionApi, SubscriptionRow, Subscriptions,
};
use rusqlite::{params, Connection, Row};

/// Whether a subscription row is a contact point (`mailto:` or `sms:`, as [`Channel::of_endpoint`]
/// reads them), as an SQL expression.
const IS_CONTACT_POINT: &str =
    "(substr(end_point, 1, 7) = 'mailto:' OR substr(end_point, 1, 4) = 'sms:')";

const SUBSCRIPTION_COLUMNS: &str = "id, end_point, source_filter, resource_filter, subject_filter,
    alternative_subject_filter, type_filter, consumer, created_by, created, secret, previous_secret,
    previous_secret_until, validated, include_subunits, api";

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
                include_subunits: r.get::<_, i64>(14)? != 0,
                api: match r.get::<_, String>(15)?.as_str() {
                    "events" => SubscriptionApi::Events,
                    _ => SubscriptionApi::Broker,
                },
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
                        alternative_subject_filter, type_filter, consumer, created_by, created, secret,
                        include_subunits, api)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        spec.secret,
                        spec.include_subunits,
                        match spec.api {
                            SubscriptionApi::Events => "events",
                            SubscriptionApi::Broker => "broker",
                        }
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
