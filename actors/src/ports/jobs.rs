//! Durable jobs (spec 7.2): work due at a time, such as a transfer's purge at its expiration, a purge
//! after every recipient confirmed, a stuck-upload check or a scan to retry. A job is named by its kind
//! and subject (at most one job per name), survives restarts, and is claimed with a lease: a claimer
//! that dies leaves its job to be claimed again once the lease runs out. Moving a claimed job to a new
//! time wins over the claimer's completion, so a reschedule made while the job ran is never lost.

use super::StoreError;
use async_trait::async_trait;
use broker_protocol::time::Timestamp;

/// What a job does; the runtime that runs it decides how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKind {
    /// Purge a transfer at its expiration time.
    PurgeExpired,
    /// Purge a transfer every recipient confirmed, after the resource's grace period.
    PurgeAfterConfirm,
    /// Scan a transfer's stored file (until the scanner gives a verdict).
    Scan,
    /// Check whether a transfer is stuck in UploadStarted or UploadProcessing.
    StuckCheck,
    /// Remove a resumable upload nobody touched for its expiry.
    TusExpiry,
    /// Rebuild the current month's statistics rollup (weekly).
    StatisticsWeekly,
    /// Rebuild the previous month's statistics rollup for the last time (on the 2nd).
    StatisticsFinal,
}

impl JobKind {
    pub const ALL: [JobKind; 7] = [
        JobKind::PurgeExpired,
        JobKind::PurgeAfterConfirm,
        JobKind::Scan,
        JobKind::StuckCheck,
        JobKind::TusExpiry,
        JobKind::StatisticsWeekly,
        JobKind::StatisticsFinal,
    ];

    /// The stable name a durable adapter stores.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::PurgeExpired => "purge_expired",
            JobKind::PurgeAfterConfirm => "purge_after_confirm",
            JobKind::Scan => "scan",
            JobKind::StuckCheck => "stuck_check",
            JobKind::TusExpiry => "tus_expiry",
            JobKind::StatisticsWeekly => "statistics_weekly",
            JobKind::StatisticsFinal => "statistics_final",
        }
    }

    pub fn parse(name: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// A job's name: its kind and what it is about (a transfer id, or a transfer id and a part).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub kind: JobKind,
    pub subject: String,
}

impl JobKey {
    pub fn new(kind: JobKind, subject: impl Into<String>) -> JobKey {
        JobKey {
            kind,
            subject: subject.into(),
        }
    }
}

/// A job as its claimer holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedJob {
    pub key: JobKey,
    pub due_at: Timestamp,
    /// How many claims before this one ended without completing it.
    pub attempts: u32,
    /// Changes whenever the job is (re)scheduled; ties completion to the schedule that was claimed.
    pub version: i64,
}

/// How much work waits in the job queue (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobBacklog {
    pub queued: u64,
    /// Jobs due now that nobody holds.
    pub due: u64,
    /// The due time of the oldest of those.
    pub oldest_due: Option<Timestamp>,
}

#[async_trait]
pub trait Jobs: Send + Sync + 'static {
    /// Schedules the job `key` at `due_at`, or moves it there if it exists (its attempts start again).
    /// A job claimed now stays claimed, but its claimer can no longer complete it.
    async fn schedule(&self, key: &JobKey, due_at: Timestamp) -> Result<(), StoreError>;
    /// Removes the job `key` if it exists, claimed or not.
    async fn cancel(&self, key: &JobKey) -> Result<(), StoreError>;
    /// Claims up to `limit` jobs due at or before `now`, earliest first, that nobody holds or whose lease
    /// ended before `now`, for `owner` until `lease_until`.
    async fn claim_due(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedJob>, StoreError>;
    /// Extends the lease `owner` holds on a job still running (a long scan) to `lease_until`; `false`
    /// if `owner` no longer holds that schedule (then it should stop: another claim may run it).
    async fn renew(
        &self,
        job: &ClaimedJob,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Removes a job `owner` claimed and ran; `false` (and the job stays, released) if it was
    /// rescheduled since the claim, or `owner` no longer holds it.
    async fn complete(&self, job: &ClaimedJob, owner: &str) -> Result<bool, StoreError>;
    /// Releases a job `owner` claimed and could not finish, to be claimed again at `due_at`, counting
    /// the attempt and keeping `error` for operators; `false` if `owner` no longer holds that schedule.
    async fn retry(
        &self,
        job: &ClaimedJob,
        owner: &str,
        due_at: Timestamp,
        error: &str,
    ) -> Result<bool, StoreError>;
    /// When the next job becomes claimable: the earliest due time of a job not held, or the end of a
    /// lease, whichever comes first; `None` when there is no job. The runtime sleeps until then.
    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError>;
    /// The job `key` as stored (for operators and tests): its due time and attempts.
    async fn get(&self, key: &JobKey) -> Result<Option<(Timestamp, u32)>, StoreError>;
    async fn backlog(&self, now: Timestamp) -> Result<JobBacklog, StoreError>;
}
