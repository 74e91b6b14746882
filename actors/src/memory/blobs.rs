//! The blob port in memory: files and parts as byte vectors, a concatenated file as its list of parts.

use crate::ports::{Batch, BlobError, BlobStore, BlobWriter, ByteStream};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

type Key = (Uuid, Option<String>);

#[derive(Default)]
struct Files {
    bytes: HashMap<Key, Vec<u8>>,
    /// Transfers whose file is the concatenation of these parts.
    joined: HashMap<Uuid, Vec<String>>,
}

#[derive(Default, Clone)]
pub struct MemoryBlobs {
    files: Arc<Mutex<Files>>,
    /// Free bytes to report (`None`: the store cannot tell).
    free: Arc<Mutex<Option<u64>>>,
    /// Reads of whole transfers' files (not of parts), for tests that check what was read back.
    file_reads: Arc<std::sync::atomic::AtomicUsize>,
    /// Bytes read back from parts.
    part_bytes_read: Arc<std::sync::atomic::AtomicU64>,
    /// Bytes read back from transfers' files.
    file_bytes_read: Arc<std::sync::atomic::AtomicU64>,
}

impl MemoryBlobs {
    /// Makes `available_space` report `free` bytes.
    pub fn set_free_space(&self, free: Option<u64>) {
        *self.free.lock().expect("memory blobs") = free;
    }

    /// How many reads of transfers' files (parts not counted) were made.
    pub fn file_reads(&self) -> usize {
        self.file_reads.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many bytes of transfers' files (parts not counted) were read back.
    pub fn file_bytes_read(&self) -> u64 {
        self.file_bytes_read
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many bytes of parts were read back.
    pub fn part_bytes_read(&self) -> u64 {
        self.part_bytes_read
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether anything is stored for the transfer (its file, a part, or a join).
    pub fn holds(&self, id: Uuid) -> bool {
        let files = self.files.lock().expect("memory blobs");
        files.joined.contains_key(&id) || files.bytes.keys().any(|(t, _)| *t == id)
    }

    /// Whether nothing at all is stored.
    pub fn is_empty(&self) -> bool {
        let files = self.files.lock().expect("memory blobs");
        files.joined.is_empty() && files.bytes.is_empty()
    }
}

struct MemoryWriter {
    files: Arc<Mutex<Files>>,
    key: Key,
}

#[async_trait]
impl BlobWriter for MemoryWriter {
    async fn append(&mut self, batch: Batch) -> Result<(), BlobError> {
        let mut files = self.files.lock().expect("memory blobs");
        let file = files.bytes.entry(self.key.clone()).or_default();
        for chunk in batch.iter() {
            file.extend_from_slice(chunk);
        }
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), BlobError> {
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<u64, BlobError> {
        let files = self.files.lock().expect("memory blobs");
        Ok(files.bytes.get(&self.key).map_or(0, |f| f.len() as u64))
    }
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    async fn create(&self, id: Uuid) -> Result<Box<dyn BlobWriter>, BlobError> {
        self.open_append(id, None, 0).await
    }

    async fn open_append(
        &self,
        id: Uuid,
        part: Option<&str>,
        offset: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        let key = (id, part.map(str::to_string));
        let mut files = self.files.lock().expect("memory blobs");
        let file = files.bytes.entry(key.clone()).or_default();
        if (file.len() as u64) < offset {
            return Err(BlobError::Io(std::io::Error::other(format!(
                "the stored file is shorter than the durable offset {offset}"
            ))));
        }
        file.truncate(offset as usize);
        Ok(Box::new(MemoryWriter {
            files: self.files.clone(),
            key,
        }))
    }

    async fn read_part(
        &self,
        id: Uuid,
        part: &str,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, BlobError> {
        let files = self.files.lock().expect("memory blobs");
        let bytes = files
            .bytes
            .get(&(id, Some(part.to_string())))
            .ok_or(BlobError::NotFound)?;
        let from = (start as usize).min(bytes.len());
        let to = (start.saturating_add(len) as usize).min(bytes.len());
        let slice = Bytes::copy_from_slice(&bytes[from..to]);
        self.part_bytes_read
            .fetch_add(slice.len() as u64, std::sync::atomic::Ordering::SeqCst);
        Ok(Box::pin(futures::stream::iter([Ok(slice)])))
    }

    async fn concat(&self, id: Uuid, parts: &[String]) -> Result<(), BlobError> {
        let mut files = self.files.lock().expect("memory blobs");
        files.bytes.remove(&(id, None));
        files.joined.insert(id, parts.to_vec());
        Ok(())
    }

    async fn delete_part(&self, id: Uuid, part: &str) -> Result<(), BlobError> {
        let mut files = self.files.lock().expect("memory blobs");
        files.bytes.remove(&(id, Some(part.to_string())));
        Ok(())
    }

    async fn read(&self, id: Uuid, start: u64, len: u64) -> Result<ByteStream, BlobError> {
        self.file_reads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let files = self.files.lock().expect("memory blobs");
        let whole: Vec<u8> = match files.joined.get(&id) {
            Some(parts) => {
                let mut all = Vec::new();
                for part in parts {
                    let bytes = files.bytes.get(&(id, Some(part.clone())));
                    all.extend_from_slice(bytes.ok_or(BlobError::NotFound)?);
                }
                all
            }
            None => files
                .bytes
                .get(&(id, None))
                .ok_or(BlobError::NotFound)?
                .clone(),
        };
        let from = (start as usize).min(whole.len());
        let to = (start.saturating_add(len) as usize).min(whole.len());
        let slice = Bytes::copy_from_slice(&whole[from..to]);
        self.file_bytes_read
            .fetch_add(slice.len() as u64, std::sync::atomic::Ordering::SeqCst);
        Ok(Box::pin(futures::stream::iter([Ok(slice)])))
    }

    async fn delete(&self, id: Uuid) -> Result<(), BlobError> {
        let mut files = self.files.lock().expect("memory blobs");
        files.bytes.retain(|(t, _), _| *t != id);
        files.joined.remove(&id);
        Ok(())
    }

    async fn available_space(&self) -> Result<Option<u64>, BlobError> {
        Ok(*self.free.lock().expect("memory blobs"))
    }

    async fn check(&self) -> Result<(), BlobError> {
        Ok(())
    }
}
