//! The rate-limits port on SQLite: each call counted is a row; one write prunes, counts and records.

use super::jobs::{from_micros, micros};
use super::{failure, SqliteStore};
use crate::db::*;
use broker_actors::ports::rate_limits::{RateDecision, RateLimits};
use rusqlite::params;

#[async_trait]
impl RateLimits for SqliteStore {
    async fn take(
        &self,
        client: &str,
        limit: u32,
        window: std::time::Duration,
        now: Timestamp,
    ) -> Result<RateDecision, StoreError> {
        let client = client.to_string();
        let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
        let now_us = micros(now);
        // Calls at or before this have left the window (every client's: one window per table).
        let left_before = now_us.saturating_sub(window_us);
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM rate_limit_calls WHERE at_us <= ?")
                .and_then(|mut s| s.execute([left_before]))
                .map_err(failure)?;
            let (counted, oldest): (i64, Option<i64>) = conn
                .prepare_cached(
                    "SELECT COUNT(*), MIN(at_us) FROM rate_limit_calls WHERE client = ?",
                )
                .and_then(|mut s| s.query_row([&client], |r| Ok((r.get(0)?, r.get(1)?))))
                .map_err(failure)?;
            let allowed = counted < i64::from(limit);
            if allowed {
                conn.prepare_cached("INSERT INTO rate_limit_calls (client, at_us) VALUES (?, ?)")
                    .and_then(|mut s| s.execute(params![client, now_us]))
                    .map_err(failure)?;
            }
            let counted = counted + i64::from(allowed);
            Ok(RateDecision {
                allowed,
                limit,
                remaining: u32::try_from(i64::from(limit) - counted).unwrap_or(0),
                reset: from_micros(oldest.unwrap_or(now_us).saturating_add(window_us))?,
            })
        })
        .await
    }
}
