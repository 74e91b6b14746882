//! Resumable upload sessions (tus): each upload's declared length and durable offset, the parts of a
//! concatenated upload, and when an upload was last touched. Shared through the DB, so any node can
//! continue an upload another node began.

use async_trait::async_trait;
use broker_protocol::time::Timestamp;
use uuid::Uuid;

pub use super::StoreError;

/// A resumable upload in progress: its declared length (None while deferred) and durable offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub length: Option<u64>,
    pub offset: u64,
    /// The transfer's upload joined from parts (tus concatenation), complete.
    pub joined: bool,
    /// The hashes' state after the first `offset` bytes, written with the offset (opaque here: the
    /// upload pipeline's tagged format); `None` when not kept, and then the stored prefix is read back.
    pub hash_state: Option<Vec<u8>>,
    /// The last bytes before `offset`, kept here when the part that holds them in the blob store is
    /// too small to be any part but an object's last (an object store's minimum part size): the next
    /// request writes them again at the head of its first part. `None` when nothing is staged.
    pub staged: Option<Vec<u8>>,
}

/// One move of an upload's durable offset, written in one conditional write.
#[derive(Debug, Clone, Copy)]
pub struct Advance<'a> {
    /// The offset the writer read: nothing is written if it is no longer this.
    pub from: u64,
    pub to: u64,
    /// A deferred length, declared now.
    pub length: Option<u64>,
    pub at: Timestamp,
    /// The writer's lease grant: nothing is written unless it is still the upload's current one.
    pub fence: Option<u64>,
    /// The hashes' state after `to` bytes (replaces the one kept; `None` clears it).
    pub hash_state: Option<&'a [u8]>,
    /// The last bytes before `to` to stage (replaces what was staged; `None` clears it).
    pub staged: Option<&'a [u8]>,
}

impl<'a> Advance<'a> {
    pub fn new(from: u64, to: u64, at: Timestamp) -> Self {
        Advance {
            from,
            to,
            length: None,
            at,
            fence: None,
            hash_state: None,
            staged: None,
        }
    }

    pub fn declaring(self, length: Option<u64>) -> Self {
        Advance { length, ..self }
    }

    pub fn fenced(self, token: u64) -> Self {
        Advance {
            fence: Some(token),
            ..self
        }
    }

    pub fn hashed(self, state: Option<&'a [u8]>) -> Self {
        Advance {
            hash_state: state,
            ..self
        }
    }

    pub fn staging(self, staged: Option<&'a [u8]>) -> Self {
        Advance { staged, ..self }
    }
}

/// What creating a part of a concatenated upload came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartAdmission {
    Created,
    /// The transfer has as many parts as allowed.
    TooManyParts,
    /// The parts' declared lengths would exceed the transfer's maximum size.
    TooLarge,
}

#[async_trait]
pub trait UploadSessions: Send + Sync + 'static {
    /// Starts (or restarts) a resumable upload at offset 0: the transfer's own (`part` = "") or a part
    /// of one sent in parallel pieces.
    async fn create(
        &self,
        id: Uuid,
        part: &str,
        length: Option<u64>,
        at: Timestamp,
    ) -> Result<(), StoreError>;
    async fn get(&self, id: Uuid, part: &str) -> Result<Option<SessionRow>, StoreError>;
    /// Moves the durable offset from `step.from` to `step.to` with the hashes' state there (and sets
    /// a deferred length); `false` (nothing written) if the offset was no longer `from`, or if a fence
    /// is given and is not the upload's current lease grant (its holder was replaced: the store and the
    /// leases share one database).
    async fn advance(&self, id: Uuid, part: &str, step: Advance<'_>) -> Result<bool, StoreError>;
    async fn remove(&self, id: Uuid, part: &str) -> Result<(), StoreError>;
    /// Records the transfer's upload as joined from parts: complete at `size` bytes.
    async fn record_joined(&self, id: Uuid, size: u64, at: Timestamp) -> Result<(), StoreError>;
    /// Creates a part of a concatenated upload, unless the transfer already has `max_parts` parts or
    /// the parts' declared lengths would add up past `max_total` (checked and written atomically).
    async fn create_part(
        &self,
        id: Uuid,
        part: &str,
        length: u64,
        at: Timestamp,
        max_parts: usize,
        max_total: u64,
    ) -> Result<PartAdmission, StoreError>;
    /// Removes a resumable upload the client terminated, noting the time (spec 4.6): one part, or (for
    /// `part` = "") the transfer's upload with every part of it, whose bytes go with it.
    async fn terminate(&self, id: Uuid, part: &str, at: Timestamp) -> Result<(), StoreError>;
    /// Whether the transfer has a resumable upload (or part) in progress, or had one terminated at or
    /// after `since`.
    async fn active_since(&self, id: Uuid, since: Timestamp) -> Result<bool, StoreError>;
    /// When a resumable upload of the transfer (or a part of one) was last created, advanced or
    /// terminated; `None` if never (or only by uploads long removed without a trace).
    async fn last_activity(&self, id: Uuid) -> Result<Option<Timestamp>, StoreError>;
    /// Resumable uploads whose every byte is stored but whose transfer was not verified yet (the server
    /// stopped before its background check finished).
    async fn unverified(&self) -> Result<Vec<Uuid>, StoreError>;
    /// Resumable uploads (and parts) last touched before `before`.
    async fn stale(&self, before: Timestamp) -> Result<Vec<(Uuid, String)>, StoreError>;
}
