//! Rolling-window rate limits every node counts together (the daily summary's, spec 7.5): at most
//! `limit` calls by one client in any `window`. Kept by the metadata store's database, so a client
//! cannot multiply its allowance by spreading calls over nodes.

use super::StoreError;
use async_trait::async_trait;
use broker_protocol::time::Timestamp;

/// What the limit decided about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    /// Calls left in the window after this one.
    pub remaining: u32,
    /// When the oldest call counted leaves the window (a slot frees up).
    pub reset: Timestamp,
}

impl RateDecision {
    /// Whole seconds until a call would be allowed (at least 1).
    pub fn retry_after(&self, now: Timestamp) -> u64 {
        let wait = (self.reset - now).to_std().unwrap_or_default();
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }

    /// The reset as whole seconds since the epoch.
    pub fn reset_unix(&self) -> u64 {
        self.reset.timestamp().max(0) as u64
    }
}

#[async_trait]
pub trait RateLimits: Send + Sync + 'static {
    /// Counts a call by `client` at `now` unless `limit` calls of it already fall inside the `window`
    /// ending at `now` (a call exactly `window` old has left it). What is kept stays bounded however
    /// many clients call: calls that left their window are forgotten.
    async fn take(
        &self,
        client: &str,
        limit: u32,
        window: std::time::Duration,
        now: Timestamp,
    ) -> Result<RateDecision, StoreError>;
}
