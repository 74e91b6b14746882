//! The scan job: a permit, the file's windows through the blob port to the scanner, the verdict to
//! the transfer's supervisor, the lease renewed meanwhile.

use super::{windows, LargeFiles, SCAN_CLAIM};
use crate::error::{Error, Result};
use crate::ports::jobs::ClaimedJob;
use crate::ports::{ScanError, Verdict};
use crate::state::ScanResult;
use crate::Broker;
use broker_protocol::ErrorCode;
use futures::StreamExt;
use std::sync::atomic::Ordering;
use std::time::Duration;
use uuid::Uuid;

/// Windows of one large file sent to the scanner at once.
const WINDOWS_AT_ONCE: usize = 2;
/// How often a running scan renews its lease (the lease is minutes long).
const RENEW_EVERY: Duration = Duration::from_secs(60);

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

    /// Whether the transfer's file is being read by a scanner now, on any node.
    pub(crate) async fn is_scanning(&self, id: Uuid) -> bool {
        self.lifecycle().lease_desk().is_held(id, SCAN_CLAIM).await
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
                let at = self.now() + crate::job_runtime::backoff(job.attempts);
                tracing::warn!(subject = %job.key.subject, attempts = job.attempts + 1, error = %e, "a scan could not run; it is retried");
                let retried = jobs.retry(job, owner, at, &e.to_string()).await;
                // The runtime went back to sleep while this scan ran: wake it for the retry.
                self.lifecycle().jobs_scheduled().scheduled(at).await;
                retried
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
        if !view.stage().awaits_scan() {
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
        // The scan's claim in the store, held while the file is read: the stuck check on any node
        // sees it. A job run twice (its lease ran out while the first run still reads) waits its turn.
        let Some(_claim) = self
            .lifecycle()
            .lease_desk()
            .try_acquire(id, SCAN_CLAIM)
            .await?
        else {
            return Err(Error::Internal(
                "another run is scanning this file now; the job is tried again".into(),
            ));
        };
        let started = std::time::Instant::now();
        // The windows of a large file go to the scanner two at a time (clamd scans each on a thread of
        // its own); the first malware found ends the scan.
        let blobs = &self.ports().blobs;
        let mut verdicts = futures::stream::iter(ranges.iter().copied())
            .map(|(start, len)| {
                let scanner = scanner.clone();
                async move {
                    let stream = blobs
                        .read(&crate::ports::ObjectKey::file(id), start, len)
                        .await
                        .map_err(Error::from)?;
                    Ok::<_, Error>(scanner.scan(stream).await)
                }
            })
            .buffer_unordered(WINDOWS_AT_ONCE);
        while let Some(verdict) = verdicts.next().await {
            match verdict? {
                Ok(Verdict::Clean) => {}
                Ok(Verdict::Infected(names)) => {
                    drop(verdicts);
                    record_scan_metrics(started, "malicious");
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
        record_scan_metrics(started, "clean");
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
#[path = "runner_tests.rs"]
mod tests;

/// A whole file's scan time and verdict (`/metrics`).
fn record_scan_metrics(started: std::time::Instant, verdict: &'static str) {
    metrics::histogram!("broker_scan_duration_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("broker_scan_verdicts_total", "verdict" => verdict).increment(1);
}
