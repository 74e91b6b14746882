//! What the accept loop and each connection's watchdog know of a connection: its phase (reading a
//! head, idle, busy), when that phase began and whether writes to it stall; the registry of open
//! connections that picks which one to evict at the cap; and the wrappers (socket, response body)
//! that keep those facts up to date.

use axum::body::Body;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

/// Milliseconds since the server started: a cheap, shared, monotonic timestamp for connection states.
#[derive(Clone, Copy)]
pub(super) struct Epoch(Instant);

impl Epoch {
    pub(super) fn start() -> Epoch {
        Epoch(Instant::now())
    }
    pub(super) fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
    pub(super) fn at(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

/// One open connection as the accept loop and the connection's task see it.
pub(super) struct Connection {
    /// Requests being served, response bodies included.
    pub(super) in_flight: AtomicUsize,
    /// Bytes of a request head have arrived (or the connection is new) and no request is in flight.
    pub(super) reading_head: AtomicBool,
    /// When the current phase (reading a head, or idle) began, in [`Epoch`] milliseconds.
    pub(super) phase_since: AtomicU64,
    /// Since when a write to the client has made no progress ([`NOT_BLOCKED`] while writes go through).
    pub(super) write_blocked_since: AtomicU64,
    /// Asked to close (evicted, or timed out).
    pub(super) closing: AtomicBool,
    /// Wakes the connection's task when it is asked to close.
    pub(super) wake: Notify,
}

pub(super) const NOT_BLOCKED: u64 = u64::MAX;

impl Connection {
    pub(super) fn new(now_ms: u64) -> Connection {
        Connection {
            in_flight: AtomicUsize::new(0),
            reading_head: AtomicBool::new(true),
            phase_since: AtomicU64::new(now_ms),
            write_blocked_since: AtomicU64::new(NOT_BLOCKED),
            closing: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// What the connection is doing, for eviction and its timeouts.
    pub(super) fn phase(&self) -> Phase {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            Phase::Busy
        } else if self.reading_head.load(Ordering::Acquire) {
            Phase::ReadingHead(self.phase_since.load(Ordering::Acquire))
        } else {
            Phase::Idle(self.phase_since.load(Ordering::Acquire))
        }
    }

    pub(super) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Busy,
    ReadingHead(u64),
    Idle(u64),
}

/// The open connections, so a new one can evict the oldest evictable one when the cap is reached.
#[derive(Default)]
pub(super) struct Registry {
    next_id: AtomicU64,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    connections: HashMap<u64, Arc<Connection>>,
    /// Of those, asked to close and not gone yet.
    evicted: usize,
    /// The most open at once since memory was last handed back (see [`Registry::remove`]).
    peak: usize,
}

pub(super) enum Admission {
    Admitted(u64, Arc<Connection>),
    Refused,
}

/// Below this many connections at their peak a burst is not worth handing memory back for.
const BURST: usize = 256;

impl Registry {
    pub(super) fn admit(&self, max: usize, now_ms: u64) -> Admission {
        let mut open = self.open.lock().expect("connection registry");
        if open.connections.len() - open.evicted >= max {
            // Half-sent heads go first (oldest first), then idle keep-alive connections.
            let victim = open
                .connections
                .values()
                .filter(|c| !c.closing.load(Ordering::Acquire))
                .filter_map(|c| match c.phase() {
                    Phase::ReadingHead(since) => Some(((0u8, since), c)),
                    Phase::Idle(since) => Some(((1u8, since), c)),
                    Phase::Busy => None,
                })
                .min_by_key(|(key, _)| *key)
                .map(|(_, c)| c.clone());
            match victim {
                Some(c) => {
                    c.close();
                    open.evicted += 1;
                }
                None => return Admission::Refused,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::new(now_ms));
        open.connections.insert(id, connection.clone());
        open.peak = open.peak.max(open.connections.len());
        Admission::Admitted(id, connection)
    }

    /// Forgets a closed connection. Returns true when a burst of connections has mostly gone (a
    /// quarter of its peak is left): the time to hand the memory they held back to the system.
    pub(super) fn remove(&self, id: u64) -> bool {
        let mut open = self.open.lock().expect("connection registry");
        if let Some(c) = open.connections.remove(&id) {
            if c.closing.load(Ordering::Acquire) {
                open.evicted -= 1;
            }
        }
        let left = open.connections.len();
        if open.peak >= BURST && left <= open.peak / 4 {
            open.peak = left;
            return true;
        }
        false
    }

    pub(super) fn len(&self) -> usize {
        self.open
            .lock()
            .expect("connection registry")
            .connections
            .len()
    }
}

/// The socket, noting the first bytes of a request head that arrive while no request is in flight.
pub(super) struct WatchedIo {
    pub(super) inner: TcpStream,
    pub(super) connection: Arc<Connection>,
    pub(super) epoch: Epoch,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let c = &self.connection;
            if c.in_flight.load(Ordering::Acquire) == 0 && !c.reading_head.load(Ordering::Acquire) {
                c.phase_since.store(self.epoch.now_ms(), Ordering::Release);
                c.reading_head.store(true, Ordering::Release);
            }
        }
        polled
    }
}

impl WatchedIo {
    /// Notes whether a write went through or found the client's socket full.
    fn note_write<T>(&self, polled: &Poll<std::io::Result<T>>) {
        let blocked = &self.connection.write_blocked_since;
        match polled {
            Poll::Pending => {
                if blocked.load(Ordering::Relaxed) == NOT_BLOCKED {
                    blocked.store(self.epoch.now_ms(), Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => {
                if blocked.load(Ordering::Relaxed) != NOT_BLOCKED {
                    blocked.store(NOT_BLOCKED, Ordering::Relaxed);
                }
            }
        }
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&polled);
        polled
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a request in flight from its head until its response body is sent (or dropped).
pub(super) struct InFlight {
    pub(super) connection: Arc<Connection>,
    pub(super) epoch: Epoch,
}

impl InFlight {
    pub(super) fn start(connection: Arc<Connection>, epoch: Epoch) -> InFlight {
        connection.reading_head.store(false, Ordering::Release);
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight { connection, epoch }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.connection;
        c.phase_since.store(self.epoch.now_ms(), Ordering::Release);
        c.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request counted in flight until it is done.
pub(super) struct CountedBody {
    pub(super) inner: Body,
    pub(super) _in_flight: InFlight,
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(registry: &Registry, max: usize, now_ms: u64) -> Arc<Connection> {
        match registry.admit(max, now_ms) {
            Admission::Admitted(_, c) => c,
            Admission::Refused => panic!("refused"),
        }
    }

    #[test]
    fn a_burst_that_has_mostly_closed_asks_once_for_its_memory_to_be_handed_back() {
        let registry = Registry::default();
        let ids: Vec<u64> = (0..1000)
            .map(|i| match registry.admit(10_000, i) {
                Admission::Admitted(id, _) => id,
                Admission::Refused => panic!("refused"),
            })
            .collect();
        let asks: Vec<bool> = ids.iter().map(|id| registry.remove(*id)).collect();
        // At 250 left (a quarter of 1,000), and not again for the small rest.
        assert_eq!(asks.iter().filter(|a| **a).count(), 1);
        assert!(asks[749], "asked once 750 of 1,000 had gone");
    }

    fn make_idle(c: &Connection, since: u64) {
        c.reading_head.store(false, Ordering::Release);
        c.phase_since.store(since, Ordering::Release);
    }

    #[test]
    fn at_the_cap_a_half_sent_head_is_evicted_before_an_idle_connection_and_busy_ones_never() {
        let registry = Registry::default();
        let idle = admitted(&registry, 3, 0);
        make_idle(&idle, 0);
        let busy = admitted(&registry, 3, 1);
        busy.in_flight.store(1, Ordering::Release);
        let head = admitted(&registry, 3, 2);
        let fresh = admitted(&registry, 3, 3);
        assert!(
            head.closing.load(Ordering::Acquire),
            "the half-sent head goes first"
        );
        assert!(!idle.closing.load(Ordering::Acquire));
        make_idle(&fresh, 3);
        admitted(&registry, 3, 4);
        assert!(
            idle.closing.load(Ordering::Acquire),
            "then the oldest idle connection"
        );
        assert!(!fresh.closing.load(Ordering::Acquire));
        assert!(
            !busy.closing.load(Ordering::Acquire),
            "a busy connection is never evicted"
        );
    }

    #[test]
    fn at_the_cap_with_every_connection_busy_a_new_one_is_refused() {
        let registry = Registry::default();
        for i in 0..2 {
            let Admission::Admitted(_, c) = registry.admit(2, i) else {
                panic!()
            };
            c.in_flight.store(1, Ordering::Release);
        }
        assert!(matches!(registry.admit(2, 5), Admission::Refused));
    }
}
