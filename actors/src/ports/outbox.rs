//! The durable event outbox. Events are appended in the same transaction as the transition that
//! caused them ([`super::MetadataStore::commit_change`], `create_transfer`); this port reads them back in
//! order, for `maintenance/events` and for the deliveries that fan them out.

use super::StoreError;
use async_trait::async_trait;
use broker_protocol::events::OutboxEntry;

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Up to `limit` events with a sequence number above `after`, oldest first.
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<OutboxEntry>, StoreError>;
}
