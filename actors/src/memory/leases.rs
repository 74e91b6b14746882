//! Upload leases in memory, timed by the store's clock (the test clock when one is given).

use super::MemoryStore;
use crate::ports::leases::{Acquired, Grant, Leases, Renewal, StoreError};
use async_trait::async_trait;
use broker_protocol::time::Timestamp;
use std::collections::HashMap;
use uuid::Uuid;

/// The current grant of each upload's lease.
#[derive(Default)]
pub(super) struct LeaseTable {
    grants: HashMap<(Uuid, String), Held>,
    last_token: u64,
}

impl LeaseTable {
    /// Whether a grant of the upload is alive at `now`.
    pub(super) fn is_alive(&self, id: Uuid, part: &str, now: Timestamp) -> bool {
        self.grants
            .get(&(id, part.to_string()))
            .is_some_and(|h| h.expires > now)
    }

    /// A new grant for `holder` (replacing any), with a token larger than every one before.
    pub(super) fn grant(
        &mut self,
        id: Uuid,
        part: &str,
        holder: &str,
        ttl_ms: u64,
        now: Timestamp,
    ) -> u64 {
        self.last_token += 1;
        let token = self.last_token;
        let held = Held {
            holder: holder.to_string(),
            token,
            expires: until(now, ttl_ms),
            stop_requested: false,
        };
        self.grants.insert((id, part.to_string()), held);
        token
    }

    /// Removes the grant `token` if it is the upload's current one.
    pub(super) fn end(&mut self, id: Uuid, part: &str, token: u64) {
        let key = (id, part.to_string());
        if self.grants.get(&key).is_some_and(|h| h.token == token) {
            self.grants.remove(&key);
        }
    }

    /// Whether `token` is the upload's current grant.
    pub(super) fn is_current(&self, id: Uuid, part: &str, token: u64) -> bool {
        self.grants
            .get(&(id, part.to_string()))
            .is_some_and(|h| h.token == token)
    }
}

struct Held {
    holder: String,
    token: u64,
    expires: Timestamp,
    stop_requested: bool,
}

fn until(now: Timestamp, ttl_ms: u64) -> Timestamp {
    now + chrono::Duration::milliseconds(ttl_ms as i64)
}

#[async_trait]
impl Leases for MemoryStore {
    async fn acquire(
        &self,
        id: Uuid,
        part: &str,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<Acquired, StoreError> {
        let now = self.store_now();
        let mut tables = self.lock();
        let leases = &mut tables.leases;
        let key = (id, part.to_string());
        if let Some(held) = leases.grants.get(&key).filter(|h| h.expires > now) {
            return Ok(Acquired::Held {
                holder: held.holder.clone(),
                token: held.token,
            });
        }
        let token = leases.grant(id, part, holder, ttl_ms, now);
        Ok(Acquired::Granted(Grant { token }))
    }

    async fn renew(
        &self,
        id: Uuid,
        part: &str,
        token: u64,
        ttl_ms: u64,
    ) -> Result<Renewal, StoreError> {
        let now = self.store_now();
        let mut tables = self.lock();
        match tables.leases.grants.get_mut(&(id, part.to_string())) {
            Some(held) if held.token == token => {
                held.expires = until(now, ttl_ms);
                Ok(if held.stop_requested {
                    Renewal::StopRequested
                } else {
                    Renewal::Renewed
                })
            }
            _ => Ok(Renewal::Lost),
        }
    }

    async fn request_stop(&self, id: Uuid, part: &str) -> Result<bool, StoreError> {
        let now = self.store_now();
        let mut tables = self.lock();
        match tables.leases.grants.get_mut(&(id, part.to_string())) {
            Some(held) if held.expires > now => {
                held.stop_requested = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release(&self, id: Uuid, part: &str, token: u64) -> Result<(), StoreError> {
        let mut tables = self.lock();
        let key = (id, part.to_string());
        if tables
            .leases
            .grants
            .get(&key)
            .is_some_and(|h| h.token == token)
        {
            tables.leases.grants.remove(&key);
        }
        Ok(())
    }

    async fn holder(&self, id: Uuid, part: &str) -> Result<Option<String>, StoreError> {
        let now = self.store_now();
        let tables = self.lock();
        Ok(tables
            .leases
            .grants
            .get(&(id, part.to_string()))
            .filter(|h| h.expires > now)
            .map(|h| h.holder.clone()))
    }

    async fn is_current(&self, id: Uuid, part: &str, token: u64) -> Result<bool, StoreError> {
        Ok(self.lock().leases.is_current(id, part, token))
    }

    async fn forget_expired(&self, expired_for_ms: u64) -> Result<u64, StoreError> {
        let now = self.store_now();
        let mut tables = self.lock();
        let grants = &mut tables.leases.grants;
        let before = grants.len();
        grants.retain(|_, held| until(held.expires, expired_for_ms) > now);
        Ok((before - grants.len()) as u64)
    }
}
