//! The accept loop and what bounds each connection: a cap on open connections, a header-read timeout,
//! a keep-alive idle timeout, a header size limit, and the minimum data rate on every request body.
//!
//! One hostile client must not take the server from the others. A connection that has not finished
//! its request head (a slowloris) or sits idle between requests is *evictable*: when the cap is
//! reached, a new connection closes the oldest evictable one, preferring half-sent heads. Only when
//! every connection is busy serving a request is a new one refused, at once, with a 503.

mod state;

use crate::http::body::MinRateBody;
use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use state::{
    Admission, Connection, CountedBody, Epoch, InFlight, Phase, Registry, WatchedIo, NOT_BLOCKED,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
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

/// The connection cap in force: the configured one, lowered (with a warning) to fit the file limit
/// beside the reserved descriptors and the `outgoing` connections deliveries may hold.
pub fn effective_max_connections(configured: usize, open_file_limit: u64, outgoing: u64) -> usize {
    let fits = open_file_limit
        .saturating_sub(RESERVED_FILES + outgoing)
        .max(16) as usize;
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

/// The per-connection service: bounds the request body, counts the request, calls the router.
#[derive(Clone)]
struct ConnectionService {
    router: Router,
    /// The peer, for handlers that answer loopback peers only (`ConnectInfo`).
    peer: std::net::SocketAddr,
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
        let mut request = request;
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
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

/// Refused connections whose request is read off (for a moment) so the 503 reaches the client; more
/// are closed at once.
const MAX_REFUSALS_DRAINING: usize = 64;

/// Answers 503 at once. Closing a socket with its request still unread would reset the connection
/// and discard the answer, so the request is read off (for at most a second) before the close.
fn refuse(stream: TcpStream, refusals: &Arc<tokio::sync::Semaphore>) {
    let _ = stream.try_write(&REFUSAL);
    let Ok(permit) = refusals.clone().try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        let _ = stream.shutdown().await;
        let mut sink = [0u8; 4096];
        let drain = async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
        drop(permit);
    });
}

/// Accepts connections until `shutdown`, then asks each to finish its current request and waits for
/// them all.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let limits = Arc::new(limits);
    let epoch = Epoch::start();
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
    let refusals = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSALS_DRAINING));
    loop {
        let (stream, peer) = tokio::select! {
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
                tracing::debug!("connection refused: every connection is busy");
                refuse(stream, &refusals);
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = ConnectionService {
            router: router.clone(),
            peer,
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
            if registry.remove(id) {
                hand_back_memory();
            }
        });
    }
    tasks.close();
    tasks.wait().await;
    tracing::debug!(open = registry.len(), "all connections closed");
}

/// Returns the memory freed after a burst of connections to the system. glibc keeps freed chunks in
/// its per-thread arenas (only the top of the main heap shrinks by itself), so without this RSS stays
/// at the burst's peak; `malloc_trim` releases the free pages of every arena.
fn hand_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::task::spawn_blocking(|| {
        // SAFETY: malloc_trim only walks the allocator's own free lists.
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(
            released,
            "handed freed memory back after a burst of connections"
        );
    });
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
    // Phases change without waking this task (a request starting or ending costs nothing here): it
    // looks again at least this often, and exactly at a half-sent head's deadline.
    let interval = limits
        .header_read_timeout
        .min(limits.keep_alive_timeout)
        .min(limits.send_timeout)
        / 4;
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    loop {
        if connection.closing.load(Ordering::Acquire) {
            // Evicted. The phase was read under the registry's lock, but a request may have begun
            // since: it is served to its end, then the connection closes.
            if connection.phase() != Phase::Busy {
                return;
            }
            if !shutting_down {
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
        }
        let now = Instant::now();
        let deadline = match connection.phase() {
            Phase::ReadingHead(since) => Some(epoch.at(since) + limits.header_read_timeout),
            Phase::Idle(since) => Some(epoch.at(since) + limits.keep_alive_timeout),
            Phase::Busy => match connection.write_blocked_since.load(Ordering::Relaxed) {
                NOT_BLOCKED => None,
                since => Some(epoch.at(since) + limits.send_timeout),
            },
        };
        if deadline.is_some_and(|d| now >= d) {
            tracing::debug!(phase = ?connection.phase(), "connection timed out");
            return;
        }
        let next_look = now + interval;
        timer
            .as_mut()
            .reset(deadline.map_or(next_look, |d| d.min(next_look)));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            // Asked to close (evicted).
            _ = connection.wake.notified() => {}
            () = timer.as_mut() => {}
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

    #[test]
    fn the_connection_cap_is_lowered_to_fit_the_open_file_limit() {
        assert_eq!(effective_max_connections(8192, 20_000, 512), 8192);
        assert_eq!(effective_max_connections(8192, 4096, 512), 4096 - 512 - 512);
    }
}
