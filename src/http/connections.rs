//! The accept loop and what bounds each connection: a cap on open connections, a header-read timeout,
//! a keep-alive idle timeout, a header size limit, and the minimum data rate on every request body.
//!
//! One hostile client must not take the server from the others. A connection that has not finished
//! its request head (a slowloris) or sits idle between requests is *evictable*: when the cap is
//! reached, a new connection closes the oldest evictable one, preferring half-sent heads. Only when
//! every connection is busy serving a request is a new one refused, at once, with a 503.

use crate::http::body::MinRateBody;
use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// What bounds connections and request bodies (from `[server]`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    /// From accepting a connection (or from the first byte after an idle period) to a complete head.
    pub header_read_timeout: Duration,
    /// An idle connection between requests is closed after this long.
    pub keep_alive_timeout: Duration,
    pub max_header_bytes: usize,
    /// A response the client stops reading (its socket accepts nothing) is cut after this long.
    pub send_timeout: Duration,
    /// Bytes/s a request body must average after `min_data_rate_grace` (0: no minimum).
    pub min_data_rate: u64,
    pub min_data_rate_grace: Duration,
    /// A request body that sends nothing for this long is cut off.
    pub body_idle_timeout: Duration,
}

/// Raises the soft open-file limit to the hard limit and returns the soft limit now in force.
pub fn raise_open_file_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        limit.rlim_cur
    }
}

/// File descriptors kept back from connections: the database, blobs being written and read, the log.
pub const RESERVED_FILES: u64 = 512;

/// The connection cap in force: the configured one, lowered (with a warning) to fit the file limit.
pub fn effective_max_connections(configured: usize, open_file_limit: u64) -> usize {
    let fits = open_file_limit.saturating_sub(RESERVED_FILES).max(16) as usize;
    if configured > fits {
        tracing::warn!(
            configured,
            open_file_limit,
            using = fits,
            "server.max_connections does not fit the open-file limit; lowering it"
        );
        fits
    } else {
        configured
    }
}

/// Milliseconds since the server started: a cheap, shared, monotonic timestamp for connection states.
#[derive(Clone, Copy)]
struct Epoch(Instant);

