//! The benchmark's tus 1.0 client: one code path for Broker and for the peer tus servers, so they are
//! measured through the same client. It streams the file from disk (no chunk is held in memory).

use anyhow::{bail, Context as _};
use reqwest::{Method, RequestBuilder, Url};
use std::path::Path;
use std::time::{Duration, Instant};

/// Where uploads are created, and how requests are authenticated.
#[derive(Clone)]
pub struct TusEndpoint {
    pub http: reqwest::Client,
    /// The URL a creation POST goes to (Broker: the transfer's tus URL; a peer: its collection).
    pub creation_url: Url,
    pub bearer: Option<String>,
}

/// How a file is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One upload, one PATCH with the whole file.
    WholePatch,
    /// One upload, PATCHes of this many bytes.
    Chunked(u64),
    /// This many partial uploads of contiguous ranges sent concurrently (each as one PATCH), joined by
    /// a final upload (the concatenation extension).
    Parallel(usize),
}

impl TusEndpoint {
    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let builder = self
            .http
            .request(method, url)
            .header("tus-resumable", "1.0.0");
        match &self.bearer {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    /// Creates an upload (a partial one for concatenation); returns its URL.
    async fn create(&self, length: u64, partial: bool) -> anyhow::Result<Url> {
        let mut request = self
            .request(Method::POST, self.creation_url.clone())
            .header("upload-length", length);
        if partial {
            request = request.header("upload-concat", "partial");
        }
        self.created(request.send().await?, "tus creation").await
    }

    /// The URL of the upload a creation (or final) POST made: 201 with a `Location`.
    async fn created(&self, response: reqwest::Response, what: &str) -> anyhow::Result<Url> {
        if response.status().as_u16() != 201 {
            bail!(
                "{what} answered {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .with_context(|| format!("{what} answered without a Location"))?;
        Ok(self.creation_url.join(location)?)
    }

    /// PATCHes bytes `start..start + len` of the file to the upload at `url` (offsets from 0), in
    /// requests of at most `chunk` bytes.
    async fn send_range(
        &self,
        url: &Url,
        path: &Path,
        start: u64,
        len: u64,
        chunk: u64,
    ) -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut offset = 0u64;
        while offset < len {
            let n = chunk.min(len - offset);
            let mut file = tokio::fs::File::open(path).await?;
            file.seek(std::io::SeekFrom::Start(start + offset)).await?;
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
                file.take(n),
                1 << 20,
            ));
            let response = self
                .request(Method::PATCH, url.clone())
                .header("content-type", "application/offset+octet-stream")
                .header("upload-offset", offset)
                .header("content-length", n)
                .body(body)
                .send()
                .await?;
            if response.status().as_u16() != 204 {
                bail!(
                    "tus PATCH at {offset} answered {}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                );
            }
            offset += n;
        }
        Ok(())
    }

    /// Uploads the file; returns the time from the first request until the last one was answered, and
    /// the URL of the (final) upload.
    pub async fn upload(
        &self,
        path: &Path,
        size: u64,
        mode: Mode,
    ) -> anyhow::Result<(Duration, Url)> {
        let started = Instant::now();
        let url = match mode {
            Mode::WholePatch | Mode::Chunked(_) => {
                let chunk = match mode {
                    Mode::Chunked(c) => c.max(1),
                    _ => size.max(1),
                };
                let url = self.create(size, false).await?;
                self.send_range(&url, path, 0, size, chunk).await?;
                url
            }
            Mode::Parallel(parts) => {
                let ranges = broker_protocol::size::split_ranges(size, parts as u64);
                let sends = ranges.iter().map(|&(first, len)| async move {
                    let url = self.create(len, true).await?;
                    self.send_range(&url, path, first, len, len).await?;
                    anyhow::Ok(url)
                });
                let urls = futures::future::try_join_all(sends).await?;
                let list: Vec<&str> = urls.iter().map(|u| u.path()).collect();
                let response = self
                    .request(Method::POST, self.creation_url.clone())
                    .header("upload-concat", format!("final;{}", list.join(" ")))
                    .send()
                    .await?;
                self.created(response, "the final (concatenation) POST")
                    .await?
            }
        };
        Ok((started.elapsed(), url))
    }

    /// Whether the server offers a tus extension (from its OPTIONS answer).
    pub async fn offers(&self, extension: &str) -> anyhow::Result<bool> {
        let response = self
            .request(Method::OPTIONS, self.creation_url.clone())
            .send()
            .await?;
        Ok(response
            .headers()
            .get("tus-extension")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|list| list.split(',').any(|e| e.trim() == extension)))
    }
}
