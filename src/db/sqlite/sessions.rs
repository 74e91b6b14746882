//! The upload-sessions port (tus offsets and parts) and the outbox reader on SQLite.

use super::{failure, ts, SqliteStore};
use crate::db::*;
use broker_actors::ports::{Outbox, UploadSessions};
use broker_protocol::time;
use sqlx::Row;

#[async_trait]
impl Outbox for SqliteStore {
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = sqlx::query("SELECT seq, event FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&self.reads)
            .await
            .map_err(failure)?;
        rows.iter()
            .map(|r| {
                Ok(OutboxEntry {
                    sequence: r.get(0),
                    event: serde_json::from_str(r.get::<&str, _>(1)).map_err(failure)?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl UploadSessions for SqliteStore {
    async fn create(
        &self,
        id: Uuid,
        part: &str,
        length: Option<u64>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let at = time::format(&at);
        let part = part.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO tus_uploads (file_transfer_id, part, length, \"offset\", updated) VALUES (?, ?, ?, 0, ?)
                     ON CONFLICT(file_transfer_id, part) DO UPDATE SET length = excluded.length, \"offset\" = 0, updated = excluded.updated",
                )
                .bind(id.to_string())
                .bind(part)
                .bind(length.map(|l| l as i64))
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(failure)?;
                Ok(())
            })
        })
        .await
    }

    async fn get(&self, id: Uuid, part: &str) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT length, \"offset\", joined FROM tus_uploads WHERE file_transfer_id = ? AND part = ?",
        )
        .bind(id.to_string())
        .bind(part)
        .fetch_optional(&self.reads)
        .await
        .map_err(failure)?;
        Ok(row.map(|r| SessionRow {
            length: r.get::<Option<i64>, _>(0).map(|l| l as u64),
            offset: r.get::<i64, _>(1) as u64,
            joined: r.get::<i64, _>(2) != 0,
        }))
    }

