//! Event subscriptions: who wants which events delivered where, and the secret their deliveries are
//! signed with. Deliveries themselves are the outbox's ([`super::Outbox`]).

use super::StoreError;
use async_trait::async_trait;
use broker_protocol::time::Timestamp;

/// A subscription as it is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub end_point: String,
    pub source_filter: Option<String>,
    /// The resource id (without `urn:altinn:resource:`).
    pub resource_filter: String,
    pub subject_filter: Option<String>,
    pub alternative_subject_filter: Option<String>,
    pub type_filter: Option<String>,
    pub consumer: String,
    pub created_by: String,
    pub created: Timestamp,
    pub secret: String,
    /// Altinn Events' `includeSubunits`, kept and returned as given (Broker has no unit register,
    /// so it widens no match).
    pub include_subunits: bool,
    /// The API the subscription was created through, whose paths name it.
    pub api: SubscriptionApi,
}

/// Where a subscription was created: Altinn Events' path or Broker's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionApi {
    /// `/events/api/v1/subscriptions`
    Events,
    /// `/broker/api/v1/subscriptions`
    Broker,
}

impl SubscriptionApi {
    /// The API's base path (its subscriptions are under `{base}/subscriptions`).
    pub fn base(self) -> &'static str {
        match self {
            SubscriptionApi::Events => "/events/api/v1",
            SubscriptionApi::Broker => "/broker/api/v1",
        }
    }
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    pub id: i64,
    pub spec: NewSubscription,
    pub validated: bool,
    /// The secret that was current before the last rotation, and until when it still signs.
    pub previous_secret: Option<(String, Timestamp)>,
}

impl SubscriptionRow {
    /// The secrets an attempt at `now` is signed with: the current one, and the previous one during
    /// a rotation's overlap.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut secrets = vec![self.spec.secret.as_str()];
        if let Some((previous, until)) = &self.previous_secret {
            if now < *until {
                secrets.push(previous);
            }
        }
        secrets
    }
}

#[async_trait]
pub trait Subscriptions: Send + Sync + 'static {
    /// Stores a new, not yet validated subscription and gives it an id; `None` (nothing stored) when
    /// its consumer already holds `cap` subscriptions of the same kind (contact points, whose
    /// endpoints are `mailto:` or `sms:`, or webhooks). The count and the insert are one atomic step,
    /// so concurrent creations never pass the cap.
    async fn create_subscription(
        &self,
        new: NewSubscription,
        cap: usize,
    ) -> Result<Option<SubscriptionRow>, StoreError>;
    async fn subscription(&self, id: i64) -> Result<Option<SubscriptionRow>, StoreError>;
    /// Every subscription of `consumer`, oldest first.
    async fn subscriptions_of(&self, consumer: &str) -> Result<Vec<SubscriptionRow>, StoreError>;
    /// Every subscription, oldest first (routing matches events against them).
    async fn all_subscriptions(&self) -> Result<Vec<SubscriptionRow>, StoreError>;
    /// Removes a subscription with its deliveries; `false` when there was none.
    async fn delete_subscription(&self, id: i64) -> Result<bool, StoreError>;
    /// Records that the endpoint answered the validation event.
    async fn mark_validated(&self, id: i64) -> Result<(), StoreError>;
    /// Makes `secret` current; the current one keeps signing until `previous_until`.
    async fn rotate_secret(
        &self,
        id: i64,
        secret: &str,
        previous_until: Timestamp,
    ) -> Result<bool, StoreError>;
}
