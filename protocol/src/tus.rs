//! A tus 1.0.0 client for Broker's resumable uploads (spec 4): creation (optionally of a
//! `Upload-Concat: partial` part), the offset by `HEAD`, `PATCH`es streamed from a local file, and the
//! `final` concatenation. Bytes are read from the file in small buffers as the request goes out, so
//! memory stays bounded whatever the chunk size.

use crate::client::{BrokerClient, ClientError};
use crate::rate::RateLimiter;
use crate::API_BASE;
use bytes::Bytes;
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use uuid::Uuid;

use crate::{TUS_OFFSET_CONTENT_TYPE as OFFSET_CONTENT_TYPE, TUS_VERSION};
/// How much of the file one read takes: what a PATCH holds in memory at a time.
const READ_BUFFER: u64 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TusError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot read {}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Protocol(String),
}

impl TusError {
    /// Worth another try after a pause: the network, the server being busy or restarting, or an offset
    /// that moved under us (a HEAD tells the truth).
    pub fn is_retryable(&self) -> bool {
        match self {
            TusError::Client(e @ ClientError::Status { status, .. }) => {
                e.is_retryable() || matches!(status, 409 | 423)
            }
            TusError::Client(e) => e.is_retryable(),
            TusError::File { .. } => false,
            TusError::Protocol(_) => true,
        }
    }
}

/// Called with the number of bytes each time a piece of a PATCH body goes out, and with a negative
/// number for bytes that went out but the server did not keep (they will be sent again), so the sum is
/// what the server holds plus what is in flight.
pub type ProgressFn = Arc<dyn Fn(i64) + Send + Sync>;

/// How often and how patiently an interrupted upload is resumed.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Failures in a row (without the offset moving) before giving up.
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    /// The pause after `failures` failures in a row.
    pub fn delay(&self, failures: u32) -> Duration {
        self.first_delay
            .saturating_mul(1 << failures.min(16))
            .min(self.max_delay)
    }
}

/// What `HEAD` says about an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOffset {
    pub offset: u64,
    pub length: Option<u64>,
}

#[derive(Clone)]
pub struct TusClient {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
    limiter: Option<Arc<RateLimiter>>,
    progress: Option<ProgressFn>,
    retry: RetryPolicy,
}

impl TusClient {
    /// A tus client for the same server, token and connection pool as `broker`.
    pub fn new(broker: &BrokerClient) -> Result<TusClient, TusError> {
        let base = Url::parse(&format!("{}/", broker.base_url()))
            .map_err(|e| TusError::Protocol(format!("invalid server URL: {e}")))?;
        Ok(TusClient {
            http: broker.http().clone(),
            base,
            token: broker.token().map(str::to_string),
            limiter: None,
            progress: None,
            retry: RetryPolicy::default(),
        })
    }

