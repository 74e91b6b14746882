//! The blob port in memory: sealed parts and completed objects as byte strings. With
//! [`MemoryBlobs::strict`] it keeps an object store's rules too (a minimum part size but for the last
//! part, a most parts per object), so the upload logic is proven against them before any object store
//! adapter exists.

use crate::ports::blobs::{
    Batch, BlobError, BlobStore, BlobWriter, ByteStream, ObjectKey, PartName, PartRules, StoredPart,
};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

#[derive(Default)]
struct Objects {
    /// Sealed parts of uploads not completed yet.
    uploads: HashMap<ObjectKey, BTreeMap<PartName, Bytes>>,
    completed: HashMap<ObjectKey, Bytes>,
}

#[derive(Clone)]
pub struct MemoryBlobs {
    objects: Arc<Mutex<Objects>>,
    rules: PartRules,
    /// Free bytes to report (`None`: the store cannot tell).
    free: Arc<Mutex<Option<u64>>>,
    /// Reads of transfers' files (not of pieces), for tests that check what was read back.
    file_reads: Arc<AtomicUsize>,
    /// Bytes read back from pieces.
    part_bytes_read: Arc<AtomicU64>,
    /// Bytes read back from transfers' files, completed or not.
    file_bytes_read: Arc<AtomicU64>,
}

impl Default for MemoryBlobs {
    fn default() -> Self {
        MemoryBlobs::with_rules(PartRules::NONE)
    }
}

impl MemoryBlobs {
    /// A store that keeps an object store's rules, with its limits scaled down for tests: every part
    /// but the last at least `min_part` bytes, at most `max_parts` parts; uploads cannot be read
    /// before they are completed.
    pub fn strict(min_part: u64, max_parts: usize) -> MemoryBlobs {
        MemoryBlobs::with_rules(PartRules {
            min_part,
            max_parts,
            parts_readable: false,
        })
    }

    fn with_rules(rules: PartRules) -> MemoryBlobs {
        MemoryBlobs {
            objects: Default::default(),
            rules,
            free: Default::default(),
            file_reads: Default::default(),
            part_bytes_read: Default::default(),
            file_bytes_read: Default::default(),
        }
    }

    /// Makes `available_space` report `free` bytes.
    pub fn set_free_space(&self, free: Option<u64>) {
        *self.free.lock().expect("memory blobs") = free;
    }

    /// How many reads of transfers' files (pieces not counted) were made.
    pub fn file_reads(&self) -> usize {
        self.file_reads.load(Ordering::SeqCst)
    }

    /// How many bytes of transfers' files (pieces not counted) were read back.
    pub fn file_bytes_read(&self) -> u64 {
        self.file_bytes_read.load(Ordering::SeqCst)
    }

    /// How many bytes of pieces were read back.
    pub fn part_bytes_read(&self) -> u64 {
        self.part_bytes_read.load(Ordering::SeqCst)
    }

    /// Whether anything is stored for the transfer (its file, a piece, or a part).
    pub fn holds(&self, id: Uuid) -> bool {
        let objects = self.objects.lock().expect("memory blobs");
        objects.uploads.keys().any(|k| k.id == id) || objects.completed.keys().any(|k| k.id == id)
    }

    /// Whether nothing at all is stored.
    pub fn is_empty(&self) -> bool {
        let objects = self.objects.lock().expect("memory blobs");
        objects.uploads.values().all(BTreeMap::is_empty) && objects.completed.is_empty()
    }

    fn count_read(&self, key: &ObjectKey, bytes: u64) {
        match key.piece {
            None => self.file_bytes_read.fetch_add(bytes, Ordering::SeqCst),
            Some(_) => self.part_bytes_read.fetch_add(bytes, Ordering::SeqCst),
        };
    }
}

fn refused(text: String) -> BlobError {
    BlobError::Refused(text)
}

