//! The daily summary's rate limit (spec 7.5): at most `limit` calls per client in any `window`,
//! counted in the store so every node counts the same calls.

use broker_actors::ports::{RateDecision, RateLimits, StoreError};
use std::sync::Arc;
use std::time::Duration;

pub struct RateLimiter {
    limits: Arc<dyn RateLimits>,
    limit: u32,
    window: Duration,
}

impl RateLimiter {
    pub fn new(limits: Arc<dyn RateLimits>, limit: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            limits,
            limit,
            window,
        }
    }

    /// Counts a call by `client` at `now`, unless the window is full.
    pub async fn check(
        &self,
        client: &str,
        now: broker_protocol::time::Timestamp,
    ) -> Result<RateDecision, StoreError> {
        self.limits.take(client, self.limit, self.window, now).await
    }
}
