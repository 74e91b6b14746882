//! Files on the local disk, under `<data_dir>/blobs/<first two hex digits>/<transfer id>`. Paths derive
//! from ids only, never from file names.
//!
//! Writes go through one blocking thread per upload that receives whole batches; the file is synced once,
//! at commit. Reads use large positioned reads on a blocking thread, handed on as `Bytes`.

use async_trait::async_trait;
use broker_actors::ports::{Batch, BlobError, BlobStore, BlobWriter, ByteStream};
use broker_actors::upload::{lower_thread_priority, spawn_thread};
use bytes::{Bytes, BytesMut};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Bytes per read on downloads: large reads keep syscalls few without holding much memory.
const READ_CHUNK: usize = 1 << 20;
/// Reads queued ahead of the socket per download (so at most this many MiB buffered per download).
const READS_IN_FLIGHT: usize = 4;
/// Batches queued ahead of the disk per upload.
const WRITE_QUEUE: usize = 4;

pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    pub fn open(data_dir: &Path) -> std::io::Result<LocalBlobStore> {
        let root = data_dir.join("blobs");
        std::fs::create_dir_all(&root)?;
        Ok(LocalBlobStore { root })
    }

    fn path(&self, id: Uuid) -> PathBuf {
        let name = id.simple().to_string();
        self.root.join(&name[..2]).join(name)
    }

    /// A part of a transfer's file; `part` is a 32-hex id chosen by the server.
    fn part_path(&self, id: Uuid, part: &str) -> PathBuf {
        part_of(&self.path(id), part)
    }

    /// The list of parts a concatenated file is made of.
    fn manifest_path(&self, id: Uuid) -> PathBuf {
        let mut path = self.path(id);
        path.set_extension("parts");
        path
    }
}

/// The path of a part of the file at `file`.
fn part_of(file: &Path, part: &str) -> PathBuf {
    file.with_extension(format!("part-{part}"))
}

/// Opens a file for positioned reads, mapping a missing file to `NotFound`.
fn open_for_read(path: PathBuf) -> Result<std::fs::File, BlobError> {
    std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BlobError::NotFound,
        _ => BlobError::Io(e),
    })
}

/// Creates a blob directory if needed; a new directory's entry is synced so it survives a power loss.
fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        sync_dir(dir.parent().expect("blob directories have a parent"))?;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn create(&self, id: Uuid) -> Result<Box<dyn BlobWriter>, BlobError> {
        let path = self.path(id);
        let file =
            tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, PathBuf)> {
                let dir = path.parent().expect("blob paths have a parent");
                ensure_dir(dir)?;
                // Unlink first: a writer of an abandoned earlier attempt may still hold the old inode.
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                Ok((file, dir.to_path_buf()))
            })
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))??;
        Ok(start_writer(file.0, file.1, 0))
    }

    async fn open_append(
        &self,
        id: Uuid,
        part: Option<&str>,
        offset: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        let path = match part {
            None if offset == 0 => return self.create(id).await,
            None => self.path(id),
            Some(part) => self.part_path(id, part),
        };
        let file =
            tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, PathBuf)> {
                use std::io::{Seek, SeekFrom};
                if offset == 0 {
                    ensure_dir(path.parent().expect("blob paths have a parent"))?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(offset == 0)
                    .truncate(false)
                    .open(&path)?;
                if file.metadata()?.len() < offset {
                    return Err(std::io::Error::other(format!(
                        "the stored file is shorter than the durable offset {offset}"
                    )));
                }
                file.set_len(offset)?;
                file.seek(SeekFrom::Start(offset))?;
                Ok((
                    file,
                    path.parent()
                        .expect("blob paths have a parent")
                        .to_path_buf(),
                ))
            })
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))??;
        Ok(start_writer(file.0, file.1, offset))
    }

    async fn read(&self, id: Uuid, start: u64, len: u64) -> Result<ByteStream, BlobError> {
        let (path, manifest) = (self.path(id), self.manifest_path(id));
        // Open every segment (the parts a manifest lists, else the file) with its length, then stream
        // the slices of those that overlap the range.
        let files =
            tokio::task::spawn_blocking(move || -> Result<Vec<(std::fs::File, u64)>, BlobError> {
                let parts: Vec<PathBuf> = match std::fs::read_to_string(&manifest) {
                    Ok(text) => text
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(|p| part_of(&path, p))
                        .collect(),
                    Err(_) => vec![path],
                };
                parts
                    .into_iter()
                    .map(|p| {
                        let file = open_for_read(p)?;
                        let size = file.metadata()?.len();
                        Ok((file, size))
                    })
                    .collect()
            })
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))??;
        let mut streams = Vec::new();
        let (end, mut segment_start) = (start + len, 0u64);
        for (file, size) in files {
            let segment_end = segment_start + size;
            let (from, to) = (start.max(segment_start), end.min(segment_end));
            if from < to {
                streams.push(read_range(
                    std::sync::Arc::new(file),
                    from - segment_start,
                    to - from,
                ));
            }
            segment_start = segment_end;
        }
        Ok(Box::pin(futures::StreamExt::flatten(
            futures::stream::iter(streams),
        )))
    }

    async fn concat(&self, id: Uuid, parts: &[String]) -> Result<(), BlobError> {
        let (path, manifest) = (self.path(id), self.manifest_path(id));
        let text: String = parts.iter().map(|p| format!("{p}\n")).collect();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let temp = manifest.with_extension("parts-new");
            let mut f = std::fs::File::create(&temp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&temp, &manifest)?;
            remove_if_present(&path)?;
            sync_dir(manifest.parent().expect("blob paths have a parent"))
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
        .map_err(BlobError::Io)
    }

    async fn delete_part(&self, id: Uuid, part: &str) -> Result<(), BlobError> {
        let path = self.part_path(id, part);
        tokio::task::spawn_blocking(move || remove_if_present(&path))
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
            .map_err(BlobError::Io)
    }

    async fn delete(&self, id: Uuid) -> Result<(), BlobError> {
        let path = self.path(id);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            remove_if_present(&path)?;
            // Parts and the manifest share the file's name as their stem.
            let stem = path
                .file_name()
                .expect("blob paths have a name")
                .to_string_lossy()
                .into_owned();
            let dir = path.parent().expect("blob paths have a parent");
            for entry in std::fs::read_dir(dir)? {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{stem}.")) {
                    remove_if_present(&dir.join(name))?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
        .map_err(BlobError::Io)
    }

    async fn available_space(&self) -> Result<Option<u64>, BlobError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || free_bytes(&root).map(Some))
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
            .map_err(BlobError::Io)
    }

    async fn check(&self) -> Result<(), BlobError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || std::fs::metadata(&root).map(|_| ()))
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
            .map_err(BlobError::Io)
    }
}

fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a valid out-pointer.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// What the writer thread is asked to do, in order.
enum WriteCommand {
    Append(Batch),
    /// Make everything appended so far durable, then answer.
    Sync(tokio::sync::oneshot::Sender<std::io::Result<()>>),
}

struct LocalWriter {
    tx: Option<mpsc::Sender<WriteCommand>>,
    writer: tokio::sync::oneshot::Receiver<std::io::Result<u64>>,
}

/// Writeback is started for every window of this size as soon as it is written; the window before it is
/// waited for and then dropped from the page cache. Dirty pages stay bounded, the kernel never throttles
/// the stream in bursts, the final sync has little left to do, and a multi-gigabyte upload does not push
/// everything else out of the cache (its clean pages are recycled at once, which also costs the writer
/// far less CPU than growing the cache: measured ~0.70 -> ~0.88 of the MD5 ceiling on 2 cores).
/// Small windows also keep each resumable-upload PATCH's final sync short (most of its bytes are on
/// their way to disk before its body ends: 8 MiB PATCHes went from ~0.55 to ~0.7 of a single binary
/// upload). Files smaller than two windows stay cached.
const WRITEBACK_WINDOW: u64 = 2 << 20;

/// Starts the writer thread of a file positioned at `base` (where this writer's bytes begin).
fn start_writer(file: std::fs::File, dir: PathBuf, base: u64) -> Box<dyn BlobWriter> {
    let (tx, rx) = mpsc::channel::<WriteCommand>(WRITE_QUEUE);
    let writer = spawn_thread("blob-writer", move || {
        lower_thread_priority();
        write_batches(file, &dir, base, rx)
    });
    Box::new(LocalWriter {
        tx: Some(tx),
        writer,
    })
}

fn write_batches(
    file: std::fs::File,
    dir: &Path,
    base: u64,
    mut rx: mpsc::Receiver<WriteCommand>,
) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd;
    let mut file = file;
    let mut written = 0u64;
    let mut flushed = 0u64;
    while let Some(command) = rx.blocking_recv() {
        let batch = match command {
            WriteCommand::Append(batch) => batch,
            WriteCommand::Sync(reply) => {
                let _ = reply.send(file.sync_data());
                continue;
            }
        };
        written += write_all_vectored(&mut file, &batch)?;
        while written - flushed >= WRITEBACK_WINDOW {
            let fd = file.as_raw_fd();
            // SAFETY: fd is an open file descriptor owned by `file`; the ranges lie within it.
            unsafe {
                libc::sync_file_range(
                    fd,
                    (base + flushed) as i64,
                    WRITEBACK_WINDOW as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
                if flushed >= WRITEBACK_WINDOW {
                    libc::sync_file_range(
                        fd,
                        (base + flushed - WRITEBACK_WINDOW) as i64,
                        WRITEBACK_WINDOW as i64,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    );
                    libc::posix_fadvise(
                        fd,
                        (base + flushed - WRITEBACK_WINDOW) as i64,
                        WRITEBACK_WINDOW as i64,
                        libc::POSIX_FADV_DONTNEED,
                    );
                }
            }
            flushed += WRITEBACK_WINDOW;
        }
    }
    file.sync_data()?;
    sync_dir(dir)?;
    Ok(written)
}

