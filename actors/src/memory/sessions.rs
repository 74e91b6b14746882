//! The upload-sessions port in memory (kept in the same tables as the transfers it joins).

use super::MemoryStore;
use crate::ports::upload_sessions::{Advance, PartAdmission, SessionRow, UploadSessions};
use crate::ports::StoreError;
use async_trait::async_trait;
use broker_protocol::time::Timestamp;
use broker_protocol::FileTransferStatus;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Sessions by (transfer, part); "" is the transfer's own upload.
pub(super) type Sessions = BTreeMap<(Uuid, String), (SessionRow, Timestamp)>;

#[async_trait]
impl UploadSessions for MemoryStore {
    async fn create(
        &self,
        id: Uuid,
        part: &str,
        length: Option<u64>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tables = self.lock();
        let joined = false;
        tables.sessions.insert(
            (id, part.to_string()),
            (
                SessionRow {
                    length,
                    offset: 0,
                    joined,
                    hash_state: None,
                    staged: None,
                },
                at,
            ),
        );
        Ok(())
    }

    async fn get(&self, id: Uuid, part: &str) -> Result<Option<SessionRow>, StoreError> {
        Ok(self
            .lock()
            .sessions
            .get(&(id, part.to_string()))
            .map(|(row, _)| row.clone()))
    }

    async fn advance(&self, id: Uuid, part: &str, step: Advance<'_>) -> Result<bool, StoreError> {
        let mut tables = self.lock();
        if step
            .fence
            .is_some_and(|token| !tables.leases.is_current(id, part, token))
        {
            return Ok(false);
        }
        match tables.sessions.get_mut(&(id, part.to_string())) {
            Some((row, touched)) if row.offset == step.from => {
                row.offset = step.to;
                row.length = row.length.or(step.length);
                row.hash_state = step.hash_state.map(<[u8]>::to_vec);
                row.staged = step.staged.map(<[u8]>::to_vec);
                *touched = step.at;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn remove(&self, id: Uuid, part: &str) -> Result<(), StoreError> {
        self.lock().sessions.remove(&(id, part.to_string()));
        Ok(())
    }

    async fn record_joined(&self, id: Uuid, size: u64, at: Timestamp) -> Result<(), StoreError> {
        let row = SessionRow {
            length: Some(size),
            offset: size,
            joined: true,
            hash_state: None,
            staged: None,
        };
        self.lock().sessions.insert((id, String::new()), (row, at));
        Ok(())
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
        let mut tables = self.lock();
        let parts: Vec<u64> = tables
            .sessions
            .range((id, String::new())..)
            .take_while(|((t, _), _)| *t == id)
            .filter(|((_, p), _)| !p.is_empty())
            .map(|(_, (row, _))| row.length.unwrap_or(0))
            .collect();
        if parts.len() >= max_parts {
            return Ok(PartAdmission::TooManyParts);
        }
        if parts.iter().sum::<u64>().saturating_add(length) > max_total {
            return Ok(PartAdmission::TooLarge);
        }
        let row = SessionRow {
            length: Some(length),
            offset: 0,
            joined: false,
            hash_state: None,
            staged: None,
        };
        tables.sessions.insert((id, part.to_string()), (row, at));
        Ok(PartAdmission::Created)
    }

    async fn terminate(&self, id: Uuid, part: &str, at: Timestamp) -> Result<(), StoreError> {
        let mut tables = self.lock();
        // The transfer's own upload takes its parts along.
        tables
            .sessions
            .retain(|(t, p), _| !(*t == id && (p == part || part.is_empty())));
        if let Some(row) = tables.transfers.get_mut(&id) {
            row.tus_activity = Some(at);
        }
        Ok(())
    }

    async fn active_since(&self, id: Uuid, since: Timestamp) -> Result<bool, StoreError> {
        let tables = self.lock();
        let open = tables
            .sessions
            .range((id, String::new())..)
            .next()
            .is_some_and(|((t, _), _)| *t == id);
        let terminated = tables
            .transfers
            .get(&id)
            .and_then(|r| r.tus_activity)
            .is_some_and(|t| t >= since);
        Ok(open || terminated)
    }

    async fn last_activity(&self, id: Uuid) -> Result<Option<Timestamp>, StoreError> {
        let tables = self.lock();
        let touched = tables
            .sessions
            .range((id, String::new())..)
            .take_while(|((t, _), _)| *t == id)
            .map(|(_, (_, at))| *at)
            .max();
        let terminated = tables.transfers.get(&id).and_then(|r| r.tus_activity);
        Ok(touched.max(terminated))
    }

    async fn unverified(&self) -> Result<Vec<Uuid>, StoreError> {
        let tables = self.lock();
        Ok(tables
            .sessions
            .iter()
            .filter(|((_, part), (row, _))| part.is_empty() && row.length == Some(row.offset))
            .filter(|((id, _), _)| {
                tables.transfers.get(id).is_some_and(|t| {
                    t.view.sha256.is_none()
                        && matches!(
                            t.view.status,
                            FileTransferStatus::UploadStarted
                                | FileTransferStatus::UploadProcessing
                        )
                })
            })
            .map(|((id, _), _)| *id)
            .collect())
    }

    async fn stale(&self, before: Timestamp) -> Result<Vec<(Uuid, String)>, StoreError> {
        Ok(self
            .lock()
            .sessions
            .iter()
            .filter(|(_, (_, at))| *at < before)
            .map(|(k, _)| k.clone())
            .collect())
    }
}
