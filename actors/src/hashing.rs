//! MD5 and SHA-256 of an upload: the state carried from one request to the next, and the two threads
//! that hash its batches as they stream (see the upload module for the pipeline).
//!
//! MD5 is the critical path: SHA-256 and the disk writer have slack, so their threads run at a lower
//! scheduling priority ([`lower_thread_priority`]). On a machine with few cores this keeps MD5 from being
//! preempted by work that can wait (measured on 2 cores: ~0.75 -> ~0.84 of the MD5 ceiling).

use crate::ports::{Batch, BlobError};
use crate::state::StoredFile;
use md5::digest::common::hazmat::{SerializableState, SerializedState};
use md5::digest::typenum::Unsigned;
use md5::Digest as _;
use tokio::sync::{mpsc, oneshot};

/// Batches queued per hashing thread.
const HASH_QUEUE: usize = 4;

/// Lowers the calling thread's scheduling priority (Linux: per thread). Used by dedicated threads that
/// do work off the critical path; a thread cannot raise it back without privileges, so only call it on
/// threads that end with their work (never on a pooled thread).
pub fn lower_thread_priority() {
    // SAFETY: setpriority only reads its arguments; on Linux `who = 0` means the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// The tag of [`HashState::to_bytes`]'s format (md-5 0.11's and sha2 0.11's serialized states). A
/// build that changes the layout takes a new tag; an unknown tag is never guessed at.
const STATE_FORMAT: u8 = 1;
const MD5_STATE_BYTES: usize = <md5::Md5 as SerializableState>::SerializedStateSize::USIZE;
const SHA256_STATE_BYTES: usize = <sha2::Sha256 as SerializableState>::SerializedStateSize::USIZE;
const STATE_BYTES: usize = 1 + 8 + MD5_STATE_BYTES + SHA256_STATE_BYTES;

/// MD5 and SHA-256 of the bytes seen so far, and how many there were.
#[derive(Clone)]
pub struct HashState {
    md5: md5::Md5,
    sha256: sha2::Sha256,
    pub(crate) len: u64,
    /// False for bytes that are hashed later as part of a whole (parts of a concatenated upload).
    pub(crate) hashing: bool,
}

impl Default for HashState {
    fn default() -> Self {
        HashState {
            md5: Default::default(),
            sha256: Default::default(),
            len: 0,
            hashing: true,
        }
    }
}

impl HashState {
    /// Counts bytes without hashing them.
    pub fn length_only(len: u64) -> Self {
        HashState {
            len,
            hashing: false,
            ..Default::default()
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn update(&mut self, bytes: &[u8]) {
        if self.hashing {
            self.md5.update(bytes);
            sha2::Digest::update(&mut self.sha256, bytes);
        }
        self.len += bytes.len() as u64;
    }

    /// The state as bytes to keep with the upload's durable offset: a format tag, the length, then
    /// MD5's and SHA-256's own serialized states. `None` for a state that only counts.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        if !self.hashing {
            return None;
        }
        let mut bytes = Vec::with_capacity(STATE_BYTES);
        bytes.push(STATE_FORMAT);
        bytes.extend_from_slice(&self.len.to_le_bytes());
        bytes.extend_from_slice(&self.md5.serialize());
        bytes.extend_from_slice(&self.sha256.serialize());
        Some(bytes)
    }

    /// A state kept by [`HashState::to_bytes`]; `None` for another format (an older or newer build's,
    /// or damaged bytes): the caller then hashes the stored prefix again.
    pub fn from_bytes(bytes: &[u8]) -> Option<HashState> {
        if bytes.len() != STATE_BYTES || bytes[0] != STATE_FORMAT {
            return None;
        }
        let len = u64::from_le_bytes(bytes[1..9].try_into().ok()?);
        let (md5, sha256) = bytes[9..].split_at(MD5_STATE_BYTES);
        let md5 = SerializedState::<md5::Md5>::try_from(md5).ok()?;
        let sha256 = SerializedState::<sha2::Sha256>::try_from(sha256).ok()?;
        Some(HashState {
            md5: md5::Md5::deserialize(&md5).ok()?,
            sha256: sha2::Sha256::deserialize(&sha256).ok()?,
            len,
            hashing: true,
        })
    }

    /// The hex digests of everything seen: the stored file's identity.
    pub fn finish(self) -> StoredFile {
        StoredFile {
            size: self.len,
            md5: hex(&self.md5.finalize()),
            sha256: hex(&sha2::Digest::finalize(self.sha256)),
        }
    }
}

/// An upload's hashing: complete up to its length, or still running on its threads. A resumable
/// upload keeps its threads between requests, so the hashes' tail of one PATCH overlaps the round trip
/// to the next instead of holding up the answer.
pub enum Hashing {
    Ready(HashState),
    Running(HashThreads),
}

impl From<HashState> for Hashing {
    fn from(state: HashState) -> Self {
        Hashing::Ready(state)
    }
}

impl Hashing {
    /// The bytes seen so far (hashed or queued for hashing).
    pub fn len(&self) -> u64 {
        match self {
            Hashing::Ready(s) => s.len,
            Hashing::Running(t) => t.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the hashes of every byte seen.
    pub async fn finish(self) -> Result<HashState, BlobError> {
        match self {
            Hashing::Ready(s) => Ok(s),
            Hashing::Running(t) => t.finish().await,
        }
    }

    /// The state after every byte seen so far; running threads go on.
    pub(crate) async fn snapshot(&mut self) -> Result<HashState, BlobError> {
        match self {
            Hashing::Ready(s) => Ok(s.clone()),
            Hashing::Running(t) => t.snapshot().await,
        }
    }

    /// Hashes `batch` after every byte seen so far.
    pub(crate) async fn feed(&mut self, batch: &Batch) {
        match self.threads() {
            Some(threads) => threads.feed(batch).await,
            None => {
                if let Hashing::Ready(state) = self {
                    state.len += batch.iter().map(|b| b.len() as u64).sum::<u64>();
                }
            }
        }
    }

    /// The hashing threads, started when this upload hashes (parts of a concatenation only count).
    fn threads(&mut self) -> Option<&mut HashThreads> {
        if let Hashing::Ready(state) = self {
            if !state.hashing {
                return None;
            }
            *self = Hashing::Running(HashThreads::spawn(state.clone()));
        }
        match self {
            Hashing::Running(t) => Some(t),
            Hashing::Ready(_) => None,
        }
    }
}

/// The MD5 and SHA-256 threads of one upload, fed batches through bounded queues.
pub struct HashThreads {
    md5_tx: mpsc::Sender<ToThread<md5::Md5>>,
    sha_tx: mpsc::Sender<ToThread<sha2::Sha256>>,
    md5: oneshot::Receiver<md5::Md5>,
    sha256: oneshot::Receiver<sha2::Sha256>,
    len: u64,
}

/// Runs `work` on a dedicated thread and hands its result back through a oneshot channel.
pub fn spawn_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> oneshot::Receiver<T> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(work());
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a thread");
    }
    rx
}

impl HashThreads {
    fn spawn(state: HashState) -> Self {
        let (md5_tx, md5_rx) = mpsc::channel(HASH_QUEUE);
        let (sha_tx, sha_rx) = mpsc::channel(HASH_QUEUE);
        let (md5, sha256) = (state.md5, state.sha256);
        HashThreads {
            md5_tx,
            sha_tx,
            md5: spawn_thread("md5", move || hash_all(md5_rx, md5)),
            sha256: spawn_thread("sha256", move || {
                lower_thread_priority();
                hash_all(sha_rx, sha256)
            }),
            len: state.len,
        }
    }

    pub(crate) async fn feed(&mut self, batch: &Batch) {
        // A send only fails if a hashing thread died; `finish` then reports it.
        let _ = self.md5_tx.send(ToThread::Hash(batch.clone())).await;
        let _ = self.sha_tx.send(ToThread::Hash(batch.clone())).await;
        self.len += batch.iter().map(|b| b.len() as u64).sum::<u64>();
    }

    /// The state after every byte fed so far, while the threads go on (a checkpoint keeps it with
    /// the offset it made durable).
    pub(crate) async fn snapshot(&mut self) -> Result<HashState, BlobError> {
        let (md5_tx, md5) = oneshot::channel();
        let (sha_tx, sha256) = oneshot::channel();
        let _ = self.md5_tx.send(ToThread::Snapshot(md5_tx)).await;
        let _ = self.sha_tx.send(ToThread::Snapshot(sha_tx)).await;
        let failed = || BlobError::Io(std::io::Error::other("a hashing thread failed"));
        Ok(HashState {
            md5: md5.await.map_err(|_| failed())?,
            sha256: sha256.await.map_err(|_| failed())?,
            len: self.len,
            hashing: true,
        })
    }

    pub(crate) async fn finish(self) -> Result<HashState, BlobError> {
        drop(self.md5_tx);
        drop(self.sha_tx);
        let failed = || BlobError::Io(std::io::Error::other("a hashing thread failed"));
        Ok(HashState {
            md5: self.md5.await.map_err(|_| failed())?,
            sha256: self.sha256.await.map_err(|_| failed())?,
            len: self.len,
            hashing: true,
        })
    }
}

/// What a hashing thread is sent: bytes to hash, or a request for its state so far.
enum ToThread<D> {
    Hash(Batch),
    Snapshot(oneshot::Sender<D>),
}

fn hash_all<D: sha2::Digest + Clone>(mut rx: mpsc::Receiver<ToThread<D>>, mut digest: D) -> D {
    while let Some(message) = rx.blocking_recv() {
        match message {
            ToThread::Hash(batch) => batch.iter().for_each(|chunk| digest.update(chunk)),
            ToThread::Snapshot(reply) => {
                let _ = reply.send(digest.clone());
            }
        }
    }
    digest
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashed(parts: &[&[u8]]) -> HashState {
        let mut state = HashState::default();
        parts.iter().for_each(|p| state.update(p));
        state
    }

    #[test]
    fn a_state_kept_as_bytes_continues_to_the_same_hashes_as_one_never_stopped() {
        let (head, tail) = (vec![7u8; 100_003], vec![9u8; 50_001]);
        let kept = hashed(&[&head])
            .to_bytes()
            .expect("a hashing state is kept");
        let mut resumed = HashState::from_bytes(&kept).expect("this build's format is read");
        assert_eq!(resumed.len(), head.len() as u64);
        resumed.update(&tail);
        assert_eq!(resumed.finish(), hashed(&[&head, &tail]).finish());
    }

    #[test]
    fn a_state_in_another_format_or_cut_short_is_not_read() {
        let kept = hashed(&[b"abc"]).to_bytes().unwrap();
        let mut other = kept.clone();
        other[0] = STATE_FORMAT + 1;
        assert!(HashState::from_bytes(&other).is_none());
        assert!(HashState::from_bytes(&kept[..kept.len() - 1]).is_none());
        assert!(
            HashState::length_only(10).to_bytes().is_none(),
            "a count is not a state"
        );
    }

    #[tokio::test]
    async fn a_snapshot_of_running_threads_is_the_state_after_every_byte_fed() {
        let batch: Batch = std::sync::Arc::new(vec![bytes::Bytes::from(vec![3u8; 300_000])]);
        let mut hashing: Hashing = HashState::default().into();
        hashing.feed(&batch).await;
        let snapshot = hashing.snapshot().await.unwrap();
        hashing.feed(&batch).await;
        let whole = hashing.finish().await.unwrap();
        assert_eq!(snapshot.finish(), hashed(&[&[3u8; 300_000]]).finish());
        assert_eq!(
            whole.finish(),
            hashed(&[&[3u8; 300_000], &[3u8; 300_000]]).finish()
        );
    }
}
