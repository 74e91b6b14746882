//! Small files kept in the metadata database instead of a file each: a file no larger than
//! `[storage] inline_max_bytes` that arrives in one request (a binary or form upload) is held in
//! memory until the transition that stores it commits, and is written in that same transaction, so a
//! small upload costs one commit and no inode. Everything else, and every tus upload (whose offsets
//! are acknowledged PATCH by PATCH, through `open_append`), goes to the disk store underneath. Reads, Range,
//! hashing and scanning see no difference: they all read through this port.

use async_trait::async_trait;
use broker_actors::ports::{Batch, BlobError, BlobStore, BlobWriter, ByteStream, StoreError};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use uuid::Uuid;

/// Where inline files live: the metadata database.
#[async_trait]
pub trait InlineFiles: Send + Sync + 'static {
    /// Holds `bytes` as the transfer's file until the next transition that stores a file commits
    /// them with it (until then they are readable, but nothing has been acknowledged).
    fn stage(&self, id: Uuid, bytes: Bytes);
    /// Lets go of a held file that was never committed.
    fn unstage(&self, id: Uuid);
    /// The transfer's inline file, staged or committed.
    async fn inline_file(&self, id: Uuid) -> Result<Option<Bytes>, StoreError>;
    /// Forgets the transfer's inline file, staged or committed.
    async fn remove_inline_file(&self, id: Uuid) -> Result<(), StoreError>;
}

pub struct InlineBlobStore<D> {
    disk: Arc<D>,
    files: Arc<dyn InlineFiles>,
    max_bytes: u64,
}

impl<D: BlobStore> InlineBlobStore<D> {
    pub fn new(disk: Arc<D>, files: Arc<dyn InlineFiles>, max_bytes: u64) -> Self {
        InlineBlobStore {
            disk,
            files,
            max_bytes,
        }
    }
}

fn io(e: StoreError) -> BlobError {
    BlobError::Io(std::io::Error::other(e.to_string()))
}

fn slice(bytes: Bytes, start: u64, len: u64) -> ByteStream {
    let start = (start as usize).min(bytes.len());
    let end = start.saturating_add(len as usize).min(bytes.len());
    let piece = bytes.slice(start..end);
    Box::pin(futures::stream::iter(
        (!piece.is_empty()).then_some(Ok(piece)),
    ))
}

#[async_trait]
impl<D: BlobStore> BlobStore for InlineBlobStore<D> {
    async fn create(&self, id: Uuid) -> Result<Box<dyn BlobWriter>, BlobError> {
        // A new attempt replaces an earlier held one. A committed inline file cannot be there: a
        // transfer stores its file once, and nothing uploads to it after that.
        self.files.unstage(id);
        if self.max_bytes == 0 {
            return self.disk.create(id).await;
        }
        Ok(Box::new(InlineWriter {
            id,
            disk: self.disk.clone(),
            files: self.files.clone(),
            max_bytes: self.max_bytes,
            held: Vec::new(),
            held_len: 0,
            spilled: None,
        }))
    }

    async fn open_append(
        &self,
        id: Uuid,
        part: Option<&str>,
        offset: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        // tus acknowledges every PATCH on its own, so its bytes always go to disk.
        if part.is_none() {
            self.files.unstage(id);
        }
        self.disk.open_append(id, part, offset).await
    }

    async fn read_part(
        &self,
        id: Uuid,
        part: &str,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, BlobError> {
        self.disk.read_part(id, part, start, len).await
    }

    async fn concat(&self, id: Uuid, parts: &[String]) -> Result<(), BlobError> {
        self.disk.concat(id, parts).await
    }

    async fn delete_part(&self, id: Uuid, part: &str) -> Result<(), BlobError> {
        self.disk.delete_part(id, part).await
    }

    async fn read(&self, id: Uuid, start: u64, len: u64) -> Result<ByteStream, BlobError> {
        // Whatever the threshold is now, a file may have been kept inline under an earlier one.
        if let Some(bytes) = self.files.inline_file(id).await.map_err(io)? {
            return Ok(slice(bytes, start, len));
        }
        self.disk.read(id, start, len).await
    }

    async fn delete(&self, id: Uuid) -> Result<(), BlobError> {
        // As for reads: the file may have been kept inline under an earlier threshold.
        self.files.remove_inline_file(id).await.map_err(io)?;
        self.disk.delete(id).await
    }

    async fn available_space(&self) -> Result<Option<u64>, BlobError> {
        self.disk.available_space().await
    }

    async fn check(&self) -> Result<(), BlobError> {
        self.disk.check().await
    }
}

/// Holds a single-request upload in memory while it stays small; past the threshold it moves what it
/// holds to a disk writer and carries on there.
struct InlineWriter<D> {
    id: Uuid,
    disk: Arc<D>,
    files: Arc<dyn InlineFiles>,
    max_bytes: u64,
    held: Vec<Bytes>,
    held_len: u64,
    spilled: Option<Box<dyn BlobWriter>>,
}

impl<D: BlobStore> InlineWriter<D> {
    async fn spill(&mut self) -> Result<&mut Box<dyn BlobWriter>, BlobError> {
        if self.spilled.is_none() {
            let mut writer = self.disk.create(self.id).await?;
            let held = std::mem::take(&mut self.held);
            if !held.is_empty() {
                writer.append(Arc::new(held)).await?;
            }
            self.spilled = Some(writer);
        }
        Ok(self.spilled.as_mut().expect("spilled just now"))
    }
}

#[async_trait]
impl<D: BlobStore> BlobWriter for InlineWriter<D> {
    async fn append(&mut self, batch: Batch) -> Result<(), BlobError> {
        if self.spilled.is_none() {
            let len: u64 = batch.iter().map(|b| b.len() as u64).sum();
            if self.held_len + len <= self.max_bytes {
                self.held.extend(batch.iter().cloned());
                self.held_len += len;
                return Ok(());
            }
        }
        self.spill().await?.append(batch).await
    }

    async fn sync(&mut self) -> Result<(), BlobError> {
        // Held bytes become durable only with their transition; a checkpoint needs them on disk now.
        self.spill().await?.sync().await
    }

    async fn commit(self: Box<Self>) -> Result<u64, BlobError> {
        let this = *self;
        if let Some(writer) = this.spilled {
            return writer.commit().await;
        }
        // A small body usually arrives as one chunk: hold that, not a copy.
        let whole = match this.held.as_slice() {
            [one] => one.clone(),
            pieces => {
                let mut whole = BytesMut::with_capacity(this.held_len as usize);
                pieces.iter().for_each(|p| whole.extend_from_slice(p));
                whole.freeze()
            }
        };
        this.files.stage(this.id, whole);
        Ok(this.held_len)
    }

    fn drop_behind(&mut self) {
        if let Some(writer) = self.spilled.as_mut() {
            writer.drop_behind();
        }
    }
}
