//! The jobs port on SQLite. Every change runs on the one writer, so a claim (select the due rows, mark
//! them leased) is atomic without row locks; PostgreSQL will use `FOR UPDATE SKIP LOCKED`.

use super::{failure, SqliteStore};
use crate::db::*;
use broker_actors::ports::jobs::{ClaimedJob, JobBacklog, JobKey, JobKind, Jobs};
use rusqlite::{params, Connection, OptionalExtension};

pub(super) fn micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

pub(super) fn from_micros(us: i64) -> Result<Timestamp, StoreError> {
    chrono::DateTime::from_timestamp_micros(us).ok_or_else(|| failure(format!("bad time {us}")))
}

/// A version no earlier schedule used: the writer is the only one to take them.
const NEXT_VERSION: &str = "(SELECT COALESCE(MAX(version), 0) + 1 FROM jobs)";

#[async_trait]
impl Jobs for SqliteStore {
    async fn schedule(&self, key: &JobKey, due_at: Timestamp) -> Result<(), StoreError> {
        let key = key.clone();
        self.write(move |conn| schedule_in(conn, &key, due_at))
            .await
    }

    async fn cancel(&self, key: &JobKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.write(move |conn| cancel_in(conn, &key)).await
    }

    async fn claim_due(
        &self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        let owner = owner.to_string();
        self.write(move |conn| {
            let mut claim = conn
                .prepare_cached(
                    "UPDATE jobs SET lease_owner = ?1, lease_until = ?2
                     WHERE rowid IN (SELECT rowid FROM jobs
                                     WHERE due_at <= ?3 AND (lease_until IS NULL OR lease_until <= ?3)
                                     ORDER BY due_at, kind, subject LIMIT ?4)
                     RETURNING kind, subject, due_at, attempts, version",
                )
                .map_err(failure)?;
            let rows = claim
                .query_map(
                    params![owner, micros(lease_until), micros(now), limit as i64],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, i64>(4)?,
                        ))
                    },
                )
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(failure)?;
            let mut claimed = rows
                .into_iter()
                .map(|(kind, subject, due_at, attempts, version)| {
                    Ok(ClaimedJob {
                        key: JobKey::new(
                            JobKind::parse(&kind)
                                .ok_or_else(|| failure(format!("unknown job kind {kind}")))?,
                            subject,
                        ),
                        due_at: from_micros(due_at)?,
                        attempts: attempts as u32,
                        version,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            claimed.sort_by(|a, b| (a.due_at, &a.key).cmp(&(b.due_at, &b.key)));
            Ok(claimed)
        })
        .await
    }

    async fn renew(
        &self,
        job: &ClaimedJob,
        owner: &str,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let (job, owner) = (job.clone(), owner.to_string());
        self.write(move |conn| {
            let sql = format!("UPDATE jobs SET lease_until = ? WHERE {CLAIMED}");
            let renewed = conn
                .prepare_cached(&sql)
                .and_then(|mut s| {
                    s.execute(params![
                        micros(lease_until),
                        job.key.kind.as_str(),
                        job.key.subject,
                        job.version,
                        owner
                    ])
                })
                .map_err(failure)?;
            Ok(renewed == 1)
        })
        .await
    }

    async fn complete(&self, job: &ClaimedJob, owner: &str) -> Result<bool, StoreError> {
        let (job, owner) = (job.clone(), owner.to_string());
        self.write(move |conn| {
            let sql = format!("DELETE FROM jobs WHERE {CLAIMED}");
            end_claim(conn, &sql, &[], &job, &owner)
        })
        .await
    }

    async fn retry(
        &self,
        job: &ClaimedJob,
        owner: &str,
        due_at: Timestamp,
        error: &str,
    ) -> Result<bool, StoreError> {
        let (job, owner, error) = (job.clone(), owner.to_string(), error.to_string());
        self.write(move |conn| {
            let sql = format!(
                "UPDATE jobs SET due_at = ?, attempts = attempts + 1, last_error = ?,
                        lease_owner = NULL, lease_until = NULL
                 WHERE {CLAIMED}"
            );
            end_claim(conn, &sql, &[&micros(due_at), &error], &job, &owner)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        // Two index lookups, not a scan: the earliest job nobody holds, and the end of the few leases.
        let next: Option<i64> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT MIN(t) FROM (
                    SELECT MIN(due_at) AS t FROM jobs WHERE lease_until IS NULL
                    UNION ALL
                    SELECT MIN(MAX(due_at, lease_until)) FROM jobs WHERE lease_until IS NOT NULL)",
            )
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(failure)
        })?;
        next.map(from_micros).transpose()
    }

