//! Small files kept in the metadata database instead of a file each: a file no larger than
//! `[storage] inline_max_bytes` written whole in one request (a binary or form upload, through
//! `write_whole`) is held in memory until the transition that stores it commits, and is written in
//! that same transaction, so a small upload costs one commit and no inode. Everything else, and every
//! tus upload (whose offsets are acknowledged PATCH by PATCH, through `write_parts`), goes to the disk
//! store underneath. Reads, Range, hashing and scanning see no difference: they all read through this
//! port.

use async_trait::async_trait;
use broker_actors::ports::{
    Batch, BlobError, BlobStore, BlobWriter, ByteStream, ObjectKey, PartName, PartRules,
    StoreError, StoredPart,
};
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

impl<D: BlobStore> InlineBlobStore<D> {
    /// The transfer's file kept inline, if `key` is a transfer's file and it is.
    async fn inline(&self, key: &ObjectKey) -> Result<Option<Bytes>, BlobError> {
        match key.piece {
            Some(_) => Ok(None),
            None => self.files.inline_file(key.id).await.map_err(io),
        }
    }
}

#[async_trait]
impl<D: BlobStore> BlobStore for InlineBlobStore<D> {
    fn rules(&self) -> PartRules {
        self.disk.rules()
    }

    async fn write_whole(
        &self,
        key: &ObjectKey,
        token: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        // A new attempt replaces an earlier held one. A committed inline file cannot be there: a
        // transfer stores its file once, and nothing uploads to it after that.
        if key.piece.is_some() || self.max_bytes == 0 {
            return self.disk.write_whole(key, token).await;
        }
        self.files.unstage(key.id);
        Ok(Box::new(InlineWriter {
            key: key.clone(),
            token,
            disk: self.disk.clone(),
            files: self.files.clone(),
            max_bytes: self.max_bytes,
            held: Vec::new(),
            held_len: 0,
            spilled: None,
        }))
    }

    async fn write_parts(
        &self,
        key: &ObjectKey,
        start: u64,
        token: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        // tus acknowledges every PATCH on its own, so its bytes always go to disk.
        if key.piece.is_none() {
            self.files.unstage(key.id);
        }
        self.disk.write_parts(key, start, token).await
    }

    async fn list_parts(&self, key: &ObjectKey) -> Result<Vec<StoredPart>, BlobError> {
        self.disk.list_parts(key).await
    }

    async fn read_parts(
        &self,
        key: &ObjectKey,
        parts: &[PartName],
        start: u64,
        len: u64,
    ) -> Result<ByteStream, BlobError> {
        self.disk.read_parts(key, parts, start, len).await
    }

    async fn complete(&self, key: &ObjectKey, parts: &[PartName]) -> Result<u64, BlobError> {
        if let Some(bytes) = self.inline(key).await? {
            return Ok(bytes.len() as u64);
        }
        self.disk.complete(key, parts).await
    }

    async fn completed_len(&self, key: &ObjectKey) -> Result<Option<u64>, BlobError> {
        if let Some(bytes) = self.inline(key).await? {
            return Ok(Some(bytes.len() as u64));
        }
        self.disk.completed_len(key).await
    }

    async fn compose(&self, id: Uuid, pieces: &[String]) -> Result<u64, BlobError> {
        self.disk.compose(id, pieces).await
    }

    async fn abort(&self, key: &ObjectKey) -> Result<(), BlobError> {
        if key.piece.is_none() {
            self.files.unstage(key.id);
        }
        self.disk.abort(key).await
    }

    async fn read(&self, key: &ObjectKey, start: u64, len: u64) -> Result<ByteStream, BlobError> {
        // Whatever the threshold is now, a file may have been kept inline under an earlier one.
        if let Some(bytes) = self.inline(key).await? {
            return Ok(slice(bytes, start, len));
        }
        self.disk.read(key, start, len).await
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
    key: ObjectKey,
    token: u64,
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
            let mut writer = self.disk.write_whole(&self.key, self.token).await?;
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
        this.files.stage(this.key.id, whole);
        Ok(this.held_len)
    }

    fn drop_behind(&mut self) {
        if let Some(writer) = self.spilled.as_mut() {
            writer.drop_behind();
        }
    }
}
