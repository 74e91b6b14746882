//! Reads of a range: large positioned reads on blocking threads, a few ahead of the consumer.

use bytes::{Bytes, BytesMut};
use std::os::unix::fs::FileExt;

/// Bytes per read on downloads: large reads keep syscalls few without holding much memory.
const READ_CHUNK: usize = 1 << 20;
/// Reads queued ahead of the socket per download (so at most this many MiB buffered per download).
const READS_IN_FLIGHT: usize = 4;

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
pub(super) fn read_range(
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
