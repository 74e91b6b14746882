//! The HTTP side of the metrics: requests and their latency by route, upload and download bytes and
//! throughput (counted as the bodies stream, without touching them), and the `/metrics` endpoint.

use crate::http::app::{bearer_token, App};
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// Bodies shorter than this are left out of the throughput histograms (their rate says nothing).
const THROUGHPUT_MIN_BYTES: u64 = 1 << 20;

#[derive(Clone, Copy)]
enum Flow {
    Upload,
    Download,
}

/// A body that counts the bytes passing through it and records them when it is dropped.
struct Counted {
    inner: Body,
    flow: Flow,
    bytes: u64,
    started: Instant,
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes += data.len() as u64;
            }
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let (total, rate) = match self.flow {
            Flow::Upload => (
                "broker_upload_bytes_total",
                "broker_upload_throughput_bytes_per_second",
            ),
            Flow::Download => (
                "broker_download_bytes_total",
                "broker_download_throughput_bytes_per_second",
            ),
        };
        metrics::counter!(total).increment(self.bytes);
        let secs = self.started.elapsed().as_secs_f64();
        if self.bytes >= THROUGHPUT_MIN_BYTES && secs > 0.0 {
            metrics::histogram!(rate).record(self.bytes as f64 / secs);
        }
    }
}

fn counted(body: Body, flow: Flow) -> Body {
    Body::new(Counted {
        inner: body,
        flow,
        bytes: 0,
        started: Instant::now(),
    })
}

/// A method as a label without allocating (any method outside the standard ones is `other`).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Records every request by its route (the matched pattern, never the raw path: ids would make
/// unbounded series), and counts upload and download bodies.
pub async fn observe(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let method = method_label(request.method());
    let upload = route.contains("/upload") && (method == "POST" || method == "PATCH");
    let download = route.ends_with("/download") && method == "GET";
    let request = if upload {
        request.map(|b| counted(b, Flow::Upload))
    } else {
        request
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!("broker_http_request_duration_seconds", "route" => route.clone(), "method" => method)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("broker_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    if download && response.status().is_success() {
        response.map(|b| counted(b, Flow::Download))
    } else {
        response
    }
}

/// Compares without stopping at the first difference, so timing does not reveal the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Prometheus text exposition. Without `[metrics] token` only loopback peers are answered; with
/// one, `Authorization: Bearer <token>` is required.
#[utoipa::path(get, path = "/metrics", tag = "Health",
    responses((status = 200, body = String, content_type = "text/plain"), (status = 401), (status = 403)))]
pub async fn metrics(State(app): State<App>, request: Request) -> Response {
    match &app.config.metrics.token {
        Some(token) => {
            let given = bearer_token(request.headers()).unwrap_or("");
            if !same(given.as_bytes(), token.as_bytes()) {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                )
                    .into_response();
            }
        }
        None => {
            let peer = request.extensions().get::<ConnectInfo<SocketAddr>>();
            if !peer.is_some_and(|p| crate::util::is_loopback(p.0.ip())) {
                return StatusCode::FORBIDDEN.into_response();
            }
        }
    }
    let Some(handle) = crate::metrics::handle() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder is installed",
        )
            .into_response();
    };
    match app.broker.gauges().await {
        Ok(gauges) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            crate::metrics::render(handle, &gauges),
        )
            .into_response(),
        Err(e) => crate::http::error::ApiError::from(e).into_response(),
    }
}
