//! The leases port on SQLite. Expiry is decided by the database's clock: every comparison and every new
//! expiry is computed in SQL from `now`, never from a time this process passes in.

use super::{failure, SqliteStore};
use crate::db::*;
use broker_actors::ports::leases::{Acquired, Grant, Leases, Renewal};
use rusqlite::{params, Connection, OptionalExtension};

/// The database's time in microseconds since the epoch.
const NOW_US: &str = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";

/// The upload's grant alive now (by the database's clock), if any: its holder and token.
pub(super) fn alive_grant(
    conn: &Connection,
    id: &str,
    part: &str,
) -> Result<Option<(String, u64)>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT holder, token FROM upload_leases
         WHERE file_transfer_id = ? AND part = ? AND expires_us > {NOW_US}"
    ))
    .and_then(|mut s| {
        s.query_row(params![id, part], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })
        .optional()
    })
    .map_err(failure)
}

/// Grants the upload's lease to `holder` (replacing any grant) with a token never handed out before.
pub(super) fn grant(
    conn: &Connection,
    id: &str,
    part: &str,
    holder: &str,
    ttl_ms: u64,
) -> Result<u64, StoreError> {
    let token: i64 = conn
        .prepare_cached("UPDATE lease_counter SET last = last + 1 RETURNING last")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(failure)?;
    conn.prepare_cached(&format!(
        "INSERT OR REPLACE INTO upload_leases
             (file_transfer_id, part, holder, token, expires_us, stop_requested)
         VALUES (?, ?, ?, ?, {NOW_US} + ? * 1000, 0)"
    ))
    .and_then(|mut s| s.execute(params![id, part, holder, token, ttl_ms as i64]))
    .map_err(failure)?;
    Ok(token as u64)
}

#[async_trait]
impl Leases for SqliteStore {
    async fn acquire(
        &self,
        id: Uuid,
        part: &str,
        holder: &str,
        ttl_ms: u64,
    ) -> Result<Acquired, StoreError> {
        let (id, part, holder) = (id.to_string(), part.to_string(), holder.to_string());
        self.write(move |conn| {
            if let Some((holder, token)) = alive_grant(conn, &id, &part)? {
                return Ok(Acquired::Held { holder, token });
            }
            let token = grant(conn, &id, &part, &holder, ttl_ms)?;
            Ok(Acquired::Granted(Grant { token }))
        })
        .await
    }

    async fn renew(
        &self,
        id: Uuid,
        part: &str,
        token: u64,
        ttl_ms: u64,
    ) -> Result<Renewal, StoreError> {
        let (id, part) = (id.to_string(), part.to_string());
        self.write(move |conn| {
            let stop = conn
                .prepare_cached(&format!(
                    "UPDATE upload_leases SET expires_us = {NOW_US} + ? * 1000
                     WHERE file_transfer_id = ? AND part = ? AND token = ?
                     RETURNING stop_requested"
                ))
                .and_then(|mut s| {
                    s.query_row(params![ttl_ms as i64, id, part, token as i64], |r| {
                        r.get::<_, i64>(0)
                    })
                    .optional()
                })
                .map_err(failure)?;
            Ok(match stop {
                None => Renewal::Lost,
                Some(0) => Renewal::Renewed,
                Some(_) => Renewal::StopRequested,
            })
        })
        .await
    }

    async fn request_stop(&self, id: Uuid, part: &str) -> Result<bool, StoreError> {
        let (id, part) = (id.to_string(), part.to_string());
        self.write(move |conn| {
            let asked = conn
                .prepare_cached(&format!(
                    "UPDATE upload_leases SET stop_requested = 1
                     WHERE file_transfer_id = ? AND part = ? AND expires_us > {NOW_US}"
                ))
                .and_then(|mut s| s.execute(params![id, part]))
                .map_err(failure)?;
            Ok(asked == 1)
        })
        .await
    }

    async fn release(&self, id: Uuid, part: &str, token: u64) -> Result<(), StoreError> {
        let (id, part) = (id.to_string(), part.to_string());
        self.write(move |conn| {
            conn.prepare_cached(
                "DELETE FROM upload_leases WHERE file_transfer_id = ? AND part = ? AND token = ?",
            )
            .and_then(|mut s| s.execute(params![id, part, token as i64]))
            .map_err(failure)?;
            Ok(())
        })
        .await
    }

    async fn holder(&self, id: Uuid, part: &str) -> Result<Option<String>, StoreError> {
        let (id, part) = (id.to_string(), part.to_string());
        self.read(move |conn| Ok(alive_grant(conn, &id, &part)?.map(|(holder, _)| holder)))
    }

    async fn is_current(&self, id: Uuid, part: &str, token: u64) -> Result<bool, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT 1 FROM upload_leases WHERE file_transfer_id = ? AND part = ? AND token = ?",
            )
            .and_then(|mut s| {
                s.query_row(params![id.to_string(), part, token as i64], |_| Ok(()))
                    .optional()
            })
            .map(|found| found.is_some())
            .map_err(failure)
        })
    }

    async fn forget_expired(&self, expired_for_ms: u64) -> Result<u64, StoreError> {
        let grace_us = i64::try_from(expired_for_ms.saturating_mul(1000)).unwrap_or(i64::MAX);
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "DELETE FROM upload_leases WHERE expires_us < {NOW_US} - ?"
            ))
            .and_then(|mut s| s.execute([grace_us]))
            .map(|n| n as u64)
            .map_err(failure)
        })
        .await
    }
}
