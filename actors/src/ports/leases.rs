//! Who may write an upload now: one holder at a time per upload (a transfer's own, `part` = "", or one
//! part of a concatenated upload), for a time to live, renewed while it streams and released when it
//! ends. A lease whose holder stopped renewing expires and may be taken over. Expiry is decided by the
//! store's own clock (the database's time), so nodes whose clocks disagree still agree on it.
//!
//! Every grant carries a fencing token, larger than any token granted before for any upload; a write
//! made under a lease names its token and is refused once another grant has replaced it, so a holder
//! that stalled past its expiry cannot write over the work of the one that took over.

use async_trait::async_trait;
use uuid::Uuid;

pub use super::StoreError;

/// A grant of an upload's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The fencing token every write under this grant names.
    pub token: u64,
}

/// What asking for a lease came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    Granted(Grant),
    /// Another holder's grant is alive.
    Held {
        holder: String,
        token: u64,
    },
}

/// What the holder learns when it renews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Still the holder, for another time to live.
    Renewed,
    /// Still the holder, and a newer request asks it to stop (end the body, keep what is durable).
    StopRequested,
    /// The grant was replaced or released: nothing may be written under it any more.
    Lost,
}

#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// Grants the upload's lease to `holder` for `ttl_ms` milliseconds of the store's clock when no
    /// grant is alive (none, released, or expired); otherwise says who holds it.
    async fn acquire(
        &self,
        id: Uuid,
        part: &str,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<Acquired, StoreError>;
    /// Extends the grant `token` by `ttl_ms` from now (the store's clock), if it is still the upload's.
    async fn renew(
        &self,
        id: Uuid,
        part: &str,
        token: u64,
        ttl_ms: u64,
    ) -> Result<Renewal, StoreError>;
    /// Asks the upload's current holder to stop; `false` when no grant is alive.
    async fn request_stop(&self, id: Uuid, part: &str) -> Result<bool, StoreError>;
    /// Ends the grant `token` (a later grant, or none, is left as it is).
    async fn release(&self, id: Uuid, part: &str, token: u64) -> Result<(), StoreError>;
    /// The holder of the grant alive now (by the store's clock), if any.
    async fn holder(&self, id: Uuid, part: &str) -> Result<Option<String>, StoreError>;
    /// Whether `token` is the upload's current grant (alive or expired but not yet replaced).
    async fn is_current(&self, id: Uuid, part: &str, token: u64) -> Result<bool, StoreError>;
    /// Removes the grants that expired more than `expired_for_ms` milliseconds ago by the store's
    /// clock (their holders are long gone: a write under one is refused as under a replaced one), so
    /// claims never taken again (a download window) do not pile up; returns how many.
    async fn forget_expired(&self, expired_for_ms: u64) -> Result<u64, StoreError>;
}
