//! Where a transfer's bytes live: local disk, or an object store. Adapters live in the server crate
//! (`src/blob/`).
//!
//! An upload is written as immutable parts, the way object stores take multipart uploads. A writer
//! writes parts that begin at the byte it was opened at, each named by its first byte and by the
//! fencing token of the lease grant it writes under; nothing ever overwrites or cuts a part, so a
//! holder that lost its lease can never touch bytes a newer holder acknowledged. When every byte is
//! acknowledged, the parts that make the object are chosen ([`chain`]: at each byte, the part of the
//! newest grant) and the object is completed from them; only a completed object is read.
//!
//! Object stores demand more of parts (S3: every part but the last at least 5 MiB, at most 10,000);
//! their rules are [`PartRules`], and the upload logic keeps them so that their adapters need none:
//! - a tus PATCH that ends before the upload does, in a part smaller than the store's minimum, keeps
//!   that part's bytes with the offset in the upload's session (`staged`, one conditional write); the
//!   next PATCH writes them again at the head of its own first part, which begins at the same byte
//!   under a newer grant and so supersedes the small one. At most one part's worth of bytes per upload
//!   sits in the database, and only on stores with a minimum;
//! - parts grow with the file: none but the last is smaller than max(the store's minimum, the longest
//!   the file may grow / the most parts), and a long PATCH seals a part every max(64 MiB, that floor),
//!   so no file needs more parts than the store allows;
//! - pieces of a concatenated upload too small to be parts are copied into the file rather than
//!   composed.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::sync::Arc;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no stored file")]
    NotFound,
    #[error("the store refuses this: {0}")]
    Refused(String),
    #[error("storage failure: {0}")]
    Io(#[from] std::io::Error),
}

/// Chunks handed along without copying; one batch is written (and hashed) as a unit.
pub type Batch = Arc<Vec<Bytes>>;
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// One object: a transfer's file, or one piece of a concatenated (tus `partial`) upload.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub id: Uuid,
    /// The piece's name (32 hex digits, chosen by the broker); `None` for the transfer's file.
    pub piece: Option<String>,
}

impl ObjectKey {
    pub fn file(id: Uuid) -> ObjectKey {
        ObjectKey { id, piece: None }
    }

    pub fn piece(id: Uuid, piece: &str) -> ObjectKey {
        ObjectKey {
            id,
            piece: Some(piece.to_string()),
        }
    }

    /// The file (`None`) or the named piece.
    pub fn of(id: Uuid, piece: Option<&str>) -> ObjectKey {
        ObjectKey {
            id,
            piece: piece.map(str::to_string),
        }
    }
}

/// The name of one stored part: the object's byte it begins at, and the grant that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartName {
    pub start: u64,
    pub token: u64,
}

/// A part as the store lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPart {
    pub name: PartName,
    pub len: u64,
}

impl StoredPart {
    pub fn end(&self) -> u64 {
        self.name.start + self.len
    }
}

/// What a store demands of the parts one object is completed from (S3's: every part but the last at
/// least 5 MiB, at most 10,000 parts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRules {
    pub min_part: u64,
    pub max_parts: usize,
    /// Whether an upload's sealed parts can be read before it is completed ([`BlobStore::read_parts`]).
    pub parts_readable: bool,
}

impl PartRules {
    /// No rule: the local disk and the plain in-memory store.
    pub const NONE: PartRules = PartRules {
        min_part: 0,
        max_parts: usize::MAX,
        parts_readable: true,
    };
}

