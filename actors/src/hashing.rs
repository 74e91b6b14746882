//! MD5 and SHA-256 of an upload: the state carried from one request to the next, and the two threads
//! that hash its batches as they stream (see the upload module for the pipeline).
//!
//! MD5 is the critical path: SHA-256 and the disk writer have slack, so their threads run at a lower
//! scheduling priority ([`lower_thread_priority`]). On a machine with few cores this keeps MD5 from being
//! preempted by work that can wait (measured on 2 cores: ~0.75 -> ~0.84 of the MD5 ceiling).

use crate::ports::{Batch, BlobError};
use crate::state::StoredFile;
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
    md5_tx: mpsc::Sender<Batch>,
    sha_tx: mpsc::Sender<Batch>,
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
        let _ = self.md5_tx.send(batch.clone()).await;
        let _ = self.sha_tx.send(batch.clone()).await;
        self.len += batch.iter().map(|b| b.len() as u64).sum::<u64>();
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

fn hash_all<D: sha2::Digest>(mut rx: mpsc::Receiver<Batch>, mut digest: D) -> D {
    while let Some(batch) = rx.blocking_recv() {
        for chunk in batch.iter() {
            digest.update(chunk);
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
