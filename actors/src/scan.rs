//! The malware scan of a stored file (spec 1.3, 4.5, 7.1). A transfer whose file is stored for scanning
//! gets a durable `Scan` job in the same transaction; the job runtime hands it here and goes on with
//! other jobs. A scan waits for one of a fixed number of permits, reads the file through the blob port
//! (in overlapping windows when it is larger than the scanner's stream limit), and gives the verdict
//! to the transfer's supervisor. While it runs it keeps renewing its lease, so a long scan is never
//! taken over; a scanner that cannot be reached is retried with backoff, and the file stays
//! UploadProcessing: never published unscanned, never failed for want of a scanner.

use crate::broker::{LargeFiles, ScanSettings};
use crate::error::{Error, Result};
use crate::ports::jobs::ClaimedJob;
use crate::ports::{ScanError, Verdict};
use crate::state::ScanResult;
use crate::Broker;
use broker_protocol::{ErrorCode, FileTransferStatus};
use futures::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use uuid::Uuid;

/// Windows of one large file sent to the scanner at once.
const WINDOWS_AT_ONCE: usize = 2;
/// How often a running scan renews its lease (the lease is minutes long).
const RENEW_EVERY: Duration = Duration::from_secs(60);

/// The permits scans share, and how many scans are running or waiting (for tests and metrics).
pub(crate) struct ScanRunner {
    permits: tokio::sync::Semaphore,
    active: AtomicUsize,
    idle: tokio::sync::Notify,
    /// Transfers being read by the scanner now (a stuck check leaves them be).
    scanning: std::sync::Mutex<std::collections::HashSet<Uuid>>,
}

/// Marks a transfer as being scanned while it lives.
struct Scanning<'a>(&'a ScanRunner, Uuid);

impl Drop for Scanning<'_> {
    fn drop(&mut self) {
        self.0.scanning.lock().expect("scanning").remove(&self.1);
    }
}

impl ScanRunner {
    pub(crate) fn new(max_concurrent: usize) -> ScanRunner {
        ScanRunner {
            permits: tokio::sync::Semaphore::new(max_concurrent.max(1)),
            active: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
            scanning: Default::default(),
        }
    }

    fn mark(&self, id: Uuid) -> Scanning<'_> {
        self.scanning.lock().expect("scanning").insert(id);
        Scanning(self, id)
    }
}

/// The byte ranges one file is scanned in: the whole file when it fits one window, else windows of
/// `window_bytes` that each start `window_bytes - overlap_bytes` after the last, the last one ending at
/// the end of the file.
pub fn windows(size: u64, settings: &ScanSettings) -> Vec<(u64, u64)> {
    let window = settings.window_bytes.max(1);
    if size <= window {
        return vec![(0, size)];
    }
    let step = window.saturating_sub(settings.overlap_bytes).max(1);
    let mut ranges = Vec::new();
    let mut start = 0;
    loop {
        let len = window.min(size - start);
        ranges.push((start, len));
        if start + len >= size {
            return ranges;
        }
        start += step;
    }
}