    /// Every PATCH body of this client (and its clones) passes through `limiter`.
    pub fn with_rate_limit(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The absolute URL of a transfer's upload, where uploads (and parts) are created.
    pub fn upload_url(&self, id: Uuid) -> String {
        format!(
            "{}{}/filetransfer/upload/tus/{id}",
            self.base.as_str().trim_end_matches('/'),
            &API_BASE
        )
    }

    /// `location` (absolute, or relative to `request_url`, as servers may answer) as an absolute URL.
    pub fn resolve(request_url: &str, location: &str) -> Result<String, TusError> {
        Url::parse(request_url)
            .and_then(|base| base.join(location))
            .map(String::from)
            .map_err(|e| TusError::Protocol(format!("invalid Location {location:?}: {e}")))
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let builder = self
            .http
            .request(method, url)
            .header("tus-resumable", TUS_VERSION);
        match &self.token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    async fn send(builder: RequestBuilder) -> Result<reqwest::Response, TusError> {
        let response = builder.send().await.map_err(ClientError::Http)?;
        Ok(BrokerClient::checked(response).await?)
    }

    /// `POST`: creates an upload of `length` bytes (a part of a later concatenation if `partial`) and
    /// returns its absolute URL.
    pub async fn create(
        &self,
        collection_url: &str,
        length: u64,
        partial: bool,
    ) -> Result<String, TusError> {
        let mut builder = self
            .request(Method::POST, collection_url)
            .header("upload-length", length);
        if partial {
            builder = builder.header("upload-concat", "partial");
        }
        let response = Self::send(builder).await?;
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| TusError::Protocol("the creation answer has no Location".into()))?;
        Self::resolve(collection_url, location)
    }

    /// `HEAD`: how many bytes of the upload the server holds.
    pub async fn offset(&self, upload_url: &str) -> Result<UploadOffset, TusError> {
        let response = Self::send(self.request(Method::HEAD, upload_url)).await?;
        let number = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Ok(UploadOffset {
            offset: number("upload-offset")
                .ok_or_else(|| TusError::Protocol("HEAD answered no Upload-Offset".into()))?,
            length: number("upload-length"),
        })
    }

    /// One `PATCH` at `upload_offset` carrying `len` bytes of `file` from `file_position`, adding the
    /// body bytes that went out to `streamed`; returns the server's new offset (which may fall short if
    /// the server cut the request off).
    async fn patch(
        &self,
        upload_url: &str,
        file: &Path,
        file_position: u64,
        upload_offset: u64,
        len: u64,
        streamed: &Arc<AtomicU64>,
    ) -> Result<u64, TusError> {
        let body = self
            .file_body(file, file_position, len, streamed.clone())
            .await?;
        let response = Self::send(
            self.request(Method::PATCH, upload_url)
                .header(reqwest::header::CONTENT_TYPE, OFFSET_CONTENT_TYPE)
                .header("upload-offset", upload_offset)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(body),
        )
        .await?;
        response
            .headers()
            .get("upload-offset")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| TusError::Protocol("PATCH answered no Upload-Offset".into()))
    }

    /// Sends an upload of `len` bytes (its whole length), whose byte 0 is `file`'s byte
    /// `file_position`, to the server that holds `offset` bytes of it: bytes `offset..len` go in
    /// PATCHes of `chunk_size`. After a network error or a busy server it pauses, asks the server for
    /// its offset and goes on from there (a bounded number of failures in a row). Returns the bytes the
    /// server acknowledged during this call.
    pub async fn upload_range(
        &self,
        upload_url: &str,
        file: &Path,
        file_position: u64,
        len: u64,
        offset: u64,
        chunk_size: u64,
    ) -> Result<u64, TusError> {
        let chunk_size = chunk_size.max(1);
        let start = offset;
        let mut known = Some(offset);
        let mut failures = 0u32;
        // Where a PATCH that failed started: its bytes were taken back from the progress until a HEAD
        // says how many the server kept.
        let mut unconfirmed_from = None;
        // An empty upload still needs one (empty) PATCH to complete.
        let mut empty_patch_due = len == 0;
        loop {
            let offset = match known {
                Some(o) => o,
                None => match self.offset(upload_url).await {
                    Ok(o) => {
                        if let Some(from) = unconfirmed_from.take() {
                            self.report(o.offset.saturating_sub(from) as i64);
                        }
                        o.offset
                    }
                    Err(e) => {
                        self.pause_or_fail(e, &mut failures).await?;
                        continue;
                    }
                },
            };
            if offset >= len && !empty_patch_due {
                // Counted from the server's offsets, so bytes it kept from a PATCH that failed on
                // our side count too.
                return Ok(offset.saturating_sub(start));
            }
            let n = chunk_size.min(len - offset);
            let streamed = Arc::new(AtomicU64::new(0));
            let outcome = self
                .patch(
                    upload_url,
                    file,
                    file_position + offset,
                    offset,
                    n,
                    &streamed,
                )
                .await;
            let streamed = streamed.load(Ordering::Relaxed);
            match &outcome {
                Ok(new_offset) => {
                    let not_kept = streamed.saturating_sub(new_offset.saturating_sub(offset));
                    self.report(-(not_kept as i64));
                }
                Err(_) => {
                    self.report(-(streamed as i64));
                    unconfirmed_from = Some(offset);
                }
            }
            match outcome {
                Ok(new_offset) if new_offset > offset || empty_patch_due => {
                    known = Some(new_offset);
                    failures = 0;
                    empty_patch_due = false;
                }
                Ok(new_offset) => {
                    known = Some(new_offset);
                    let stalled = TusError::Protocol(format!(
                        "the server kept no bytes of a PATCH at offset {offset}"
                    ));
                    self.pause_or_fail(stalled, &mut failures).await?;
                }
                Err(e) => {
                    self.pause_or_fail(e, &mut failures).await?;
                    known = None;
                }
            }
        }
    }