/// The parts that make the first `length` bytes of an object: from byte 0, at each byte the part that
/// begins there written under the newest grant (a grant taken later always has a larger token, and
/// begins at the offset acknowledged when it was taken, so older parts from there on were never
/// acknowledged). `None` when they do not reach exactly `length`.
pub fn chain(parts: &[StoredPart], length: u64) -> Option<Vec<StoredPart>> {
    let mut by_start: std::collections::HashMap<u64, StoredPart> = Default::default();
    for part in parts.iter().filter(|p| p.len > 0) {
        let newest = by_start.entry(part.name.start).or_insert(*part);
        if part.name.token > newest.name.token {
            *newest = *part;
        }
    }
    let (mut at, mut chosen) = (0u64, Vec::new());
    while at < length {
        let part = by_start.get(&at)?;
        if part.end() > length {
            return None;
        }
        chosen.push(*part);
        at = part.end();
    }
    Some(chosen)
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// What this store demands of the parts an object is completed from.
    fn rules(&self) -> PartRules;
    /// Writes parts of `key` from byte `start` on, under the grant `token`. Each `sync` seals what was
    /// written since the last one as a part (a store may also seal parts on its own, always as a
    /// contiguous run), and `commit` seals the rest. A part is listed only once sealed, and a writer
    /// dropped before its commit leaves no more than the parts it sealed.
    async fn write_parts(
        &self,
        key: &ObjectKey,
        start: u64,
        token: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Writes the whole object `key` in one go (a single-request upload) under the grant `token`. A
    /// store that keeps small files with the metadata may hold it until the transition that stores the
    /// file, which commits it in its own transaction; such a file counts as completed once its writer
    /// committed. Others write parts as [`BlobStore::write_parts`] from byte 0.
    async fn write_whole(
        &self,
        key: &ObjectKey,
        token: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        self.write_parts(key, 0, token).await
    }
    /// The sealed parts of `key`'s upload (none once it is completed).
    async fn list_parts(&self, key: &ObjectKey) -> Result<Vec<StoredPart>, BlobError>;
    /// Streams `len` bytes from `start` of the concatenation of `parts` of `key`'s upload, before it
    /// is completed (the hash of an upload whose kept state is gone is computed again; a piece is
    /// hashed while it streams). A store whose rules say its uploads cannot be read before they are
    /// completed (object stores) answers [`BlobError::Refused`].
    async fn read_parts(
        &self,
        key: &ObjectKey,
        parts: &[PartName],
        start: u64,
        len: u64,
    ) -> Result<ByteStream, BlobError>;
    /// Makes the object `key` the concatenation of `parts` (sealed, contiguous from byte 0, within the
    /// rules) and drops its other parts; returns its length. Completing a completed object returns its
    /// length and changes nothing.
    async fn complete(&self, key: &ObjectKey, parts: &[PartName]) -> Result<u64, BlobError>;
    /// The length of the completed object `key`, if it is completed.
    async fn completed_len(&self, key: &ObjectKey) -> Result<Option<u64>, BlobError>;
    /// Makes the transfer's file the concatenation of these completed pieces, in order, without copying
    /// them where the store can; returns its length. Once the file is completed this changes nothing.
    /// The pieces stay readable (the in-order hashing may still read them) until the transfer is
    /// deleted.
    async fn compose(&self, id: Uuid, pieces: &[String]) -> Result<u64, BlobError>;
    /// Removes `key`: its upload's parts and its completed object, if any.
    async fn abort(&self, key: &ObjectKey) -> Result<(), BlobError>;
    /// Streams `len` bytes of the completed object `key` from `start`.
    async fn read(&self, key: &ObjectKey, start: u64, len: u64) -> Result<ByteStream, BlobError>;
    /// Removes everything stored for the transfer (its file, pieces and parts); removing nothing
    /// succeeds.
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
    /// Seals every byte appended so far (durable and listed), and goes on accepting appends into the
    /// next part (a checkpoint).
    async fn sync(&mut self) -> Result<(), BlobError>;
    /// Seals the rest; returns the bytes this writer wrote. A store that keeps small files with the
    /// metadata may instead hold them until the transition that stores the file, which commits them
    /// in its own transaction (nothing is acknowledged before that transition).
    async fn commit(self: Box<Self>) -> Result<u64, BlobError>;
    /// A hint: the bytes appended from now on will not be read back soon, so a store that keeps them
    /// cached (a piece of a concatenated upload, read back by its hashing) need not.
    fn drop_behind(&mut self) {}
}

/// The names of the sealed parts of `key`'s upload that make its first `length` bytes (see
/// [`chain`]); `None` when the stored parts do not make them.
pub async fn acknowledged_parts(
    blobs: &dyn BlobStore,
    key: &ObjectKey,
    length: u64,
) -> Result<Option<Vec<PartName>>, BlobError> {
    let parts = blobs.list_parts(key).await?;
    Ok(chain(&parts, length).map(|chosen| chosen.iter().map(|p| p.name).collect()))
}

/// Why an upload cannot be read or completed: its parts do not make what was acknowledged.
pub fn parts_missing(length: u64) -> BlobError {
    BlobError::Refused(format!(
        "the stored parts do not make the {length} bytes acknowledged"
    ))
}

/// Completes `key` from the parts that make its first `length` bytes (see [`chain`]); a completed
/// object of that length is left as it is.
pub async fn complete_object(
    blobs: &dyn BlobStore,
    key: &ObjectKey,
    length: u64,
) -> Result<(), BlobError> {
    if blobs.completed_len(key).await? == Some(length) {
        return Ok(());
    }
    let names = acknowledged_parts(blobs, key, length)
        .await?
        .ok_or_else(|| parts_missing(length))?;
    let stored = blobs.complete(key, &names).await?;
    if stored != length {
        return Err(BlobError::Refused(format!(
            "completed {stored} bytes where {length} were acknowledged"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(start: u64, token: u64, len: u64) -> StoredPart {
        StoredPart {
            name: PartName { start, token },
            len,
        }
    }

    fn starts(chosen: Option<Vec<StoredPart>>) -> Option<Vec<(u64, u64)>> {
        chosen.map(|c| c.iter().map(|p| (p.name.start, p.name.token)).collect())
    }

    #[test]
    fn the_chain_takes_at_each_byte_the_part_of_the_newest_grant() {
        // Grant 1 wrote 0..10 and 10..20 (never acknowledged past 10); grant 2 resumed at 10.
        let parts = [
            part(0, 1, 10),
            part(10, 1, 10),
            part(10, 2, 5),
            part(15, 2, 5),
        ];
        assert_eq!(
            starts(chain(&parts, 20)),
            Some(vec![(0, 1), (10, 2), (15, 2)])
        );
        assert_eq!(starts(chain(&parts, 15)), Some(vec![(0, 1), (10, 2)]));
    }

    #[test]
    fn a_stale_holders_late_part_is_never_chosen() {
        // Grant 1 lost its lease at 10; grant 2 took over at 10; grant 1's late part at 10 and its
        // later one at 16 lose to grant 2's, or fall inside one of them.
        let parts = [
            part(0, 1, 10),
            part(10, 2, 12),
            part(10, 1, 6),
            part(16, 1, 6),
        ];
        assert_eq!(starts(chain(&parts, 22)), Some(vec![(0, 1), (10, 2)]));
    }

    #[test]
    fn a_chain_that_misses_a_byte_or_runs_past_the_length_is_none() {
        assert_eq!(starts(chain(&[part(0, 1, 10), part(11, 1, 5)], 16)), None);
        assert_eq!(starts(chain(&[part(0, 1, 10)], 5)), None);
        assert_eq!(starts(chain(&[part(0, 1, 10)], 11)), None);
        assert_eq!(
            starts(chain(&[], 0)),
            Some(vec![]),
            "an empty object needs no part"
        );
        assert_eq!(
            starts(chain(&[part(0, 1, 0), part(0, 2, 4)], 4)),
            Some(vec![(0, 2)]),
            "empty parts are ignored"
        );
    }
}
