//! The ports the lifecycle needs: where transfer state lives, where bytes live, what time it is.
//! Adapters (SQLite, PostgreSQL, local disk, object stores) live in the server crate.

use crate::state::{StoredFile, TransferState};
use async_trait::async_trait;
use broker_protocol::events::CloudEvent;
use broker_protocol::time::Timestamp;
use broker_protocol::{FileTransferStatus, RecipientStatus};
use bytes::Bytes;
use futures::stream::BoxStream;
use std::sync::Arc;
use uuid::Uuid;

/// A transfer as the lifecycle sees it.
#[derive(Debug, Clone)]
pub struct TransferRecord {
    pub id: Uuid,
    pub resource_id: String,
    /// The sender as given at initialize.
    pub sender: String,
    pub state: TransferState,
    pub purge_grace_period: chrono::Duration,
    pub expiration_time: Timestamp,
}

/// Everything one transition writes, committed atomically and only if the transfer is still in
/// `expected_status` (so two requests or two nodes cannot both move it).
#[derive(Debug, Clone)]
pub struct TransferChange {
    pub id: Uuid,
    pub expected_status: FileTransferStatus,
    pub at: Timestamp,
    pub new_status: Option<(FileTransferStatus, Option<String>)>,
    pub stored_file: Option<StoredFile>,
    pub recipient_rows: Vec<(String, RecipientStatus)>,
    /// Appended to the durable outbox in the same transaction.
    pub events: Vec<CloudEvent>,
    pub purge_at: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the transfer's status changed concurrently")]
    Conflict,
    #[error("metadata store failure: {0}")]
    Failure(String),
}

#[async_trait]
pub trait LifecycleStore: Send + Sync + 'static {
    async fn load_transfer(&self, id: Uuid) -> Result<Option<TransferRecord>, StoreError>;
    /// Persists the change durably (synced) before returning.
    async fn commit_change(&self, change: TransferChange) -> Result<(), StoreError>;
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no stored file")]
    NotFound,
    #[error("storage failure: {0}")]
    Io(#[from] std::io::Error),
}

/// Chunks handed along without copying; one batch is written (and hashed) as a unit.
pub type Batch = Arc<Vec<Bytes>>;
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Starts a new file for the transfer, replacing any earlier partial one.
    async fn create(&self, id: Uuid) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Continues the transfer's file (or one of its parts, for uploads sent in parallel pieces) at
    /// `offset`: anything stored past it (bytes never acknowledged) is cut off first. A missing file is
    /// created when `offset` is 0.
    async fn open_append(
        &self,
        id: Uuid,
        part: Option<&str>,
        offset: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Makes the transfer's file the concatenation of these complete parts, in order, without copying
    /// them; reads then span the parts.
    async fn concat(&self, id: Uuid, parts: &[String]) -> Result<(), BlobError>;
    /// Removes one part.
    async fn delete_part(&self, id: Uuid, part: &str) -> Result<(), BlobError>;
    /// Streams `len` bytes starting at `start`.
    async fn read(&self, id: Uuid, start: u64, len: u64) -> Result<ByteStream, BlobError>;
    /// Removes the file (and its parts); removing a missing file succeeds.
    async fn delete(&self, id: Uuid) -> Result<(), BlobError>;
    /// Free bytes for new uploads, when the store can tell.
    async fn available_space(&self) -> Result<Option<u64>, BlobError>;
    /// Answers when the store is usable (health check).
    async fn check(&self) -> Result<(), BlobError>;
}

#[async_trait]
pub trait BlobWriter: Send {
    /// Appends a batch after everything appended before.
    async fn append(&mut self, batch: Batch) -> Result<(), BlobError>;
    /// Makes every byte appended so far durable, and goes on accepting appends (a checkpoint).
    async fn sync(&mut self) -> Result<(), BlobError>;
    /// Makes every appended byte durable; returns the stored size.
    async fn commit(self: Box<Self>) -> Result<u64, BlobError>;
}

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        chrono::Utc::now()
    }
}
