//! Streams an upload body into a blob while MD5 and SHA-256 are computed on other threads.
//!
//! Chunks are gathered into ~1 MiB batches of `Bytes` (no copy). Each batch goes to two hashing threads
//! (MD5 is the serial ceiling of the stream, ~600 MB/s on one core, so SHA-256 must not share its core)
//! and to the blob writer. Bounded channels keep memory per upload at a few MiB whatever the size.
//!
//! The hash state ([`HashState`]) can start from an earlier one, so an upload that arrives in several
//! requests (tus PATCHes) is hashed once, in order, as it streams.

pub use crate::hashing::*;
use crate::ports::{Batch, BlobError, BlobWriter};
use crate::state::StoredFile;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::sync::Arc;

const BATCH_BYTES: usize = 1 << 20;
/// Below this, a whole body is hashed on the calling task: a thread hand-off would cost more.
const INLINE_HASH_BYTES: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("the request body failed: {0}")]
    Body(String),
    #[error(transparent)]
    Storage(#[from] BlobError),
    #[error("the body is longer than the allowed {0} bytes")]
    TooLarge(u64),
}

/// What became of a batch offered to a [`Checkpoint`] before it was stored (the part hashing of a
/// concatenated upload takes batches of the part it stands at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// Not hashed now (it is read back later).
    No,
    /// Hashed as it passed.
    Fed,
    /// It would be hashed live once the bytes before it are durable (and read back): make them so,
    /// record them, and offer the batch again.
    AfterDurable,
}

/// Told each time a long body's bytes so far have been made durable mid-stream, so a crash loses at
/// most one interval (tus records the new offset).
#[async_trait::async_trait]
pub trait Checkpoint: Send {
    /// The first `written` bytes of this body are durable, and `hashes` is the hash state after them
    /// (to be kept with the offset).
    async fn durable(&mut self, written: u64, hashes: HashState);

    /// The batch after the first `written` bytes of this body is about to be stored: whether it was
    /// hashed here (a part of a concatenated upload feeds the joined file's hash live).
    async fn before_batch(&mut self, _written: u64, _batch: &Batch) -> Live {
        Live::No
    }

    /// `batch` goes to the writer now (every batch, the last short one too).
    fn stored(&mut self, _batch: &Batch) {}

    /// How many bytes of the body pass between two checkpoints.
    fn interval(&self) -> u64 {
        CHECKPOINT_BYTES
    }
}

/// How often a long body is made durable mid-stream when a [`Checkpoint`] is given.
pub const CHECKPOINT_BYTES: u64 = 64 << 20;

/// What an append streamed: the hashing after it, and why it stopped early if the body broke off
/// (only when the caller keeps partial bodies).
pub struct Appended {
    pub hashing: Hashing,
    pub interrupted: Option<String>,
}

/// What `stream_append` does with the hashing threads at the end of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashesAfter {
    /// Wait for the hashes (overlapped with the final sync): the body is the last of the upload.
    Finish,
    /// Leave them running for the next body of the same upload.
    KeepRunning,
}

