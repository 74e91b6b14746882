//! The jobs port in memory.

use crate::ports::jobs::{ClaimedJob, JobBacklog, JobKey, Jobs};
use crate::ports::StoreError;
use async_trait::async_trait;
use broker_protocol::time::Timestamp;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

struct Job {
    due_at: Timestamp,
    attempts: u32,
    version: i64,
    lease: Option<(String, Timestamp)>,
    last_error: Option<String>,
}

#[derive(Default)]
struct Table {
    jobs: BTreeMap<JobKey, Job>,
    next_version: i64,
}

#[derive(Default)]
pub struct MemoryJobs(Mutex<Table>);

impl MemoryJobs {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.0.lock().expect("memory jobs")
    }

    /// Schedules (or moves) the job `key`: the port's `schedule`, callable where the store writes it
    /// with a transition.
    pub(crate) fn schedule_now(&self, key: &JobKey, due_at: Timestamp) {
        let mut table = self.lock();
        table.next_version += 1;
        let version = table.next_version;
        let job = table.jobs.entry(key.clone()).or_insert(Job {
            due_at,
            attempts: 0,
            version,
            lease: None,
            last_error: None,
        });
        job.due_at = due_at;
        job.attempts = 0;
        job.version = version;
    }

    /// Removes the job `key`: the port's `cancel`, callable where the store writes it with a transition.
    pub(crate) fn cancel_now(&self, key: &JobKey) {
        self.lock().jobs.remove(key);
    }

    /// The error the last failed attempt of `key` left, if any.
    pub fn last_error(&self, key: &JobKey) -> Option<String> {
        self.lock().jobs.get(key).and_then(|j| j.last_error.clone())
    }
}

fn held_by(job: &Job, claimed: &ClaimedJob, owner: &str) -> bool {
    job.version == claimed.version && matches!(&job.lease, Some((o, _)) if o == owner)
}

#[async_trait]
impl Jobs for MemoryJobs {
    async fn schedule(&self, key: &JobKey, due_at: Timestamp) -> Result<(), StoreError> {
        self.schedule_now(key, due_at);
        Ok(())
    }

    async fn cancel(&self, key: &JobKey) -> Result<(), StoreError> {
        self.cancel_now(key);
        Ok(())
    }

    async fn claim_due(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        let mut table = self.lock();
        let mut due: Vec<_> = table
            .jobs
            .iter()
            .filter(|(_, j)| j.due_at <= now && j.lease.as_ref().is_none_or(|(_, end)| *end <= now))
            .map(|(k, j)| (j.due_at, k.clone()))
            .collect();
        due.sort();
        due.truncate(limit as usize);
        Ok(due
            .into_iter()
            .map(|(_, key)| {
                let job = table.jobs.get_mut(&key).expect("a listed job");
                job.lease = Some((owner.to_string(), lease_until));
                ClaimedJob {
                    due_at: job.due_at,
                    attempts: job.attempts,
                    version: job.version,
                    key,
                }
            })
            .collect())
    }

    async fn renew(
        &self,
        claimed: &ClaimedJob,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut table = self.lock();
        match table.jobs.get_mut(&claimed.key) {
            Some(job) if held_by(job, claimed, owner) => {
                job.lease = Some((owner.to_string(), lease_until));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn complete(&self, claimed: &ClaimedJob, owner: &str) -> Result<bool, StoreError> {
        let mut table = self.lock();
        let Some(job) = table.jobs.get_mut(&claimed.key) else {
            return Ok(false);
        };
        if held_by(job, claimed, owner) {
            table.jobs.remove(&claimed.key);
            return Ok(true);
        }
        if matches!(&job.lease, Some((o, _)) if o == owner) {
            job.lease = None;
        }
        Ok(false)
    }

    async fn retry(
        &self,
        claimed: &ClaimedJob,
        owner: &str,
        due_at: Timestamp,
        error: &str,
    ) -> Result<bool, StoreError> {
        let mut table = self.lock();
        let Some(job) = table.jobs.get_mut(&claimed.key) else {
            return Ok(false);
        };
        let held = held_by(job, claimed, owner);
        if held {
            job.due_at = due_at;
            job.attempts += 1;
            job.last_error = Some(error.to_string());
        }
        if matches!(&job.lease, Some((o, _)) if o == owner) {
            job.lease = None;
        }
        Ok(held)
    }

    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self
            .lock()
            .jobs
            .values()
            .map(|j| match &j.lease {
                Some((_, end)) => (*end).max(j.due_at),
                None => j.due_at,
            })
            .min())
    }

    async fn get(&self, key: &JobKey) -> Result<Option<(Timestamp, u32)>, StoreError> {
        Ok(self.lock().jobs.get(key).map(|j| (j.due_at, j.attempts)))
    }

    async fn backlog(&self, now: Timestamp) -> Result<JobBacklog, StoreError> {
        let table = self.lock();
        let due: Vec<Timestamp> = table
            .jobs
            .values()
            .filter(|j| j.due_at <= now && j.lease.as_ref().is_none_or(|(_, end)| *end < now))
            .map(|j| j.due_at)
            .collect();
        Ok(JobBacklog {
            queued: table.jobs.len() as u64,
            due: due.len() as u64,
            oldest_due: due.into_iter().min(),
        })
    }
}