    async fn backlog(&self, now: Timestamp) -> Result<JobBacklog, StoreError> {
        let now = micros(now);
        let (queued, due, oldest): (i64, i64, Option<i64>) = self.read(|conn| {
            conn.prepare_cached(
                "SELECT (SELECT COUNT(*) FROM jobs), COUNT(*), MIN(due_at) FROM jobs
                 WHERE due_at <= ?1 AND (lease_until IS NULL OR lease_until < ?1)",
            )
            .and_then(|mut s| s.query_row(params![now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))))
            .map_err(failure)
        })?;
        Ok(JobBacklog {
            queued: queued as u64,
            due: due as u64,
            oldest_due: oldest.map(from_micros).transpose()?,
        })
    }

    async fn get(&self, key: &JobKey) -> Result<Option<(Timestamp, u32)>, StoreError> {
        let row = self.read(|conn| {
            conn.prepare_cached("SELECT due_at, attempts FROM jobs WHERE kind = ? AND subject = ?")
                .and_then(|mut s| {
                    s.query_row(params![key.kind.as_str(), key.subject], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                    })
                    .optional()
                })
                .map_err(failure)
        })?;
        row.map(|(due, attempts)| Ok((from_micros(due)?, attempts as u32)))
            .transpose()
    }
}

/// Schedules (or moves) the job `key` on the writer's connection: alone, or with the transition that
/// asks for it.
pub(super) fn schedule_in(
    conn: &Connection,
    key: &JobKey,
    due_at: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO jobs (kind, subject, due_at, attempts, version) VALUES (?, ?, ?, 0, {NEXT_VERSION})
         ON CONFLICT(kind, subject) DO UPDATE SET due_at = excluded.due_at, attempts = 0, version = excluded.version"
    ))
    .and_then(|mut s| s.execute(params![key.kind.as_str(), key.subject, micros(due_at)]))
    .map_err(failure)?;
    Ok(())
}

/// Removes the job `key` on the writer's connection, alone or with the transition that ends it.
pub(super) fn cancel_in(conn: &Connection, key: &JobKey) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM jobs WHERE kind = ? AND subject = ?")
        .and_then(|mut s| s.execute(params![key.kind.as_str(), key.subject]))
        .map_err(failure)?;
    Ok(())
}

/// The rows a claim still holds: its job, under the schedule claimed, leased by its claimer.
const CLAIMED: &str = "kind = ? AND subject = ? AND version = ? AND lease_owner = ?";

/// Runs `sql` (its own parameters `first`, then [`CLAIMED`]'s) on the claimed job; if the claim no
/// longer holds (the job was moved since, or taken over), lets go of whatever `owner` still holds of
/// it instead.
fn end_claim(
    conn: &Connection,
    sql: &str,
    first: &[&dyn rusqlite::ToSql],
    job: &ClaimedJob,
    owner: &str,
) -> Result<bool, StoreError> {
    let (kind, subject) = (job.key.kind.as_str(), job.key.subject.as_str());
    let mut all: Vec<&dyn rusqlite::ToSql> = first.to_vec();
    all.extend([
        &kind as &dyn rusqlite::ToSql,
        &subject,
        &job.version,
        &owner,
    ]);
    let applied = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.execute(all.as_slice()))
        .map_err(failure)?
        == 1;
    if !applied {
        conn.prepare_cached(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL
             WHERE kind = ? AND subject = ? AND lease_owner = ?",
        )
        .and_then(|mut s| s.execute(params![kind, subject, owner]))
        .map_err(failure)?;
    }
    Ok(applied)
}
