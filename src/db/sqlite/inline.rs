//! Small files in the database (`crate::blob::inline` decides which): held in memory until the
//! transition that stores them, then a row of `inline_files` written in that transition's savepoint.

use super::{failure, SqliteStore};
use crate::blob::inline::InlineFiles;
use crate::db::*;
use bytes::Bytes;
use rusqlite::{params, OptionalExtension};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Held files nobody committed (an upload whose transition was refused and whose bytes were never
/// deleted) are let go after this long, so the map stays bounded.
const ABANDONED_AFTER: Duration = Duration::from_secs(600);
/// Only a map this large is swept for abandoned files.
const SWEEP_ABOVE: usize = 1024;

#[derive(Default)]
pub(super) struct Staged(Mutex<HashMap<Uuid, (Bytes, Instant)>>);

impl Staged {
    pub(super) fn get(&self, id: Uuid) -> Option<Bytes> {
        self.0
            .lock()
            .expect("staged lock")
            .get(&id)
            .map(|(b, _)| b.clone())
    }

    pub(super) fn remove(&self, id: Uuid) -> bool {
        self.0.lock().expect("staged lock").remove(&id).is_some()
    }

    fn put(&self, id: Uuid, bytes: Bytes) {
        let mut staged = self.0.lock().expect("staged lock");
        if staged.len() >= SWEEP_ABOVE {
            staged.retain(|_, (_, at)| at.elapsed() < ABANDONED_AFTER);
        }
        staged.insert(id, (bytes, Instant::now()));
    }
}

#[async_trait]
impl InlineFiles for SqliteStore {
    fn stage(&self, id: Uuid, bytes: Bytes) {
        self.staged.put(id, bytes);
    }

    fn unstage(&self, id: Uuid) {
        self.staged.remove(id);
    }

    async fn inline_file(&self, id: Uuid) -> Result<Option<Bytes>, StoreError> {
        if let Some(bytes) = self.staged.get(id) {
            return Ok(Some(bytes));
        }
        let stored: Option<Vec<u8>> = self.read(|conn| {
            conn.prepare_cached("SELECT data FROM inline_files WHERE file_transfer_id = ?")
                .and_then(|mut s| {
                    s.query_row(params![id.to_string()], |r| r.get(0))
                        .optional()
                })
                .map_err(failure)
        })?;
        Ok(stored.map(Bytes::from))
    }

    async fn remove_inline_file(&self, id: Uuid) -> Result<(), StoreError> {
        self.staged.remove(id);
        // Most files are not inline: look before queueing a write (and its commit) for nothing.
        let present = self.read(|conn| {
            conn.prepare_cached("SELECT 1 FROM inline_files WHERE file_transfer_id = ?")
                .and_then(|mut s| s.query_row(params![id.to_string()], |_| Ok(())).optional())
                .map(|row| row.is_some())
                .map_err(failure)
        })?;
        if present {
            self.write(move |conn| {
                conn.prepare_cached("DELETE FROM inline_files WHERE file_transfer_id = ?")
                    .and_then(|mut s| s.execute(params![id.to_string()]))
                    .map_err(failure)?;
                Ok(())
            })
            .await?;
        }
        Ok(())
    }
}