    async fn advance(
        &self,
        id: Uuid,
        part: &str,
        from: u64,
        to: u64,
        length: Option<u64>,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let at = time::format(&at);
        let part = part.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                let r = sqlx::query(
                    "UPDATE tus_uploads SET \"offset\" = ?, length = COALESCE(length, ?), updated = ?
                     WHERE file_transfer_id = ? AND part = ? AND \"offset\" = ?",
                )
                .bind(to as i64)
                .bind(length.map(|l| l as i64))
                .bind(at)
                .bind(id.to_string())
                .bind(part)
                .bind(from as i64)
                .execute(&mut *conn)
                .await
                .map_err(failure)?;
                Ok(r.rows_affected() == 1)
            })
        })
        .await
    }

    async fn create_part(
        &self,
        id: Uuid,
        part: &str,
        length: u64,
        at: Timestamp,
        max_parts: usize,
        max_total: u64,
    ) -> Result<PartAdmission, StoreError> {
        let at = time::format(&at);
        let part = part.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                let key = id.to_string();
                let row = sqlx::query(
                    "SELECT COUNT(*), COALESCE(SUM(length), 0) FROM tus_uploads WHERE file_transfer_id = ? AND part <> ''",
                )
                .bind(&key)
                .fetch_one(&mut *conn)
                .await
                .map_err(failure)?;
                let (count, total) = (row.get::<i64, _>(0) as u64, row.get::<i64, _>(1) as u64);
                if count >= max_parts as u64 {
                    return Ok(PartAdmission::TooManyParts);
                }
                if total.saturating_add(length) > max_total {
                    return Ok(PartAdmission::TooLarge);
                }
                sqlx::query(
                    "INSERT INTO tus_uploads (file_transfer_id, part, length, \"offset\", updated) VALUES (?, ?, ?, 0, ?)",
                )
                .bind(&key)
                .bind(part)
                .bind(length as i64)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(failure)?;
                Ok(PartAdmission::Created)
            })
        })
        .await
    }

    async fn terminate(&self, id: Uuid, part: &str, at: Timestamp) -> Result<(), StoreError> {
        let at = time::format(&at);
        let part = part.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                // The transfer's own upload takes its parts along: their bytes share its file's name.
                sqlx::query(
                    "DELETE FROM tus_uploads WHERE file_transfer_id = ? AND (part = ? OR ? = '')",
                )
                .bind(id.to_string())
                .bind(&part)
                .bind(&part)
                .execute(&mut *conn)
                .await
                .map_err(failure)?;
                sqlx::query("UPDATE file_transfers SET tus_activity = ? WHERE id = ?")
                    .bind(at)
                    .bind(id.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(failure)?;
                Ok(())
            })
        })
        .await
    }

    async fn active_since(&self, id: Uuid, since: Timestamp) -> Result<bool, StoreError> {
        let key = id.to_string();
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM tus_uploads WHERE file_transfer_id = ?)
                 OR EXISTS (SELECT 1 FROM file_transfers WHERE id = ? AND tus_activity >= ?)",
        )
        .bind(&key)
        .bind(&key)
        .bind(time::format(&since))
        .fetch_one(&self.reads)
        .await
        .map_err(failure)?;
        Ok(row.get::<i64, _>(0) != 0)
    }

    async fn last_activity(&self, id: Uuid) -> Result<Option<Timestamp>, StoreError> {
        let key = id.to_string();
        let row = sqlx::query(
            "SELECT (SELECT MAX(updated) FROM tus_uploads WHERE file_transfer_id = ?),
                    (SELECT tus_activity FROM file_transfers WHERE id = ?)",
        )
        .bind(&key)
        .bind(&key)
        .fetch_one(&self.reads)
        .await
        .map_err(failure)?;
        // Stored as RFC 3339 text: compared as times, not as strings.
        let touched = row
            .get::<Option<String>, _>(0)
            .map(|t| ts(&t))
            .transpose()?;
        let terminated = row
            .get::<Option<String>, _>(1)
            .map(|t| ts(&t))
            .transpose()?;
        Ok(touched.max(terminated))
    }

    async fn unverified(&self) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.file_transfer_id FROM tus_uploads t JOIN file_transfers f ON f.id = t.file_transfer_id
             WHERE t.part = '' AND t.length = t.\"offset\" AND f.sha256 IS NULL AND f.status IN (?, ?)",
        )
        .bind(FileTransferStatus::UploadStarted.code())
        .bind(FileTransferStatus::UploadProcessing.code())
        .fetch_all(&self.reads)
        .await
        .map_err(failure)?;
        rows.iter()
            .map(|r| r.get::<&str, _>(0).parse().map_err(failure))
            .collect()
    }

    async fn stale(&self, before: Timestamp) -> Result<Vec<(Uuid, String)>, StoreError> {
        let rows = sqlx::query("SELECT file_transfer_id, part FROM tus_uploads WHERE updated < ?")
            .bind(time::format(&before))
            .fetch_all(&self.reads)
            .await
            .map_err(failure)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.get::<&str, _>(0).parse().map_err(failure)?,
                    r.get::<String, _>(1),
                ))
            })
            .collect()
    }

    async fn record_joined(&self, id: Uuid, size: u64, at: Timestamp) -> Result<(), StoreError> {
        let at = time::format(&at);
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO tus_uploads (file_transfer_id, part, length, \"offset\", updated, joined) VALUES (?, '', ?, ?, ?, 1)
                     ON CONFLICT(file_transfer_id, part) DO UPDATE SET length = excluded.length, \"offset\" = excluded.\"offset\",
                        updated = excluded.updated, joined = 1",
                )
                .bind(id.to_string())
                .bind(size as i64)
                .bind(size as i64)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(failure)?;
                Ok(())
            })
        })
        .await
    }

    async fn remove(&self, id: Uuid, part: &str) -> Result<(), StoreError> {
        let part = part.to_string();
        self.write(move |conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM tus_uploads WHERE file_transfer_id = ? AND part = ?")
                    .bind(id.to_string())
                    .bind(part)
                    .execute(&mut *conn)
                    .await
                    .map_err(failure)?;
                Ok(())
            })
        })
        .await
    }
}