impl Epoch {
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
    fn at(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

/// One open connection as the accept loop and the connection's task see it.
struct Connection {
    /// Requests being served, response bodies included.
    in_flight: AtomicUsize,
    /// Bytes of a request head have arrived (or the connection is new) and no request is in flight.
    reading_head: AtomicBool,
    /// When the current phase (reading a head, or idle) began, in [`Epoch`] milliseconds.
    phase_since: AtomicU64,
    /// Since when a write to the client has made no progress ([`NOT_BLOCKED`] while writes go through).
    write_blocked_since: AtomicU64,
    /// Asked to close (evicted, or timed out).
    closing: AtomicBool,
    /// Wakes the connection's task: a request ended, or it is asked to close.
    wake: Notify,
}

const NOT_BLOCKED: u64 = u64::MAX;

impl Connection {
    fn new(now_ms: u64) -> Connection {
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
    fn phase(&self) -> Phase {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            Phase::Busy
        } else if self.reading_head.load(Ordering::Acquire) {
            Phase::ReadingHead(self.phase_since.load(Ordering::Acquire))
        } else {
            Phase::Idle(self.phase_since.load(Ordering::Acquire))
        }
    }

    fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Busy,
    ReadingHead(u64),
    Idle(u64),
}

/// The open connections, so a new one can evict the oldest evictable one when the cap is reached.
#[derive(Default)]
struct Registry {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

enum Admission {
    Admitted(u64, Arc<Connection>),
    Refused,
}

impl Registry {
    fn admit(&self, max: usize, now_ms: u64) -> Admission {
        let mut open = self.open.lock().expect("connection registry");
        let live = open
            .values()
            .filter(|c| !c.closing.load(Ordering::Acquire))
            .count();
        if live >= max {
            // Half-sent heads go first (oldest first), then idle keep-alive connections.
            let victim = open
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
                Some(c) => c.close(),
                None => return Admission::Refused,
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection::new(now_ms));
        open.insert(id, connection.clone());
        Admission::Admitted(id, connection)
    }

    fn remove(&self, id: u64) {
        self.open.lock().expect("connection registry").remove(&id);
    }

    fn len(&self) -> usize {
        self.open.lock().expect("connection registry").len()
    }
}

/// The socket, noting the first bytes of a request head that arrive while no request is in flight.
struct WatchedIo {
    inner: TcpStream,
    connection: Arc<Connection>,
    epoch: Epoch,
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
struct InFlight {
    connection: Arc<Connection>,
    epoch: Epoch,
}

impl InFlight {
    fn start(connection: Arc<Connection>, epoch: Epoch) -> InFlight {
        connection.reading_head.store(false, Ordering::Release);
        if connection.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            // The watchdog's deadline was the head's; a busy connection is watched for stalled writes.
            connection.wake.notify_one();
        }
        InFlight { connection, epoch }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let c = &self.connection;
        c.phase_since.store(self.epoch.now_ms(), Ordering::Release);
        if c.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            c.wake.notify_one();
        }
    }
}

/// A response body that keeps its request counted in flight until it is done.
struct CountedBody {
    inner: Body,
    _in_flight: InFlight,
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

/// The per-connection service: bounds the request body, counts the request, calls the router.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    connection: Arc<Connection>,
    epoch: Epoch,
    limits: Arc<Limits>,
}

type ServiceFuture = Pin<
    Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>,
>;

impl hyper::service::Service<axum::http::Request<Incoming>> for ConnectionService {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = ServiceFuture;

    fn call(&self, request: axum::http::Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(self.connection.clone(), self.epoch);
        let limits = &self.limits;
        let request = request.map(|body| {
            Body::new(MinRateBody::new(
                body,
                limits.min_data_rate,
                limits.min_data_rate_grace,
                limits.body_idle_timeout,
            ))
        });
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(request).await?;
            Ok(response.map(|inner| {
                Body::new(CountedBody {
                    inner,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// The answer to a connection over the cap when none can be evicted; written without waiting.
static REFUSAL: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
    let problem = broker_protocol::ProblemDetails::for_code(
        broker_protocol::ErrorCode::TooManyConnections,
        String::new(),
    );
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    let mut response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    response
});

/// Accepts connections until `shutdown`, then asks each to finish its current request and waits for
/// them all.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let limits = Arc::new(limits);
    let epoch = Epoch(Instant::now());
    let registry = Arc::new(Registry::default());
    let tasks = TaskTracker::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // Our own watchdog times heads out (hyper's timer would also close idle keep-alive
        // connections at the same deadline).
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes)
        .keep_alive(true);
    let http = Arc::new(http);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: pause briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let (id, connection) = match registry.admit(limits.max_connections, epoch.now_ms()) {
            Admission::Admitted(id, c) => (id, c),
            Admission::Refused => {
                let _ = stream.try_write(&REFUSAL);
                tracing::debug!("connection refused: every connection is busy");
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = ConnectionService {
            router: router.clone(),
            connection: connection.clone(),
            epoch,
            limits: limits.clone(),
        };
        let io = TokioIo::new(WatchedIo {
            inner: stream,
            connection: connection.clone(),
            epoch,
        });
        let http = http.clone();
        let (registry, limits, shutdown) = (registry.clone(), limits.clone(), shutdown.clone());
        tasks.spawn(async move {
            let conn = http.serve_connection(io, service);
            watch(conn, &connection, &limits, epoch, &shutdown).await;
            registry.remove(id);
        });
    }
    tasks.close();
    tasks.wait().await;
    tracing::debug!(open = registry.len(), "all connections closed");
}

type HttpConnection = hyper::server::conn::http1::Connection<TokioIo<WatchedIo>, ConnectionService>;

/// Drives one connection, closing it when its head or its idle period outlasts its timeout, when it is
/// evicted, or (gracefully, after the request in progress) at shutdown.
async fn watch(
    conn: HttpConnection,
    connection: &Connection,
    limits: &Limits,
    epoch: Epoch,
    shutdown: &CancellationToken,
) {
    tokio::pin!(conn);
    let mut shutting_down = false;
    loop {
        if connection.closing.load(Ordering::Acquire) {
            return;
        }
        let now = Instant::now();
        let deadline = match connection.phase() {
            Phase::ReadingHead(since) => epoch.at(since) + limits.header_read_timeout,
            Phase::Idle(since) => epoch.at(since) + limits.keep_alive_timeout,
            Phase::Busy => match connection.write_blocked_since.load(Ordering::Relaxed) {
                NOT_BLOCKED => {
                    // A write may block at any moment without waking us: look again in a while.
                    if shutting_down {
                        now + limits.send_timeout
                    } else {
                        now + limits.send_timeout / 4
                    }
                }
                since => epoch.at(since) + limits.send_timeout,
            },
        };
        if now >= deadline {
            tracing::debug!(phase = ?connection.phase(), "connection timed out");
            return;
        }
        let timer = tokio::time::sleep_until(deadline);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            // A request ended or the connection is asked to close: look again.
            _ = connection.wake.notified() => {}
            // The phase may have moved on meanwhile (its deadline with it): look again.
            () = timer => {}
            _ = shutdown.cancelled(), if !shutting_down => {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
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

    #[test]
    fn the_connection_cap_is_lowered_to_fit_the_open_file_limit() {
        assert_eq!(effective_max_connections(8192, 20_000), 8192);
        assert_eq!(effective_max_connections(8192, 4096), 4096 - 512);
    }
}
