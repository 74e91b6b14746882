//! `broker fetch ID`: download a transfer's file with Range requests (optionally several at once) into
//! `FILE.part`, continue an interrupted download where its sidecar says, verify the SHA-256 and MD5,
//! then rename to FILE (and optionally confirm the download).

use super::digest::digest_file;
use super::part_file::{PartFile, RangeProgress, Sidecar};
use super::progress::Progress;
use super::{api_error, print_json, ClientArgs, TransferReport};
use anyhow::Context;
use broker_protocol::client::{BrokerClient, ClientError};
use broker_protocol::rate::RateLimiter;
use broker_protocol::size::{parse_positive_size, split_ranges};
use broker_protocol::tus::RetryPolicy;
use futures::StreamExt;
use reqwest::{header, Method, StatusCode};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use uuid::Uuid;

/// Ranges smaller than this are not worth a connection of their own.
const MIN_RANGE_SIZE: u64 = 1 << 20;
/// Written bytes are flushed and recorded in the sidecar at least this often.
const RECORD_EVERY: u64 = 256 << 10;
/// Times a download may start over because the file changed on the server.
const MAX_RESTARTS: u32 = 2;

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// The fileTransferId.
    pub id: Uuid,
    /// Where to save the file (default: the transfer's file name in the current directory).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Download this many ranges at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub parallel: u64,
    /// Confirm the download to the server once the file is saved and verified.
    #[arg(long)]
    pub confirm: bool,
    /// Replace FILE if it exists (by default an existing file is never overwritten).
    #[arg(long)]
    pub force: bool,
    /// Cap on the download rate over all ranges, in bytes per second (e.g. 10MiB).
    #[arg(long, value_parser = parse_positive_size)]
    pub limit_rate: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: FetchArgs) -> anyhow::Result<()> {
    let client = args.client.client()?;
    let id = args.id;
    let overview = client.overview(id).await.map_err(api_error)?.summary;
    let size = u64::try_from(overview.file_transfer_size).unwrap_or(0);
    let output = match &args.output {
        Some(path) => path.clone(),
        None => PathBuf::from(local_file_name(&overview.file_name)?),
    };
    // The name may be the sender's choice: never replace a file the user did not name.
    if !args.force && output.exists() {
        anyhow::bail!(
            "{} exists; pass --force to replace it, or -o FILE",
            output.display()
        );
    }
    let limiter = args.limit_rate.map(|r| Arc::new(RateLimiter::new(r)));

    let mut restarts = 0;
    let (part, resumed_from, transferred) = loop {
        let part = match PartFile::resume(&output, id, size) {
            Some(part) => part,
            None => {
                let etag = download_etag(&client, id).await?;
                let count = args.parallel.min((size / MIN_RANGE_SIZE).max(1));
                let ranges = split_ranges(size, count)
                    .into_iter()
                    .map(|(start, len)| RangeProgress {
                        start,
                        end: start + len,
                        done: 0,
                    })
                    .collect();
                PartFile::create(
                    &output,
                    Sidecar {
                        file_transfer_id: id,
                        etag,
                        size,
                        ranges,
                    },
                )?
            }
        };
        let resumed_from = part.snapshot().bytes_done();
        match download(&client, id, &part, limiter.clone()).await? {
            Downloaded::Complete(transferred) => break (part, resumed_from, transferred),
            Downloaded::Changed if restarts < MAX_RESTARTS => {
                part.discard();
                restarts += 1;
            }
            Downloaded::Changed => {
                part.discard();
                anyhow::bail!("the file kept changing on the server while it was downloaded");
            }
        }
    };

    let digests = digest_file(part.path()).await?;
    let mismatch = |what: &str, expected: &str, got: &str| {
        part.discard();
        anyhow::anyhow!(
            "the downloaded bytes have {what} {got}, the transfer's is {expected}; the partial file was removed"
        )
    };
    if let Some(expected) = overview.sha256.as_deref().filter(|s| !s.is_empty()) {
        if !expected.eq_ignore_ascii_case(&digests.sha256) {
            return Err(mismatch("SHA-256", expected, &digests.sha256));
        }
    }
    if let Some(expected) = overview
        .checksum
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        if !expected.eq_ignore_ascii_case(&digests.md5) {
            return Err(mismatch("MD5", expected, &digests.md5));
        }
    }
    part.finish(&output)?;
    if args.confirm {
        client
            .confirm_download(id)
            .await
            .map_err(api_error)
            .context("the file was saved, but confirming the download failed")?;
    }
    if args.client.json {
        print_json(&TransferReport {
            file_transfer_id: id,
            path: output,
            bytes_total: size,
            bytes_transferred: transferred,
            resumed_from,
            sha256: digests.sha256,
        })
    } else {
        println!("{}", output.display());
        Ok(())
    }
}

/// The transfer's file name as a name in the current directory (never a path elsewhere, never a
/// hidden file such as `.profile`).
fn local_file_name(name: &str) -> anyhow::Result<String> {
    Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty() && !n.starts_with('.'))
        .with_context(|| {
            format!("the transfer's file name {name:?} is not usable here; pass -o FILE")
        })
}

fn download_path(id: Uuid) -> String {
    format!("/filetransfer/{id}/download")
}

