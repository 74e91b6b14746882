//! The rate-limits port in memory: one process's counts, bounded in clients.

use crate::ports::rate_limits::{RateDecision, RateLimits};
use crate::ports::StoreError;
use async_trait::async_trait;
use broker_protocol::time::Timestamp;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Clients remembered at most: past this, those with no call inside the window are forgotten, and
/// if that is not enough, the client not at its limit whose last call is oldest (so memory stays
/// bounded whoever calls). A client at its limit is forgotten only when every client remembered is
/// at its limit, and then the one whose window frees first: new clients can never empty the limit.
pub const MAX_CLIENTS: usize = 10_000;

#[derive(Default)]
pub struct MemoryRateLimits {
    calls: Mutex<HashMap<String, VecDeque<Timestamp>>>,
}

impl MemoryRateLimits {
    /// Clients remembered now (for tests of the bound).
    pub fn clients(&self) -> usize {
        self.calls.lock().expect("rate limits").len()
    }

    #[cfg(test)]
    fn remembers(&self, client: &str) -> bool {
        self.calls.lock().expect("rate limits").contains_key(client)
    }
}

#[async_trait]
impl RateLimits for MemoryRateLimits {
    async fn take(
        &self,
        client: &str,
        limit: u32,
        window: std::time::Duration,
        now: Timestamp,
    ) -> Result<RateDecision, StoreError> {
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let expired = |t: &Timestamp| now - *t >= window;
        let mut calls = self.calls.lock().expect("rate limits");
        if calls.len() >= MAX_CLIENTS && !calls.contains_key(client) {
            calls.retain(|_, times| times.back().is_some_and(|t| !expired(t)));
            if calls.len() >= MAX_CLIENTS {
                let victim = calls
                    .iter()
                    .min_by_key(|(_, times)| {
                        // Clients below their limit first (false < true), stalest first; then
                        // limited ones, the soonest freed first.
                        let limited = times.len() >= limit as usize;
                        let when = if limited { times.front() } else { times.back() };
                        (limited, when.copied())
                    })
                    .map(|(k, _)| k.clone());
                if let Some(key) = victim {
                    calls.remove(&key);
                }
            }
        }
        let times = calls.entry(client.to_string()).or_default();
        while times.front().is_some_and(expired) {
            times.pop_front();
        }
        let allowed = times.len() < limit as usize;
        if allowed {
            times.push_back(now);
        }
        Ok(RateDecision {
            allowed,
            limit,
            remaining: limit.saturating_sub(times.len() as u32),
            reset: times.front().map_or(now, |t| *t) + window,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const HOUR: Duration = Duration::from_secs(3600);

    fn t0() -> Timestamp {
        chrono::DateTime::from_timestamp(1_000, 0).unwrap()
    }

    fn at_ms(ms: i64) -> Timestamp {
        t0() + chrono::Duration::milliseconds(ms)
    }

    async fn allowed(limits: &MemoryRateLimits, client: &str, limit: u32, at: Timestamp) -> bool {
        limits.take(client, limit, HOUR, at).await.unwrap().allowed
    }

    #[tokio::test]
    async fn however_many_clients_call_it_remembers_a_bounded_number() {
        let limits = MemoryRateLimits::default();
        for i in 0..(MAX_CLIENTS + 500) {
            allowed(
                &limits,
                &format!("10.0.{}.{}", i / 256, i % 256),
                1,
                at_ms(i as i64),
            )
            .await;
        }
        assert_eq!(limits.clients(), MAX_CLIENTS);
        assert!(
            !allowed(&limits, "10.0.39.15", 1, at_ms(20_000)).await,
            "a recent client is still counted"
        );
    }

    #[tokio::test]
    async fn a_limited_client_is_never_forgotten_while_others_can_be() {
        let limits = MemoryRateLimits::default();
        assert!(allowed(&limits, "limited", 2, t0()).await);
        assert!(allowed(&limits, "limited", 2, t0()).await);
        assert!(!allowed(&limits, "limited", 2, t0()).await);
        // A flood of new clients, each calling once, all inside the window.
        for i in 0..(MAX_CLIENTS + 2_000) {
            let at = at_ms(1 + i as i64 / 100);
            assert!(allowed(&limits, &format!("flood-{i}"), 2, at).await);
        }
        assert_eq!(limits.clients(), MAX_CLIENTS);
        assert!(
            !allowed(&limits, "limited", 2, at_ms(60_000)).await,
            "the limited client is still limited"
        );
    }

    #[tokio::test]
    async fn when_every_client_is_limited_the_one_freed_soonest_makes_room() {
        let limits = MemoryRateLimits::default();
        for i in 0..MAX_CLIENTS {
            allowed(&limits, &format!("c{i}"), 1, at_ms(i as i64)).await;
        }
        assert!(allowed(&limits, "new", 1, at_ms(20_000)).await);
        assert!(!limits.remembers("c0"), "c0's window frees first");
        assert!(limits.remembers(&format!("c{}", MAX_CLIENTS - 1)));
    }
}
