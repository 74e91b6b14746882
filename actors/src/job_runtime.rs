//! The job runtime (spec 7.2): runs durable jobs as they fall due. It claims due jobs with a lease (a
//! node that dies mid-job leaves it to be claimed again when the lease ends), runs each, and completes
//! it or schedules a retry with backoff. Between rounds it sleeps until the earliest job is due, and a
//! transition that schedules a job wakes it, so a job runs within moments of its time: no polling.
//! Every effect is idempotent (a purge of a purged transfer changes nothing), so a job run twice after a
//! crash does no harm.

use crate::error::{Error, Result};
use crate::ports::jobs::{ClaimedJob, JobKey, JobKind};
use crate::state::Stage;
use crate::Broker;
use broker_protocol::time::Timestamp;
use std::time::Duration;
use uuid::Uuid;

/// How long a claim holds a job: longer than any job takes, or than a scan takes between renewals.
pub(crate) const LEASE: chrono::Duration = chrono::Duration::minutes(5);
/// Jobs claimed per round.
const BATCH: u32 = 64;
/// The longest the runtime sleeps without looking again (another node's jobs, a clock set by hand).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// An UploadStarted transfer fails as stuck once its resumable upload has been quiet this long.
const STUCK_QUIET: chrono::Duration = chrono::Duration::hours(1);
/// The longest wait between attempts of a failing job.
const MAX_BACKOFF: chrono::Duration = chrono::Duration::seconds(30);

/// The wait before the next attempt of a job that failed `attempts` times before.
pub(crate) fn backoff(attempts: u32) -> chrono::Duration {
    chrono::Duration::seconds(1 << attempts.min(5)).min(MAX_BACKOFF)
}

impl Broker {
    /// Claims and runs every job due on the broker's clock; how many ran.
    pub async fn run_due_jobs(&self) -> Result<usize> {
        let jobs = &self.ports().jobs;
        let owner = self.inner.node.as_str();
        let mut ran = 0;
        loop {
            let now = self.now();
            let claimed = jobs.claim_due(owner, now, now + LEASE, BATCH).await?;
            let full = claimed.len() == BATCH as usize;
            for job in claimed {
                if job.key.kind == JobKind::Scan {
                    // A scan takes as long as its file: it runs beside the other jobs, and ends its
                    // own claim.
                    self.start_scan(job);
                    ran += 1;
                    continue;
                }
                match self.run_job(&job).await {
                    Ok(()) => {
                        jobs.complete(&job, owner).await?;
                    }
                    Err(e) => {
                        let wait = backoff(job.attempts);
                        tracing::warn!(kind = job.key.kind.as_str(), subject = %job.key.subject, attempts = job.attempts + 1, error = %e, "a job failed; it is retried");
                        jobs.retry(&job, owner, self.now() + wait, &e.to_string())
                            .await?;
                    }
                }
                ran += 1;
            }
            if !full {
                return Ok(ran);
            }
        }
    }

    /// Runs jobs as they fall due until the broker stops.
    pub async fn run_job_runtime(self) {
        let scheduled = self.lifecycle().jobs_scheduled();
        loop {
            let woken = scheduled.awake();
            if let Err(e) = self.run_due_jobs().await {
                tracing::error!(error = %e, "the job runtime could not run its jobs");
            }
            let now = self.now();
            let cap = chrono::Duration::from_std(MAX_SLEEP).expect("a short sleep");
            let look = match self.ports().jobs.next_due().await {
                Ok(Some(at)) => at.clamp(now, now + cap),
                Ok(None) => now + cap,
                Err(_) => now + chrono::Duration::seconds(1),
            };
            let sleep = (look - now).to_std().unwrap_or_default();
            scheduled.sleeping_until(look);
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                _ = woken => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Schedules (or moves) the job `key` at `at`, and wakes the runtime in case it is the earliest.
    pub(crate) async fn schedule_job(&self, key: &JobKey, at: Timestamp) -> Result<()> {
        self.ports().jobs.schedule(key, at).await?;
        self.lifecycle().jobs_scheduled().scheduled(at).await;
        Ok(())
    }

    /// How many times a transfer was found stuck in UploadProcessing (an alert each; for metrics).
    pub fn stuck_alerts(&self) -> u64 {
        self.inner
            .stuck_alerts
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The stuck check (spec 7.2): UploadStarted with no resumable-upload activity for an hour fails;
    /// UploadProcessing with no check running raises an alert. Either looks again later while the
    /// transfer stays where it is.
    async fn check_stuck(&self, id: Uuid) -> Result<()> {
        let view = self.view(id).await?;
        let now = self.now();
        let again = match view.stage() {
            Stage::UploadStarted => {
                let last = self.ports().sessions.last_activity(id).await?;
                match last.filter(|at| now - *at < STUCK_QUIET) {
                    // Still being uploaded: look again an hour after its last request.
                    Some(at) => at + STUCK_QUIET,
                    None => {
                        tracing::warn!(%id, "a transfer stuck in UploadStarted fails");
                        return self.lifecycle().fail_stuck(id).await;
                    }
                }
            }
            Stage::Verifying | Stage::Scanning => {
                if !self.is_verifying(id).await && !self.is_scanning(id).await {
                    self.inner
                        .stuck_alerts
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(%id, since = %view.status_changed, "ALERT: a transfer is stuck in UploadProcessing with no check running");
                }
                now + crate::state::STUCK_UPLOAD_PROCESSING
            }
            _ => return Ok(()),
        };
        self.schedule_job(&JobKey::new(JobKind::StuckCheck, id.to_string()), again)
            .await
    }

    async fn run_job(&self, job: &ClaimedJob) -> Result<()> {
        let id = || {
            Uuid::parse_str(&job.key.subject).map_err(|_| {
                Error::Internal(format!("job subject {:?} is no transfer", job.key.subject))
            })
        };
        let outcome = match job.key.kind {
            JobKind::PurgeExpired => self.lifecycle().expire(id()?).await,
            JobKind::PurgeAfterConfirm => self.lifecycle().purge(id()?).await,
            JobKind::StuckCheck => self.check_stuck(id()?).await,
            JobKind::TusExpiry => self.run_tus_sweep().await,
            JobKind::StatisticsWeekly => self.run_weekly_statistics().await,
            JobKind::StatisticsFinal => self.run_final_statistics().await,
            JobKind::Scan => unreachable!("run_due_jobs starts scans on their own tasks"),
        };
        match outcome {
            // The transfer is gone (or never was): nothing is left to do.
            Err(Error::Refused(broker_protocol::ErrorCode::FileTransferNotFound)) => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
#[path = "job_runtime_tests.rs"]
mod tests;