/// Writes a batch of chunks with as few syscalls as the kernel allows (one `writev` per ~1024 chunks).
fn write_all_vectored(file: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<u64> {
    let mut index = 0;
    let mut offset = 0;
    let mut total = 0u64;
    loop {
        // Empty chunks (an empty form field, say) have nothing to write: a writev of only them would
        // write zero bytes.
        while index < chunks.len() && chunks[index].len() == offset {
            index += 1;
            offset = 0;
        }
        if index == chunks.len() {
            break;
        }
        let slices: Vec<std::io::IoSlice<'_>> = std::iter::once(&chunks[index][offset..])
            .chain(chunks[index + 1..].iter().map(|c| &c[..]))
            .take(1024)
            .map(std::io::IoSlice::new)
            .collect();
        let mut n = match file.write_vectored(&slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        while n > 0 {
            let left = chunks[index].len() - offset;
            if n >= left {
                n -= left;
                index += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
    }
    Ok(total)
}

impl LocalWriter {
    async fn writer_error(&mut self) -> BlobError {
        self.tx = None;
        match (&mut self.writer).await {
            Ok(Err(e)) => BlobError::Io(e),
            Ok(Ok(_)) => BlobError::Io(std::io::Error::other("the writer stopped early")),
            Err(_) => BlobError::Io(std::io::Error::other("the writer thread failed")),
        }
    }
}

#[async_trait]
impl BlobWriter for LocalWriter {
    async fn append(&mut self, batch: Batch) -> Result<(), BlobError> {
        let sent = match &self.tx {
            Some(tx) => tx.send(WriteCommand::Append(batch)).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.writer_error().await)
        }
    }

    async fn sync(&mut self) -> Result<(), BlobError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = match &self.tx {
            Some(tx) => tx.send(WriteCommand::Sync(reply)).await.is_ok(),
            None => false,
        };
        match (sent, answer.await) {
            (true, Ok(result)) => result.map_err(BlobError::Io),
            _ => Err(self.writer_error().await),
        }
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, BlobError> {
        self.tx = None;
        match (&mut self.writer).await {
            Ok(result) => result.map_err(BlobError::Io),
            Err(_) => Err(BlobError::Io(std::io::Error::other(
                "the writer thread failed",
            ))),
        }
    }
}

type PendingRead = tokio::task::JoinHandle<std::io::Result<Bytes>>;

fn read_chunk_at(file: std::sync::Arc<std::fs::File>, offset: u64, end: u64) -> PendingRead {
    tokio::task::spawn_blocking(move || {
        let mut buf = BytesMut::zeroed(((end - offset) as usize).min(READ_CHUNK));
        file.read_exact_at(&mut buf, offset)?;
        Ok(buf.freeze())
    })
}

/// Streams `[start, start + len)` in large positioned reads, up to [`READS_IN_FLIGHT`] ahead of the
/// consumer, so a file that is not in the page cache streams at the disk's parallel speed. A blocking
/// thread is held only for a read itself, so slow clients cannot exhaust the blocking pool.
fn read_range(
    file: std::sync::Arc<std::fs::File>,
    start: u64,
    len: u64,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    use std::collections::VecDeque;
    use std::os::fd::AsRawFd;
    let end = start + len;
    // SAFETY: the descriptor is open for the lifetime of `file`; advice has no memory effects.
    unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            start as i64,
            len as i64,
            libc::POSIX_FADV_SEQUENTIAL,
        );
    }
    // State: the file, where the next read to issue starts, and the reads in flight (in order).
    let state = (file, start, VecDeque::<PendingRead>::new());
    futures::stream::unfold(state, move |(file, mut next, mut in_flight)| async move {
        while in_flight.len() < READS_IN_FLIGHT && next < end {
            in_flight.push_back(read_chunk_at(file.clone(), next, end));
            next = (next + READ_CHUNK as u64).min(end);
        }
        let chunk = match in_flight.pop_front()?.await {
            Ok(read) => read,
            Err(e) => Err(std::io::Error::other(e)),
        };
        match chunk {
            Ok(bytes) => Some((Ok(bytes), (file, next, in_flight))),
            // Stop after reporting the error; reads still in flight are dropped.
            Err(e) => Some((Err(e), (file, end, VecDeque::new()))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vectored_batch_writes_every_chunk_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunks: Vec<Bytes> = (0..3000u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; (i % 7) as usize]))
            .collect();
        let n = write_all_vectored(&mut file, &chunks).unwrap();
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(n as usize, expected.len());
        assert_eq!(std::fs::read(&path).unwrap(), expected);
    }

    #[test]
    fn a_batch_of_empty_chunks_writes_nothing_and_does_not_fail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = std::fs::File::create(&path).unwrap();
        assert_eq!(write_all_vectored(&mut file, &[Bytes::new()]).unwrap(), 0);
        // More empty chunks than one writev takes, then data.
        let mut chunks = vec![Bytes::new(); 2500];
        chunks.push(Bytes::from_static(b"after"));
        assert_eq!(write_all_vectored(&mut file, &chunks).unwrap(), 5);
        assert_eq!(std::fs::read(&path).unwrap(), b"after");
    }
}