fn concat(pieces: &[&Bytes]) -> Bytes {
    match pieces {
        [one] => (*one).clone(),
        _ => {
            let mut whole = BytesMut::with_capacity(pieces.iter().map(|p| p.len()).sum());
            pieces.iter().for_each(|p| whole.extend_from_slice(p));
            whole.freeze()
        }
    }
}

fn one_chunk(bytes: Bytes) -> ByteStream {
    Box::pin(futures::stream::iter(
        (!bytes.is_empty()).then_some(Ok(bytes)),
    ))
}

struct MemoryWriter {
    objects: Arc<Mutex<Objects>>,
    key: ObjectKey,
    token: u64,
    /// Where the part being written begins.
    start: u64,
    pending: Vec<Bytes>,
    written: u64,
}

impl MemoryWriter {
    fn seal(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let len: u64 = pending.iter().map(|b| b.len() as u64).sum();
        if len == 0 {
            return;
        }
        let bytes = concat(&pending.iter().collect::<Vec<_>>());
        let name = PartName {
            start: self.start,
            token: self.token,
        };
        let mut objects = self.objects.lock().expect("memory blobs");
        objects
            .uploads
            .entry(self.key.clone())
            .or_default()
            .insert(name, bytes);
        self.start += len;
    }
}

#[async_trait]
impl BlobWriter for MemoryWriter {
    async fn append(&mut self, batch: Batch) -> Result<(), BlobError> {
        self.written += batch.iter().map(|b| b.len() as u64).sum::<u64>();
        self.pending.extend(batch.iter().cloned());
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), BlobError> {
        self.seal();
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, BlobError> {
        self.seal();
        Ok(self.written)
    }
}

#[async_trait]
impl BlobStore for MemoryBlobs {
    fn rules(&self) -> PartRules {
        self.rules
    }

    async fn write_parts(
        &self,
        key: &ObjectKey,
        start: u64,
        token: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        if self
            .objects
            .lock()
            .expect("memory blobs")
            .completed
            .contains_key(key)
        {
            return Err(refused("the object is completed".into()));
        }
        Ok(Box::new(MemoryWriter {
            objects: self.objects.clone(),
            key: key.clone(),
            token,
            start,
            pending: Vec::new(),
            written: 0,
        }))
    }

    async fn list_parts(&self, key: &ObjectKey) -> Result<Vec<StoredPart>, BlobError> {
        let objects = self.objects.lock().expect("memory blobs");
        Ok(objects.uploads.get(key).map_or_else(Vec::new, |parts| {
            parts
                .iter()
                .map(|(name, bytes)| StoredPart {
                    name: *name,
                    len: bytes.len() as u64,
                })
                .collect()
        }))
    }

    async fn read_parts(
        &self,
        key: &ObjectKey,
        parts: &[PartName],
        start: u64,
        len: u64,
    ) -> Result<ByteStream, BlobError> {
        if !self.rules.parts_readable {
            return Err(refused(
                "an upload cannot be read before it is completed".into(),
            ));
        }
        let objects = self.objects.lock().expect("memory blobs");
        let stored = objects.uploads.get(key).ok_or(BlobError::NotFound)?;
        let chosen: Vec<&Bytes> = parts
            .iter()
            .map(|name| stored.get(name).ok_or(BlobError::NotFound))
            .collect::<Result<_, _>>()?;
        let whole = concat(&chosen);
        let from = (start as usize).min(whole.len());
        let to = (start.saturating_add(len) as usize).min(whole.len());
        let slice = whole.slice(from..to);
        self.count_read(key, slice.len() as u64);
        Ok(one_chunk(slice))
    }

