//! The benchmark's tus uploads go through `broker_protocol::tus::TusClient`, the client the `broker`
//! command-line tool ships, for Broker and for the peer tus servers alike: what is measured is the
//! client users run, and every server gets the same one.

use anyhow::Context as _;
use broker_protocol::client::BrokerClient;
use broker_protocol::tus::TusClient;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// Where uploads are created (Broker: the transfer's tus URL; a peer: its collection), and the client.
pub struct TusEndpoint {
    pub client: TusClient,
    pub creation_url: String,
}

impl TusEndpoint {
    /// `server` carries the connection pool and the bearer token (none for a peer).
    pub fn new(server: &BrokerClient, creation_url: String) -> anyhow::Result<TusEndpoint> {
        Ok(TusEndpoint {
            client: TusClient::new(server)?,
            creation_url,
        })
    }

    /// Uploads the file; returns the time from the first request until the last one was answered, and
    /// the URL of the upload (of the first part, for a concatenation).
    pub async fn upload(
        &self,
        path: &Path,
        size: u64,
        mode: Mode,
    ) -> anyhow::Result<(Duration, String)> {
        let started = Instant::now();
        let url = match mode {
            Mode::WholePatch | Mode::Chunked(_) => {
                let chunk = match mode {
                    Mode::Chunked(c) => c,
                    _ => size,
                };
                let url = self.client.create(&self.creation_url, size, false).await?;
                self.client
                    .upload_range(&url, path, 0, size, 0, chunk)
                    .await?;
                url
            }
            Mode::Parallel(parts) => {
                let ranges = broker_protocol::size::split_ranges(size, parts as u64);
                // Parts are created in file order (as `broker send` and tus-js-client issue them), so
                // the broker can hash them in order while they stream; then they are sent at once.
                let mut urls = Vec::with_capacity(ranges.len());
                for &(_, len) in &ranges {
                    urls.push(self.client.create(&self.creation_url, len, true).await?);
                }
                let sends = ranges
                    .iter()
                    .zip(&urls)
                    .map(|(&(start, len), url)| async move {
                        self.client
                            .upload_range(url, path, start, len, 0, len)
                            .await
                    });
                futures::future::try_join_all(sends).await?;
                self.client
                    .concatenate(&self.creation_url, &urls)
                    .await
                    .context("the final (concatenation) POST")?;
                urls.into_iter().next().unwrap_or_default()
            }
        };
        Ok((started.elapsed(), url))
    }

    /// Whether the server offers a tus extension (from its OPTIONS answer).
    pub async fn offers(&self, extension: &str) -> anyhow::Result<bool> {
        let response = reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, &self.creation_url)
            .send()
            .await?;
        Ok(response
            .headers()
            .get("tus-extension")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|list| list.split(',').any(|e| e.trim() == extension)))
    }
}
