//! The upload-sessions port (tus offsets and parts) on SQLite.

use super::{failure, ts, SqliteStore};
use crate::db::*;
use broker_actors::ports::UploadSessions;
use broker_protocol::time;
use rusqlite::{params, OptionalExtension};

fn uuid(text: String) -> Result<Uuid, StoreError> {
    text.parse().map_err(failure)
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
            conn.prepare_cached(
                "INSERT INTO tus_uploads (file_transfer_id, part, length, \"offset\", updated) VALUES (?, ?, ?, 0, ?)
                 ON CONFLICT(file_transfer_id, part) DO UPDATE SET length = excluded.length, \"offset\" = 0, hash_state = NULL, staged = NULL, updated = excluded.updated",
            )
            .and_then(|mut s| s.execute(params![id.to_string(), part, length.map(|l| l as i64), at]))
            .map_err(failure)?;
            Ok(())
        })
        .await
    }

    async fn get(&self, id: Uuid, part: &str) -> Result<Option<SessionRow>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT length, \"offset\", joined, hash_state, staged FROM tus_uploads WHERE file_transfer_id = ? AND part = ?",
            )
            .and_then(|mut s| {
                s.query_row(params![id.to_string(), part], |r| {
                    Ok(SessionRow {
                        length: r.get::<_, Option<i64>>(0)?.map(|l| l as u64),
                        offset: r.get::<_, i64>(1)? as u64,
                        joined: r.get::<_, i64>(2)? != 0,
                        hash_state: r.get(3)?,
                        staged: r.get(4)?,
                    })
                })
                .optional()
            })
            .map_err(failure)
        })
    }

    async fn advance(&self, id: Uuid, part: &str, step: Advance<'_>) -> Result<bool, StoreError> {
        let at = time::format(&step.at);
        let part = part.to_string();
        let (from, to, length, fence) = (step.from, step.to, step.length, step.fence);
        let hash_state = step.hash_state.map(<[u8]>::to_vec);
        let staged = step.staged.map(<[u8]>::to_vec);
        self.write(move |conn| {
            let advanced = conn
                .prepare_cached(
                    "UPDATE tus_uploads SET \"offset\" = ?1, length = COALESCE(length, ?2), updated = ?3, hash_state = ?8, staged = ?9
                     WHERE file_transfer_id = ?4 AND part = ?5 AND \"offset\" = ?6
                       AND (?7 IS NULL OR EXISTS (SELECT 1 FROM upload_leases l
                            WHERE l.file_transfer_id = ?4 AND l.part = ?5 AND l.token = ?7))",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        to as i64,
                        length.map(|l| l as i64),
                        at,
                        id.to_string(),
                        part,
                        from as i64,
                        fence.map(|t| t as i64),
                        hash_state,
                        staged
                    ])
                })
                .map_err(failure)?;
            Ok(advanced == 1)
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
            let key = id.to_string();
            let (count, total) = conn
                .prepare_cached(
                    "SELECT COUNT(*), COALESCE(SUM(length), 0) FROM tus_uploads WHERE file_transfer_id = ? AND part <> ''",
                )
                .and_then(|mut s| {
                    s.query_row(params![key], |r| {
                        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                    })
                })
                .map_err(failure)?;
            if count >= max_parts as u64 {
                return Ok(PartAdmission::TooManyParts);
            }
            if total.saturating_add(length) > max_total {
                return Ok(PartAdmission::TooLarge);
            }
            conn.prepare_cached(
                "INSERT INTO tus_uploads (file_transfer_id, part, length, \"offset\", updated) VALUES (?, ?, ?, 0, ?)",
            )
            .and_then(|mut s| s.execute(params![key, part, length as i64, at]))
            .map_err(failure)?;
            Ok(PartAdmission::Created)
        })
        .await
    }

    async fn terminate(&self, id: Uuid, part: &str, at: Timestamp) -> Result<(), StoreError> {
        let at = time::format(&at);
        let part = part.to_string();
        self.write(move |conn| {
            let key = id.to_string();
            // The transfer's own upload takes its parts along: their bytes share its file's name.
            conn.prepare_cached(
                "DELETE FROM tus_uploads WHERE file_transfer_id = ?1 AND (part = ?2 OR ?2 = '')",
            )
            .and_then(|mut s| s.execute(params![key, part]))
            .map_err(failure)?;
            conn.prepare_cached("UPDATE file_transfers SET tus_activity = ? WHERE id = ?")
                .and_then(|mut s| s.execute(params![at, key]))
                .map_err(failure)?;
            Ok(())
        })
        .await
    }

    async fn active_since(&self, id: Uuid, since: Timestamp) -> Result<bool, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM tus_uploads WHERE file_transfer_id = ?1)
                     OR EXISTS (SELECT 1 FROM file_transfers WHERE id = ?1 AND tus_activity >= ?2)",
            )
            .and_then(|mut s| {
                s.query_row(params![id.to_string(), time::format(&since)], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .map(|active| active != 0)
            .map_err(failure)
        })
    }

    async fn last_activity(&self, id: Uuid) -> Result<Option<Timestamp>, StoreError> {
        let (touched, terminated) = self.read(|conn| {
            conn.prepare_cached(
                "SELECT (SELECT MAX(updated) FROM tus_uploads WHERE file_transfer_id = ?1),
                        (SELECT tus_activity FROM file_transfers WHERE id = ?1)",
            )
            .and_then(|mut s| {
                s.query_row(params![id.to_string()], |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                    ))
                })
            })
            .map_err(failure)
        })?;
        // Stored as RFC 3339 text: compared as times, not as strings.
        let touched = touched.map(|t| ts(&t)).transpose()?;
        let terminated = terminated.map(|t| ts(&t)).transpose()?;
        Ok(touched.max(terminated))
    }

    async fn unverified(&self) -> Result<Vec<Uuid>, StoreError> {
        let ids = self.read(|conn| {
            conn.prepare_cached(
                "SELECT t.file_transfer_id FROM tus_uploads t JOIN file_transfers f ON f.id = t.file_transfer_id
                 WHERE t.part = '' AND t.length = t.\"offset\" AND f.sha256 IS NULL AND f.status IN (?, ?)",
            )
            .and_then(|mut s| {
                s.query_map(
                    params![
                        FileTransferStatus::UploadStarted.code(),
                        FileTransferStatus::UploadProcessing.code()
                    ],
                    |r| r.get::<_, String>(0),
                )?
                .collect::<Result<Vec<_>, _>>()
            })
            .map_err(failure)
        })?;
        ids.into_iter().map(uuid).collect()
    }

    async fn stale(&self, before: Timestamp) -> Result<Vec<(Uuid, String)>, StoreError> {
        let rows = self.read(|conn| {
            conn.prepare_cached("SELECT file_transfer_id, part FROM tus_uploads WHERE updated < ?")
                .and_then(|mut s| {
                    s.query_map(params![time::format(&before)], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(failure)
        })?;
        rows.into_iter()
            .map(|(id, part)| Ok((uuid(id)?, part)))
            .collect()
    }

    async fn record_joined(&self, id: Uuid, size: u64, at: Timestamp) -> Result<(), StoreError> {
        let at = time::format(&at);
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO tus_uploads (file_transfer_id, part, length, \"offset\", updated, joined) VALUES (?1, '', ?2, ?2, ?3, 1)
                 ON CONFLICT(file_transfer_id, part) DO UPDATE SET length = excluded.length, \"offset\" = excluded.\"offset\",
                    updated = excluded.updated, joined = 1, hash_state = NULL, staged = NULL",
            )
            .and_then(|mut s| s.execute(params![id.to_string(), size as i64, at]))
            .map_err(failure)?;
            Ok(())
        })
        .await
    }

    async fn remove(&self, id: Uuid, part: &str) -> Result<(), StoreError> {
        let part = part.to_string();
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM tus_uploads WHERE file_transfer_id = ? AND part = ?")
                .and_then(|mut s| s.execute(params![id.to_string(), part]))
                .map_err(failure)?;
            Ok(())
        })
        .await
    }
}