/// Streams `body` into `writer` after the bytes `state` has seen, refusing more than `max_len` bytes in
/// this body, and makes them durable. When the body breaks off and `keep_partial` is set, what arrived
/// is still written, synced and reported (`interrupted`); otherwise the error is returned and the caller
/// discards the partial bytes.
pub async fn stream_append<S, E>(
    mut body: S,
    mut writer: Box<dyn BlobWriter>,
    mut hashing: Hashing,
    max_len: Option<u64>,
    keep_partial: bool,
    after: HashesAfter,
    mut checkpoint: Option<&mut dyn Checkpoint>,
) -> Result<Appended, StreamError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut batch: Vec<Bytes> = Vec::new();
    let mut batch_len = 0usize;
    let mut total: u64 = 0;
    let mut interrupted = None;
    let mut since_checkpoint = 0u64;
    let mut dropping_behind = false;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) if keep_partial => {
                interrupted = Some(e.to_string());
                break;
            }
            Err(e) => return Err(StreamError::Body(e.to_string())),
        };
        total += chunk.len() as u64;
        if let Some(max) = max_len {
            if total > max {
                return Err(StreamError::TooLarge(max));
            }
        }
        batch_len += chunk.len();
        batch.push(chunk);
        if batch_len >= BATCH_BYTES {
            let full: Batch = Arc::new(std::mem::take(&mut batch));
            let before = total - batch_len as u64;
            batch_len = 0;
            if let Some(cp) = checkpoint.as_deref_mut() {
                let mut live = cp.before_batch(before, &full).await;
                if live == Live::AfterDurable {
                    let (synced, hashes) = tokio::join!(writer.sync(), hashing.snapshot());
                    synced?;
                    cp.durable(before, hashes?).await;
                    since_checkpoint = before;
                    live = cp.before_batch(before, &full).await;
                }
                if live == Live::Fed && !dropping_behind {
                    // Hashed as they pass, these bytes will not be read back: they need not stay cached.
                    writer.drop_behind();
                    dropping_behind = true;
                }
                cp.stored(&full);
            }
            hashing.feed(&full).await;
            writer.append(full).await?;
            if let Some(cp) = checkpoint.as_deref_mut() {
                let interval = cp.interval();
                if total / interval > since_checkpoint / interval {
                    // The hashes catch up while the bytes are synced: the checkpoint keeps both.
                    let (synced, hashes) = tokio::join!(writer.sync(), hashing.snapshot());
                    synced?;
                    cp.durable(total, hashes?).await;
                    since_checkpoint = total;
                }
            }
        }
    }
    let last: Batch = Arc::new(batch);
    if let Some(cp) = checkpoint {
        cp.stored(&last);
    }
    let state = match hashing {
        Hashing::Running(mut threads) => {
            threads.feed(&last).await;
            writer.append(last).await?;
            let hashing = match after {
                // The hashes' tail and the final sync overlap.
                HashesAfter::Finish => {
                    let (state, synced) = tokio::join!(threads.finish(), writer.commit());
                    synced?;
                    Hashing::Ready(state?)
                }
                HashesAfter::KeepRunning => {
                    writer.commit().await?;
                    Hashing::Running(threads)
                }
            };
            return Ok(Appended {
                hashing,
                interrupted,
            });
        }
        Hashing::Ready(mut state) => {
            if batch_len <= INLINE_HASH_BYTES || !state.hashing {
                last.iter().for_each(|c| state.update(c));
                writer.append(last).await?;
                state
            } else {
                let for_hash = last.clone();
                let hashing = tokio::task::spawn_blocking(move || {
                    for_hash.iter().for_each(|c| state.update(c));
                    state
                });
                writer.append(last).await?;
                hashing
                    .await
                    .map_err(|e| BlobError::Io(std::io::Error::other(e.to_string())))?
            }
        }
    };
    writer.commit().await?;
    Ok(Appended {
        hashing: Hashing::Ready(state),
        interrupted,
    })
}

/// A writer that keeps nothing, only counts: for hashing bytes that are stored already.
#[derive(Default)]
pub struct Discard(pub u64);

#[async_trait::async_trait]
impl BlobWriter for Discard {
    async fn append(&mut self, batch: Batch) -> Result<(), BlobError> {
        self.0 += batch.iter().map(|b| b.len() as u64).sum::<u64>();
        Ok(())
    }
    async fn sync(&mut self) -> Result<(), BlobError> {
        Ok(())
    }
    async fn commit(self: Box<Self>) -> Result<u64, BlobError> {
        Ok(self.0)
    }
}

/// MD5 and SHA-256 of bytes read back from storage, through the upload pipeline (each hash on its
/// own thread).
pub async fn hash_stream<S, E>(stream: S) -> Result<HashState, StreamError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let appended = stream_append(
        stream,
        Box::new(Discard::default()),
        HashState::default().into(),
        None,
        false,
        HashesAfter::Finish,
        None,
    )
    .await?;
    Ok(appended.hashing.finish().await?)
}

/// Streams a whole file into `writer` (a new blob) and returns its size and hashes. On any error the
/// caller discards the partial blob.
pub async fn stream_into_blob<S, E>(
    body: S,
    writer: Box<dyn BlobWriter>,
    max_len: Option<u64>,
) -> Result<StoredFile, StreamError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let appended = stream_append(
        body,
        writer,
        HashState::default().into(),
        max_len,
        false,
        HashesAfter::Finish,
        None,
    )
    .await?;
    Ok(appended.hashing.finish().await?.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(bytes: &[u8]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        let chunks: Vec<Result<Bytes, String>> = bytes
            .chunks(64 << 10)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks)
    }

    async fn append(bytes: &[u8], hashing: Hashing, after: HashesAfter) -> Hashing {
        let writer = Box::new(Discard(0));
        stream_append(body(bytes), writer, hashing, None, false, after, None)
            .await
            .unwrap()
            .hashing
    }

    #[tokio::test]
    async fn hashing_left_running_between_bodies_gives_the_hashes_of_the_whole() {
        let content: Vec<u8> = (0..7_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let (a, rest) = content.split_at(3_100_000);
        let (b, c) = rest.split_at(10_000);
        let first = append(a, HashState::default().into(), HashesAfter::KeepRunning).await;
        assert!(
            matches!(first, Hashing::Running(_)),
            "a long body leaves its threads running"
        );
        assert_eq!(first.len(), a.len() as u64);
        // A short body is fed to the running threads too.
        let second = append(b, first, HashesAfter::KeepRunning).await;
        let third = append(c, second, HashesAfter::Finish).await;
        assert!(matches!(third, Hashing::Ready(_)));
        let file = third.finish().await.unwrap().finish();
        let mut whole = HashState::default();
        whole.update(&content);
        assert_eq!(file, whole.finish());
    }
}
