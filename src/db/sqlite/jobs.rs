//! The jobs port on SQLite. Every change runs on the one writer, so a claim (select the due rows, mark
//! them leased) is atomic without row locks; PostgreSQL will use `FOR UPDATE SKIP LOCKED`.

use super::{failure, SqliteStore};
use crate::db::*;
use broker_actors::ports::jobs::{ClaimedJob, JobKey, JobKind, Jobs};
use sqlx::Row;

fn micros(t: Timestamp) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> Result<Timestamp, StoreError> {
    chrono::DateTime::from_timestamp_micros(us).ok_or_else(|| failure(format!("bad time {us}")))
}

/// A version no earlier schedule used: the writer is the only one to take them.
const NEXT_VERSION: &str = "(SELECT COALESCE(MAX(version), 0) + 1 FROM jobs)";

#[async_trait]
impl Jobs for SqliteStore {
    async fn schedule(&self, key: &JobKey, due_at: Timestamp) -> Result<(), StoreError> {
        let key = key.clone();
        self.write(move |conn| Box::pin(async move { schedule_in(conn, &key, due_at).await }))
            .await
    }

    async fn cancel(&self, key: &JobKey) -> Result<(), StoreError> {
        let key = key.clone();
        self.write(move |conn| Box::pin(async move { cancel_in(conn, &key).await }))
            .await
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
            Box::pin(async move {
                let rows = sqlx::query(
                    "UPDATE jobs SET lease_owner = ?1, lease_until = ?2
                     WHERE rowid IN (SELECT rowid FROM jobs
                                     WHERE due_at <= ?3 AND (lease_until IS NULL OR lease_until <= ?3)
                                     ORDER BY due_at, kind, subject LIMIT ?4)
                     RETURNING kind, subject, due_at, attempts, version",
                )
                .bind(owner)
                .bind(micros(lease_until))
                .bind(micros(now))
                .bind(limit as i64)
                .fetch_all(&mut *conn)
                .await
                .map_err(failure)?;
                let mut claimed = rows
                    .iter()
                    .map(|r| {
                        let kind: &str = r.get(0);
                        Ok(ClaimedJob {
                            key: JobKey::new(
                                JobKind::parse(kind)
                                    .ok_or_else(|| failure(format!("unknown job kind {kind}")))?,
                                r.get::<String, _>(1),
                            ),
                            due_at: from_micros(r.get(2))?,
                            attempts: r.get::<i64, _>(3) as u32,
                            version: r.get(4),
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                claimed.sort_by(|a, b| (a.due_at, &a.key).cmp(&(b.due_at, &b.key)));
                Ok(claimed)
            })
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
            Box::pin(async move {
                let sql = format!("UPDATE jobs SET lease_until = ? WHERE {CLAIMED}");
                let renewed = sqlx::query(&sql)
                    .bind(micros(lease_until))
                    .bind(job.key.kind.as_str())
                    .bind(&job.key.subject)
                    .bind(job.version)
                    .bind(&owner)
                    .execute(&mut *conn)
                    .await
                    .map_err(failure)?;
                Ok(renewed.rows_affected() == 1)
            })
        })
        .await
    }

    async fn complete(&self, job: &ClaimedJob, owner: &str) -> Result<bool, StoreError> {
        let (job, owner) = (job.clone(), owner.to_string());
        self.write(move |conn| {
            Box::pin(async move {
                let sql = format!("DELETE FROM jobs WHERE {CLAIMED}");
                end_claim(conn, sqlx::query(&sql), &job, &owner).await
            })
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
            Box::pin(async move {
                let sql = format!(
                    "UPDATE jobs SET due_at = ?, attempts = attempts + 1, last_error = ?,
                            lease_owner = NULL, lease_until = NULL
                     WHERE {CLAIMED}"
                );
                let update = sqlx::query(&sql).bind(micros(due_at)).bind(error);
                end_claim(conn, update, &job, &owner).await
            })
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        // Two index lookups, not a scan: the earliest job nobody holds, and the end of the few leases.
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(t) FROM (
                SELECT MIN(due_at) AS t FROM jobs WHERE lease_until IS NULL
                UNION ALL
                SELECT MIN(MAX(due_at, lease_until)) FROM jobs WHERE lease_until IS NOT NULL)",
        )
        .fetch_one(&self.reads)
        .await
        .map_err(failure)?;
        next.map(from_micros).transpose()
    }

    async fn get(&self, key: &JobKey) -> Result<Option<(Timestamp, u32)>, StoreError> {
        let row = sqlx::query("SELECT due_at, attempts FROM jobs WHERE kind = ? AND subject = ?")
            .bind(key.kind.as_str())
            .bind(&key.subject)
            .fetch_optional(&self.reads)
            .await
            .map_err(failure)?;
        row.map(|r| Ok((from_micros(r.get(0))?, r.get::<i64, _>(1) as u32)))
            .transpose()
    }
}

/// Schedules (or moves) the job `key` on the writer's connection: alone, or with the transition that
/// asks for it.
pub(super) async fn schedule_in(
    conn: &mut sqlx::SqliteConnection,
    key: &JobKey,
    due_at: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO jobs (kind, subject, due_at, attempts, version) VALUES (?, ?, ?, 0, {NEXT_VERSION})
         ON CONFLICT(kind, subject) DO UPDATE SET due_at = excluded.due_at, attempts = 0, version = excluded.version"
    ))
    .bind(key.kind.as_str())
    .bind(&key.subject)
    .bind(micros(due_at))
    .execute(&mut *conn)
    .await
    .map_err(failure)?;
    Ok(())
}

/// Removes the job `key` on the writer's connection, alone or with the transition that ends it.
pub(super) async fn cancel_in(
    conn: &mut sqlx::SqliteConnection,
    key: &JobKey,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM jobs WHERE kind = ? AND subject = ?")
        .bind(key.kind.as_str())
        .bind(&key.subject)
        .execute(&mut *conn)
        .await
        .map_err(failure)?;
    Ok(())
}

/// The rows a claim still holds: its job, under the schedule claimed, leased by its claimer.
const CLAIMED: &str = "kind = ? AND subject = ? AND version = ? AND lease_owner = ?";

/// Runs `statement` (ending in [`CLAIMED`]) on the claimed job; if the claim no longer holds (the job
/// was moved since, or taken over), lets go of whatever `owner` still holds of it instead.
async fn end_claim<'q>(
    conn: &mut sqlx::SqliteConnection,
    statement: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    job: &'q ClaimedJob,
    owner: &'q str,
) -> Result<bool, StoreError> {
    let (kind, subject) = (job.key.kind.as_str(), job.key.subject.as_str());
    let applied = statement
        .bind(kind)
        .bind(subject)
        .bind(job.version)
        .bind(owner)
        .execute(&mut *conn)
        .await
        .map_err(failure)?
        .rows_affected()
        == 1;
    if !applied {
        sqlx::query(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL
             WHERE kind = ? AND subject = ? AND lease_owner = ?",
        )
        .bind(kind)
        .bind(subject)
        .bind(owner)
        .execute(&mut *conn)
        .await
        .map_err(failure)?;
    }
    Ok(applied)
}