    fn report(&self, bytes: i64) {
        if let (Some(progress), false) = (&self.progress, bytes == 0) {
            progress(bytes);
        }
    }

    async fn pause_or_fail(&self, error: TusError, failures: &mut u32) -> Result<(), TusError> {
        if !error.is_retryable() || *failures >= self.retry.attempts {
            return Err(error);
        }
        tokio::time::sleep(self.retry.delay(*failures)).await;
        *failures += 1;
        Ok(())
    }

    /// `POST` with `Upload-Concat: final;…`: joins complete parts, in order, into the transfer's file.
    pub async fn concatenate(
        &self,
        collection_url: &str,
        part_urls: &[String],
    ) -> Result<(), TusError> {
        Self::send(
            self.request(Method::POST, collection_url)
                .header("upload-concat", format!("final;{}", part_urls.join(" "))),
        )
        .await?;
        Ok(())
    }

    /// A request body streaming `len` bytes of the file from `position`, read as it is sent.
    async fn file_body(
        &self,
        path: &Path,
        position: u64,
        len: u64,
        streamed: Arc<AtomicU64>,
    ) -> Result<reqwest::Body, TusError> {
        let read_failed = |source| TusError::File {
            path: path.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::open(path).await.map_err(read_failed)?;
        file.seek(std::io::SeekFrom::Start(position))
            .await
            .map_err(read_failed)?;
        let state = (file, len, self.clone(), streamed);
        let stream = futures::stream::try_unfold(
            state,
            |(mut file, remaining, client, streamed)| async move {
                if remaining == 0 {
                    return Ok(None);
                }
                let n = remaining.min(READ_BUFFER);
                if let Some(limiter) = &client.limiter {
                    limiter.acquire(n).await;
                }
                let mut buffer = vec![0u8; n as usize];
                file.read_exact(&mut buffer).await?;
                streamed.fetch_add(n, Ordering::Relaxed);
                client.report(n as i64);
                Ok::<_, std::io::Error>(Some((
                    Bytes::from(buffer),
                    (file, remaining - n, client, streamed),
                )))
            },
        );
        Ok(reqwest::Body::wrap_stream(stream))
    }
}

/// True if the answer says the server has no such upload (e.g. a part already concatenated).
pub fn is_not_found(error: &TusError) -> bool {
    matches!(error, TusError::Client(e) if e.status() == Some(StatusCode::NOT_FOUND.as_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_request_url() {
        let collection = "http://127.0.0.1:9/broker/api/v1/filetransfer/upload/tus/abc";
        assert_eq!(
            TusClient::resolve(
                collection,
                "/broker/api/v1/filetransfer/upload/tus/abc/partial/ff"
            )
            .unwrap(),
            "http://127.0.0.1:9/broker/api/v1/filetransfer/upload/tus/abc/partial/ff"
        );
        assert_eq!(
            TusClient::resolve(collection, "https://other.example/x").unwrap(),
            "https://other.example/x"
        );
        assert_eq!(
            TusClient::resolve(collection, "abc/partial/ff").unwrap(),
            "http://127.0.0.1:9/broker/api/v1/filetransfer/upload/tus/abc/partial/ff"
        );
    }

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(0), Duration::from_millis(500));
        assert_eq!(policy.delay(1), Duration::from_secs(1));
        assert_eq!(policy.delay(10), Duration::from_secs(15));
    }
}
