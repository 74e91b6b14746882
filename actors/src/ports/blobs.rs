//! Where a transfer's bytes live: local disk, or an object store. Appends are ordered and batched;
//! reads stream. Adapters live in the server crate (`src/blob/`).

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::sync::Arc;
use uuid::Uuid;

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
    /// Streams `len` bytes of one part from `start` (its durable bytes are hashed in part order while
    /// the other parts still stream).
    async fn read_part(
        &self,
        id: Uuid,
        part: &str,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, BlobError>;
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
    /// Makes every appended byte durable; returns the stored size. A store that keeps small files
    /// with the metadata may instead hold them until the transition that stores the file, which
    /// commits them in its own transaction (nothing is acknowledged before that transition).
    async fn commit(self: Box<Self>) -> Result<u64, BlobError>;
    /// A hint: the bytes appended from now on will not be read back soon, so a store that keeps them
    /// cached (a part of a concatenated upload, read back by its hashing) need not.
    fn drop_behind(&mut self) {}
}