impl Broker {
    /// Starts the scan job on a task of its own; it completes or retries the job when it ends.
    pub(crate) fn start_scan(&self, job: ClaimedJob) {
        let broker = self.clone();
        self.inner.scans.active.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            broker.run_scan_job(&job).await;
            let scans = &broker.inner.scans;
            if scans.active.fetch_sub(1, Ordering::SeqCst) == 1 {
                scans.idle.notify_waiters();
            }
        });
    }

    /// Whether the transfer's file is being read by the scanner now.
    pub(crate) fn is_scanning(&self, id: Uuid) -> bool {
        self.inner
            .scans
            .scanning
            .lock()
            .expect("scanning")
            .contains(&id)
    }

    /// Waits until no scan is running or waiting for a permit.
    pub async fn scans_idle(&self) {
        let scans = &self.inner.scans;
        loop {
            let idle = scans.idle.notified();
            if scans.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    async fn run_scan_job(&self, job: &ClaimedJob) {
        let jobs = &self.ports().jobs;
        let owner = self.inner.node.as_str();
        let scan = async {
            let _permit = self
                .inner
                .scans
                .permits
                .acquire()
                .await
                .map_err(|_| Error::Internal("the scan permits are closed".into()))?;
            self.scan_transfer(&job.key.subject).await
        };
        tokio::pin!(scan);
        let mut renew = tokio::time::interval(RENEW_EVERY);
        renew.tick().await;
        let outcome = loop {
            tokio::select! {
                outcome = &mut scan => break outcome,
                _ = renew.tick() => {
                    let until = self.now() + crate::job_runtime::LEASE;
                    if !jobs.renew(job, owner, until).await.unwrap_or(false) {
                        tracing::warn!(subject = %job.key.subject, "a scan lost its claim; it is left to the new claimer");
                        return;
                    }
                }
                _ = self.inner.shutdown.cancelled() => {
                    // Let the job go now, so the next start scans it at once, not after the lease.
                    let _ = jobs.retry(job, owner, self.now(), "the broker stopped during the scan").await;
                    return;
                }
            }
        };
        let ended = match outcome {
            Ok(()) => jobs.complete(job, owner).await,
            Err(e) => {
                let wait = crate::job_runtime::backoff(job.attempts);
                tracing::warn!(subject = %job.key.subject, attempts = job.attempts + 1, error = %e, "a scan could not run; it is retried");
                jobs.retry(job, owner, self.now() + wait, &e.to_string())
                    .await
            }
        };
        if let Err(e) = ended {
            tracing::error!(subject = %job.key.subject, error = %e, "a scan's end could not be recorded; its lease runs out and it runs again");
        }
    }

    /// Scans the transfer's stored file and records the verdict; `Err` when no verdict could be had.
    async fn scan_transfer(&self, subject: &str) -> Result<()> {
        let id = Uuid::parse_str(subject)
            .map_err(|_| Error::Internal(format!("scan subject {subject:?} is no transfer")))?;
        let view = match self.view(id).await {
            Err(Error::Refused(ErrorCode::FileTransferNotFound)) => return Ok(()),
            other => other?,
        };
        if view.status != FileTransferStatus::UploadProcessing {
            // A verdict was recorded before (the job ran twice after a crash), or the transfer moved on.
            return Ok(());
        }
        let scanner = self.ports().scanner.clone().ok_or_else(|| {
            Error::Internal(
                "the transfer waits for a malware scan, but scanning is off (scan.kind = none)"
                    .into(),
            )
        })?;
        let size = view.size.max(0) as u64;
        let settings = &self.settings().scan;
        let ranges = windows(size, settings);
        let _scanning = self.inner.scans.mark(id);
        // The windows of a large file go to the scanner two at a time (clamd scans each on a thread of
        // its own); the first malware found ends the scan.
        let blobs = &self.ports().blobs;
        let mut verdicts = futures::stream::iter(ranges.iter().copied())
            .map(|(start, len)| {
                let scanner = scanner.clone();
                async move {
                    let stream = blobs.read(id, start, len).await.map_err(Error::from)?;
                    Ok::<_, Error>(scanner.scan(stream).await)
                }
            })
            .buffer_unordered(WINDOWS_AT_ONCE);
        while let Some(verdict) = verdicts.next().await {
            match verdict? {
                Ok(Verdict::Clean) => {}
                Ok(Verdict::Infected(names)) => {
                    drop(verdicts);
                    tracing::warn!(%id, ?names, "malware found; the transfer fails");
                    return self
                        .lifecycle()
                        .record_scan(id, ScanResult::Malicious(names))
                        .await;
                }
                Err(ScanError::Refused(why)) => {
                    tracing::error!(%id, window_bytes = settings.window_bytes, %why, "CONFIGURATION ERROR: the scanner refused a window; scan.window_bytes must not exceed clamd's StreamMaxLength");
                    return Err(Error::Internal(format!(
                        "the scanner refused the file: {why}"
                    )));
                }
                Err(e) => return Err(Error::Internal(e.to_string())),
            }
        }
        drop(verdicts);
        let result = if ranges.len() > 1 {
            ScanResult::CleanInWindows {
                windows: ranges.len() as u32,
                window_bytes: settings.window_bytes,
                overlap_bytes: settings.overlap_bytes,
            }
        } else {
            ScanResult::Clean
        };
        self.lifecycle().record_scan(id, result).await
    }

    /// 400 `BRO-09012` when the broker refuses files larger than one scan window and `length` is one.
    pub(crate) fn check_scannable(&self, use_virus_scan: bool, length: u64) -> Result<()> {
        let scan = &self.settings().scan;
        if use_virus_scan && scan.large_files == LargeFiles::Refuse && length > scan.window_bytes {
            return Err(ErrorCode::FileTooLargeToScan.into());
        }
        Ok(())
    }

    /// The most bytes a scanned upload may store when larger files are refused (a body of unknown
    /// length is cut off there).
    pub(crate) fn scannable_limit(&self, use_virus_scan: bool, limit: u64) -> u64 {
        let scan = &self.settings().scan;
        if use_virus_scan && scan.large_files == LargeFiles::Refuse {
            limit.min(scan.window_bytes)
        } else {
            limit
        }
    }
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod broker_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(window: u64, overlap: u64) -> ScanSettings {
        ScanSettings {
            window_bytes: window,
            overlap_bytes: overlap,
            ..Default::default()
        }
    }

    #[test]
    fn a_file_within_one_window_is_scanned_whole() {
        assert_eq!(windows(100, &settings(100, 10)), vec![(0, 100)]);
        assert_eq!(windows(0, &settings(100, 10)), vec![(0, 0)]);
    }

    #[test]
    fn a_larger_file_is_covered_by_overlapping_windows_ending_at_its_end() {
        let w = windows(250, &settings(100, 10));
        assert_eq!(w, vec![(0, 100), (90, 100), (180, 70)]);
        for pair in w.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert_eq!(a.0 + a.1 - b.0, 10, "consecutive windows overlap");
        }
    }

    #[test]
    fn any_run_of_bytes_up_to_the_overlap_lies_whole_in_one_window() {
        let s = settings(64, 16);
        for size in [65u64, 100, 128, 300] {
            let w = windows(size, &s);
            for start in 0..size.saturating_sub(16) {
                let end = start + 16;
                assert!(
                    w.iter().any(|&(a, len)| a <= start && end <= a + len),
                    "bytes {start}..{end} of {size}"
                );
            }
        }
    }
}
