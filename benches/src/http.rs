//! Transfers as a client performs them; the same code fetches from Broker and from the nginx anchor.

use crate::MIB;
use anyhow::{bail, Context};
use broker_protocol::client::BrokerClient;
use futures::StreamExt;
use reqwest::RequestBuilder;
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Uploads a file as one streamed binary request; returns the time until the broker answered (the
/// answer comes after the file is verified and Published).
pub async fn upload_file(
    sender: &BrokerClient,
    id: Uuid,
    path: &Path,
    size: u64,
) -> anyhow::Result<Duration> {
    let file = tokio::fs::File::open(path).await?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = {
        let sent = sent.clone();
        tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).inspect(move |chunk| {
            if let Ok(c) = chunk {
                sent.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let body = reqwest::Body::wrap_stream(counted);
    let started = Instant::now();
    // Live progress on stderr, once a second.
    let progress = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tick.tick().await;
            let n = sent.load(std::sync::atomic::Ordering::Relaxed) as f64 / MIB;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "  {secs:5.1} s  {n:.0} of {:.0} MiB sent  ({:.0} MiB/s)",
                size as f64 / MIB,
                n / secs
            );
        }
    });
    let response = sender
        .request(reqwest::Method::POST, &format!("/filetransfer/{id}/upload"))
        .header("content-type", "application/octet-stream")
        .header("content-length", size)
        .body(body)
        .send()
        .await;
    let elapsed = started.elapsed();
    progress.abort();
    let response = response?;
    if !response.status().is_success() {
        bail!(
            "upload answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(elapsed)
}

/// Fetches `size` bytes, whole (`parallel` = 1) or as `parallel` concurrent Range requests, counting
/// the bytes received. `request(None)` asks for the whole resource, `request(Some((a, b)))` for a range.
pub async fn fetch<F>(request: F, size: u64, parallel: usize) -> anyhow::Result<(u64, Duration)>
where
    F: Fn(Option<(u64, u64)>) -> RequestBuilder,
{
    let started = Instant::now();
    let ranges: Vec<Option<(u64, u64)>> = if parallel <= 1 {
        vec![None]
    } else {
        broker_protocol::size::split_ranges(size, parallel as u64)
            .into_iter()
            .filter(|(_, len)| *len > 0)
            .map(|(start, len)| Some((start, start + len - 1)))
            .collect()
    };
    let transfers = ranges.into_iter().map(|range| {
        let builder = match range {
            Some((a, b)) => request(range).header("range", format!("bytes={a}-{b}")),
            None => request(None),
        };
        async move {
            let response = builder.send().await?;
            let expected = if range.is_some() { 206 } else { 200 };
            if response.status().as_u16() != expected {
                bail!("expected {expected}, got {}", response.status());
            }
            let mut stream = response.bytes_stream();
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                n += chunk.context("the download broke off")?.len() as u64;
            }
            anyhow::Ok(n)
        }
    });
    let received: u64 = futures::future::try_join_all(transfers)
        .await?
        .into_iter()
        .sum();
    Ok((received, started.elapsed()))
}

/// Fetches the whole transfer and returns its SHA-256 (to verify what was measured).
pub async fn download_sha256(recipient: &BrokerClient, id: Uuid) -> anyhow::Result<String> {
    use sha2::Digest;
    let mut stream = recipient.download(id, None).await?.bytes_stream();
    let mut sha = sha2::Sha256::new();
    while let Some(chunk) = stream.next().await {
        sha.update(&chunk?);
    }
    Ok(crate::payload::hex(&sha.finalize()))
}
