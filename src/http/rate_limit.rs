//! A per-client rolling-window rate limit (the daily summary's, spec 7.5): at most `limit` calls in
//! any `window`. One process's count: on several nodes each node counts its own.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Clients remembered at most: past this, those with no call inside the window are forgotten, and
/// if that is not enough, the client not at its limit whose last call is oldest (so memory stays
/// bounded whoever calls). A client at its limit is forgotten only when every client remembered is
/// at its limit, and then the one whose window frees first: new clients can never empty the limit.
const MAX_CLIENTS: usize = 10_000;

pub struct RateLimiter {
    limit: u32,
    window: Duration,
    calls: Mutex<HashMap<String, VecDeque<SystemTime>>>,
}

/// What the limiter decided about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    /// Calls left in the window after this one.
    pub remaining: u32,
    /// When the oldest call counted leaves the window (a slot frees up).
    pub reset: SystemTime,
}

impl Decision {
    /// Whole seconds until a call would be allowed (at least 1).
    pub fn retry_after(&self, now: SystemTime) -> u64 {
        let wait = self.reset.duration_since(now).unwrap_or_default();
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }

    pub fn reset_unix(&self) -> u64 {
        self.reset
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    }
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            limit,
            window,
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a call by `client` at `now`, unless the window is full.
    pub fn check(&self, client: &str, now: SystemTime) -> Decision {
        let mut calls = self.calls.lock().expect("rate limiter");
        let window = self.window;
        let expired = |t: &SystemTime| now.duration_since(*t).unwrap_or_default() >= window;
        if calls.len() >= MAX_CLIENTS && !calls.contains_key(client) {
            calls.retain(|_, times| times.back().is_some_and(|t| !expired(t)));
            if calls.len() >= MAX_CLIENTS {
                let limit = self.limit as usize;
                let victim = calls
                    .iter()
                    .min_by_key(|(_, times)| {
                        // Clients below their limit first (false < true), stalest first; then
                        // limited ones, the soonest freed first.
                        let limited = times.len() >= limit;
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
        let allowed = times.len() < self.limit as usize;
        if allowed {
            times.push_back(now);
        }
        let reset = times.front().map_or(now + window, |t| *t + window);
        Decision {
            allowed,
            limit: self.limit,
            remaining: self.limit.saturating_sub(times.len() as u32),
            reset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_limit_per_window_and_a_slot_back_when_its_oldest_call_leaves_it() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let first = limiter.check("a", t0);
        assert!(first.allowed);
        assert_eq!(first.remaining, 1);
        assert!(limiter.check("a", t0 + Duration::from_secs(10)).allowed);
        let refused = limiter.check("a", t0 + Duration::from_secs(20));
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.reset, t0 + Duration::from_secs(60));
        assert_eq!(refused.retry_after(t0 + Duration::from_secs(20)), 40);
        assert!(
            limiter.check("b", t0 + Duration::from_secs(20)).allowed,
            "another client has its own window"
        );
        assert!(limiter.check("a", t0 + Duration::from_secs(60)).allowed);
        assert!(!limiter.check("a", t0 + Duration::from_secs(61)).allowed);
    }

    #[test]
    fn however_many_clients_call_it_remembers_a_bounded_number() {
        let limiter = RateLimiter::new(1, Duration::from_secs(3600));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        for i in 0..(MAX_CLIENTS + 500) {
            limiter.check(
                &format!("10.0.{}.{}", i / 256, i % 256),
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(limiter.calls.lock().unwrap().len(), MAX_CLIENTS);
        assert!(
            !limiter
                .check("10.0.39.15", t0 + Duration::from_secs(20))
                .allowed,
            "a recent client is still counted"
        );
    }

    #[test]
    fn a_limited_client_is_never_forgotten_while_others_can_be() {
        let limiter = RateLimiter::new(2, Duration::from_secs(3600));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert!(limiter.check("limited", t0).allowed);
        assert!(limiter.check("limited", t0).allowed);
        assert!(!limiter.check("limited", t0).allowed);
        // A flood of new clients, each calling once, all inside the window.
        for i in 0..(MAX_CLIENTS + 2_000) {
            let at = t0 + Duration::from_millis(1 + i as u64 / 100);
            assert!(limiter.check(&format!("flood-{i}"), at).allowed);
        }
        assert_eq!(limiter.calls.lock().unwrap().len(), MAX_CLIENTS);
        assert!(
            !limiter
                .check("limited", t0 + Duration::from_secs(60))
                .allowed,
            "the limited client is still limited"
        );
    }

    #[test]
    fn when_every_client_is_limited_the_one_freed_soonest_makes_room() {
        let limiter = RateLimiter::new(1, Duration::from_secs(3600));
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        for i in 0..MAX_CLIENTS {
            limiter.check(&format!("c{i}"), t0 + Duration::from_millis(i as u64));
        }
        assert!(limiter.check("new", t0 + Duration::from_secs(20)).allowed);
        let calls = limiter.calls.lock().unwrap();
        assert!(!calls.contains_key("c0"), "c0's window frees first");
        assert!(calls.contains_key(&format!("c{}", MAX_CLIENTS - 1)));
    }
}