/// The download's ETag (HEAD does not count as a download).
async fn download_etag(client: &BrokerClient, id: Uuid) -> anyhow::Result<Option<String>> {
    let response = client
        .request(Method::HEAD, &download_path(id))
        .send()
        .await
        .map_err(|e| api_error(ClientError::Http(e)))?;
    let response = BrokerClient::checked(response).await.map_err(api_error)?;
    Ok(response
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string))
}

enum Downloaded {
    /// Every range is written; this many bytes were written by this run.
    Complete(u64),
    /// The server sent the whole file instead of a range: it is no longer the file of the `.part`.
    Changed,
}

/// Fetches every unfinished range at once.
async fn download(
    client: &BrokerClient,
    id: Uuid,
    part: &PartFile,
    limiter: Option<Arc<RateLimiter>>,
) -> anyhow::Result<Downloaded> {
    let sidecar = part.snapshot();
    let progress = Progress::start(sidecar.size, sidecar.bytes_done());
    let counter = progress.counter();
    let fetches = sidecar
        .ranges
        .iter()
        .enumerate()
        .filter(|(_, range)| !range.is_complete())
        .map(|(index, range)| RangeFetch {
            client,
            id,
            part,
            index,
            range: *range,
            etag: sidecar.etag.as_deref(),
            limiter: limiter.as_deref(),
            counter: &counter,
        })
        .map(RangeFetch::run);
    let outcomes = futures::future::try_join_all(fetches).await?;
    let mut written = 0;
    for outcome in outcomes {
        match outcome {
            Downloaded::Complete(n) => written += n,
            Downloaded::Changed => return Ok(Downloaded::Changed),
        }
    }
    Ok(Downloaded::Complete(written))
}

/// One range's download, resumed after network errors from what it has written.
struct RangeFetch<'a> {
    client: &'a BrokerClient,
    id: Uuid,
    part: &'a PartFile,
    index: usize,
    range: RangeProgress,
    etag: Option<&'a str>,
    limiter: Option<&'a RateLimiter>,
    counter: &'a Arc<AtomicU64>,
}

impl RangeFetch<'_> {
    async fn run(self) -> anyhow::Result<Downloaded> {
        let retry = RetryPolicy::default();
        let mut failures = 0u32;
        let mut done = self.range.done;
        let mut written = 0u64;
        let path = self.part.path();
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        // Network chunks are small: gather them so the file sees MiB-sized writes.
        let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
        while self.range.start + done < self.range.end {
            let from = self.range.start + done;
            let mut request = self
                .client
                .request(Method::GET, &download_path(self.id))
                .header(
                    header::RANGE,
                    format!("bytes={from}-{}", self.range.end - 1),
                );
            if let Some(etag) = self.etag {
                request = request.header(header::IF_RANGE, etag);
            }
            let answer = match request.send().await {
                Ok(response) => BrokerClient::checked(response).await,
                Err(e) => Err(ClientError::Http(e)),
            };
            let response = match answer {
                Ok(response) => response,
                Err(e) if e.is_retryable() && failures < retry.attempts => {
                    tokio::time::sleep(retry.delay(failures)).await;
                    failures += 1;
                    continue;
                }
                Err(e) => return Err(api_error(e)),
            };
            if response.status() == StatusCode::OK {
                return Ok(Downloaded::Changed);
            }
            anyhow::ensure!(
                response.status() == StatusCode::PARTIAL_CONTENT
                    && content_range_start(&response) == Some(from),
                "the server answered a request for bytes from {from} with {} {:?}",
                response.status(),
                response.headers().get(header::CONTENT_RANGE)
            );
            file.seek(std::io::SeekFrom::Start(from)).await?;
            let before = done;
            let mut body = response.bytes_stream();
            let mut unrecorded = 0u64;
            let mut broke_off = false;
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else {
                    broke_off = true;
                    break;
                };
                let room = self.range.end - (self.range.start + done);
                let bytes = &chunk[..chunk.len().min(room as usize)];
                if let Some(limiter) = self.limiter {
                    limiter.acquire(bytes.len() as u64).await;
                }
                file.write_all(bytes).await?;
                let n = bytes.len() as u64;
                done += n;
                written += n;
                unrecorded += n;
                self.counter.fetch_add(n, Ordering::Relaxed);
                if unrecorded >= RECORD_EVERY {
                    // The sidecar may claim these bytes only once the write has reached the file.
                    file.flush().await?;
                    self.part.record(self.index, done, false)?;
                    unrecorded = 0;
                }
                if self.range.start + done >= self.range.end {
                    break;
                }
            }
            file.flush().await?;
            self.part.record(self.index, done, true)?;
            if broke_off || self.range.start + done < self.range.end {
                if done > before {
                    failures = 0;
                }
                anyhow::ensure!(
                    failures < retry.attempts,
                    "the download of bytes from {} broke off too often",
                    self.range.start + done
                );
                tokio::time::sleep(retry.delay(failures)).await;
                failures += 1;
            } else {
                failures = 0;
            }
        }
        Ok(Downloaded::Complete(written))
    }
}

/// The first byte of a 206's `Content-Range: bytes FIRST-LAST/SIZE`.
fn content_range_start(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}