    async fn complete(&self, key: &ObjectKey, parts: &[PartName]) -> Result<u64, BlobError> {
        let mut objects = self.objects.lock().expect("memory blobs");
        if let Some(done) = objects.completed.get(key) {
            return Ok(done.len() as u64);
        }
        if parts.len() > self.rules.max_parts {
            return Err(refused(format!(
                "{} parts, more than the {} one object may have",
                parts.len(),
                self.rules.max_parts
            )));
        }
        let empty = BTreeMap::new();
        let stored = objects.uploads.get(key).unwrap_or(&empty);
        let mut chosen = Vec::with_capacity(parts.len());
        let mut at = 0u64;
        for (i, name) in parts.iter().enumerate() {
            let bytes = stored
                .get(name)
                .ok_or_else(|| refused(format!("no sealed part {name:?}")))?;
            if name.start != at {
                return Err(refused(format!(
                    "part {name:?} does not begin at byte {at}"
                )));
            }
            if i + 1 < parts.len() && (bytes.len() as u64) < self.rules.min_part {
                return Err(refused(format!(
                    "part {name:?} has {} bytes, fewer than the {} every part but the last needs",
                    bytes.len(),
                    self.rules.min_part
                )));
            }
            at += bytes.len() as u64;
            chosen.push(bytes);
        }
        let whole = concat(&chosen);
        objects.uploads.remove(key);
        objects.completed.insert(key.clone(), whole);
        Ok(at)
    }

    async fn completed_len(&self, key: &ObjectKey) -> Result<Option<u64>, BlobError> {
        let objects = self.objects.lock().expect("memory blobs");
        Ok(objects.completed.get(key).map(|b| b.len() as u64))
    }

    async fn compose(&self, id: Uuid, pieces: &[String]) -> Result<u64, BlobError> {
        let file = ObjectKey::file(id);
        let mut objects = self.objects.lock().expect("memory blobs");
        if let Some(done) = objects.completed.get(&file) {
            return Ok(done.len() as u64);
        }
        let mut chosen = Vec::with_capacity(pieces.len());
        for (i, piece) in pieces.iter().enumerate() {
            let bytes = objects
                .completed
                .get(&ObjectKey::piece(id, piece))
                .ok_or_else(|| refused(format!("the piece {piece} is not completed")))?;
            // An object store copies each piece in as a part of the file: the same rule holds.
            if i + 1 < pieces.len() && (bytes.len() as u64) < self.rules.min_part {
                return Err(refused(format!(
                    "the piece {piece} is smaller than the {} bytes a part needs",
                    self.rules.min_part
                )));
            }
            chosen.push(bytes);
        }
        let whole = concat(&chosen);
        let len = whole.len() as u64;
        objects.uploads.remove(&file);
        objects.completed.insert(file, whole);
        Ok(len)
    }

    async fn abort(&self, key: &ObjectKey) -> Result<(), BlobError> {
        let mut objects = self.objects.lock().expect("memory blobs");
        objects.uploads.remove(key);
        objects.completed.remove(key);
        Ok(())
    }

    async fn read(&self, key: &ObjectKey, start: u64, len: u64) -> Result<ByteStream, BlobError> {
        if key.piece.is_none() {
            self.file_reads.fetch_add(1, Ordering::SeqCst);
        }
        let objects = self.objects.lock().expect("memory blobs");
        let whole = objects.completed.get(key).ok_or(BlobError::NotFound)?;
        let from = (start as usize).min(whole.len());
        let to = (start.saturating_add(len) as usize).min(whole.len());
        let slice = whole.slice(from..to);
        self.count_read(key, slice.len() as u64);
        Ok(one_chunk(slice))
    }

    async fn delete(&self, id: Uuid) -> Result<(), BlobError> {
        let mut objects = self.objects.lock().expect("memory blobs");
        objects.uploads.retain(|k, _| k.id != id);
        objects.completed.retain(|k, _| k.id != id);
        Ok(())
    }

    async fn available_space(&self) -> Result<Option<u64>, BlobError> {
        Ok(*self.free.lock().expect("memory blobs"))
    }

    async fn check(&self) -> Result<(), BlobError> {
        Ok(())
    }
}
