//! Request bodies: the minimum data rate every body must keep (Kestrel's rule, applied to every
//! request, not only uploads), and reading a bounded JSON body.

use crate::http::error::ApiError;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use broker_protocol::ErrorCode;
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body arrived slower than {0} bytes/s")]
    TooSlow(u64),
    #[error("no data arrived for {0:?}")]
    Idle(Duration),
}

/// Cuts a body off once it averages less than `rate` bytes/s after `grace`, or when nothing arrives for
/// `idle`: a slow multi-hour stream that still moves is never cut; a stalled one is, so its connection
/// and upload slot free up.
pub struct MinRateBody<B> {
    inner: B,
    rate: u64,
    grace: Duration,
    idle: Duration,
    /// When the handler first read the body: the grace period runs from there (as Kestrel counts
    /// only while the app reads), so a handler that checks first and a client waiting for
    /// `100 Continue` are not cut off.
    start: Option<Instant>,
    received: u64,
    last_data: Instant,
    /// Armed at or before the real deadline; when it fires, the deadline is worked out again (data
    /// that arrived meanwhile moved it later), so frames never touch the timer. Made only when the
    /// body first has to wait: a small body that arrives with its head never needs one.
    timer: Option<Pin<Box<Sleep>>>,
    /// When a frame was last handed to the handler: until it asks again the body is not being read,
    /// and that time is not the client's (an upload held back on purpose waits without reading).
    handed_out: Option<Instant>,
    failed: bool,
}

impl<B> MinRateBody<B> {
    pub fn new(inner: B, rate: u64, grace: Duration, idle: Duration) -> Self {
        MinRateBody {
            inner,
            rate,
            grace,
            idle,
            start: None,
            received: 0,
            last_data: Instant::now(),
            timer: None,
            handed_out: None,
            failed: false,
        }
    }

    /// The moment the body is cut off if nothing more arrives, and why.
    fn deadline(&self) -> (Instant, BodyError) {
        let idle = self.last_data + self.idle;
        if self.rate == 0 {
            return (idle, BodyError::Idle(self.idle));
        }
        let allowed = Duration::from_secs_f64((self.received + 1) as f64 / self.rate as f64);
        let start = self.start.unwrap_or(self.last_data);
        let rate = start + allowed.max(self.grace);
        if rate < idle {
            (rate, BodyError::TooSlow(self.rate))
        } else {
            (idle, BodyError::Idle(self.idle))
        }
    }
}

impl<B> http_body::Body for MinRateBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        if self.start.is_none() {
            let now = Instant::now();
            self.start = Some(now);
            self.last_data = now;
        }
        if let Some(handed_out) = self.handed_out.take() {
            // Both clocks skip the time the handler spent away from the body.
            let away = handed_out.elapsed();
            self.start = self.start.map(|s| s + away);
            self.last_data += away;
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let now = Instant::now();
                if let Some(data) = frame.data_ref() {
                    if !data.is_empty() {
                        self.received += data.len() as u64;
                        self.last_data = now;
                    }
                }
                self.handed_out = Some(now);
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        if self.timer.is_none() {
            let (deadline, _) = self.deadline();
            self.timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
        loop {
            let (deadline, reason) = self.deadline();
            let timer = self.timer.as_mut().expect("made above");
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                self.failed = true;
                return Poll::Ready(Some(Err(Box::new(reason))));
            }
            timer.as_mut().reset(deadline);
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body read failed because the client was too slow (so the answer is 408).
fn is_too_slow(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<BodyError>().is_some() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Reads a JSON endpoint's body, at most `limit` bytes: a larger one is refused with 413 (before
/// reading when `Content-Length` says so), a body that trickles in with 408.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ErrorCode::RequestBodyTooLarge.into());
    }
    let mut stream = body.into_data_stream();
    let mut buffer = bytes::BytesMut::new();
    use futures::StreamExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if is_too_slow(&e) {
                ApiError::Code(ErrorCode::RequestBodyTooSlow)
            } else {
                ApiError::BadRequest(format!("The request body could not be read: {e}"))
            }
        })?;
        if buffer.len() + chunk.len() > limit {
            return Err(ErrorCode::RequestBodyTooLarge.into());
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn trickle(
        gap: Duration,
        chunks: usize,
    ) -> impl http_body::Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let stream = futures::stream::unfold(0, move |n| async move {
            if n == chunks {
                return None;
            }
            tokio::time::sleep(gap).await;
            Some((
                Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"x"))),
                n + 1,
            ))
        });
        http_body_util::StreamBody::new(Box::pin(stream))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_averaging_under_the_minimum_rate_after_the_grace_period_is_cut_off() {
        let body = MinRateBody::new(
            trickle(Duration::from_secs(2), 100),
            100,
            Duration::from_secs(10),
            Duration::from_secs(120),
        );
        let started = Instant::now();
        let error = body.collect().await.unwrap_err();
        assert!(error.downcast_ref::<BodyError>().is_some(), "{error}");
        let cut = started.elapsed();
        assert!(
            cut >= Duration::from_secs(10) && cut < Duration::from_secs(13),
            "{cut:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_grace_period_runs_from_the_first_read_not_from_the_request_head() {
        let body = MinRateBody::new(
            trickle(Duration::from_millis(10), 3),
            100,
            Duration::from_secs(10),
            Duration::from_secs(120),
        );
        // The handler takes longer than the grace period before it reads.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_handler_spends_away_from_the_body_is_not_held_against_the_client() {
        let mut body = MinRateBody::new(
            trickle(Duration::from_millis(10), 3),
            100,
            Duration::from_secs(10),
            Duration::from_secs(5),
        );
        assert!(body.frame().await.unwrap().is_ok());
        // The handler holds the upload back far past the idle timeout and the grace period.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(body.frame().await.unwrap().is_ok());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(body.frame().await.unwrap().is_ok());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_the_rate_is_never_cut() {
        // 1 byte every 5 ms is 200 B/s, above the 100 B/s minimum, for 20 s.
        let body = MinRateBody::new(
            trickle(Duration::from_millis(5), 4000),
            100,
            Duration::from_secs(10),
            Duration::from_secs(120),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(bytes.len(), 4000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_sending_is_cut_after_the_idle_timeout_whatever_its_average() {
        let body = MinRateBody::new(
            trickle(Duration::from_secs(30), 2),
            0,
            Duration::from_secs(10),
            Duration::from_secs(5),
        );
        let error = body.collect().await.unwrap_err();
        assert!(matches!(
            error.downcast_ref::<BodyError>(),
            Some(BodyError::Idle(_))
        ));
    }
}
