//! The statistics port: the monthly rollup the triggers of migration 0010 keep, its rebuild from the
//! histories, and the daily summary. The reports scan many rows, so they run on a blocking thread with
//! a connection of their own rather than on the caller's.

use super::{connect, failure, SqliteStore};
use crate::db::*;
use broker_actors::ports::statistics::{DailyPair, DailyRow, DailySummary, Statistics};
use broker_actors::statistics::MonthlyRow;
use rusqlite::{params, Connection};

/// Text bounds of the month's timestamps: `YYYY-MM` sorts before all of them, and `YYYY-(MM+1)`
/// after (`YYYY-13` after December's, which also works in 9999).
fn month_bounds(year: i32, month: u32) -> (String, String) {
    (
        format!("{year:04}-{month:02}"),
        format!("{year:04}-{:02}", month + 1),
    )
}

/// Recomputes the month's rollup from the histories, inside the writer's transaction:
/// 1. each pair's counts for the month, from the histories, into a temporary table;
/// 2. those counts become the state of every pair whose latest counted month is this one or earlier
///    (so the next change adds to the right key); the triggers this fires touch only this month's
///    rollup rows, which
/// 3. are then replaced by the sums of the recomputed counts.
fn rebuild(conn: &Connection, year: i32, month: u32) -> Result<(), StoreError> {
    let (start, end) = month_bounds(year, month);
    let exec = |sql: &str, p: &[&dyn rusqlite::ToSql]| {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute(p))
            .map_err(failure)
    };
    exec(
        "CREATE TEMP TABLE IF NOT EXISTS rebuilt_pairs (
             file_transfer_id TEXT NOT NULL, recipient TEXT NOT NULL, created INTEGER NOT NULL,
             published INTEGER NOT NULL, attempts INTEGER NOT NULL, confirmed INTEGER NOT NULL,
             vendor TEXT NOT NULL, PRIMARY KEY (file_transfer_id, recipient))",
        params![],
    )?;
    exec("DELETE FROM temp.rebuilt_pairs", params![])?;
    exec(
        "INSERT INTO temp.rebuilt_pairs
         SELECT e.file_transfer_id, e.recipient, MAX(e.created), MAX(e.published), SUM(e.attempts),
             MAX(e.confirmed),
             COALESCE((SELECT h.vendor FROM recipient_status_history h
                       WHERE h.file_transfer_id = e.file_transfer_id AND h.recipient = e.recipient
                         AND h.changed >= ?1 AND h.changed < ?2 AND h.vendor IS NOT NULL
                       ORDER BY h.seq DESC LIMIT 1), '')
         FROM (
             SELECT file_transfer_id, recipient, status = 0 AS created, 0 AS published,
                 status = 1 AS attempts, status = 2 AS confirmed
             FROM recipient_status_history
             WHERE changed >= ?1 AND changed < ?2 AND status IN (0, 1, 2)
             UNION ALL
             SELECT rc.file_transfer_id, rc.recipient, 0, 1, 0, 0
             FROM file_transfer_status_history s
                 JOIN recipients rc ON rc.file_transfer_id = s.file_transfer_id
             WHERE s.status = 3 AND s.changed >= ?1 AND s.changed < ?2
         ) e
         WHERE true
         GROUP BY e.file_transfer_id, e.recipient",
        params![start, end],
    )?;
    // A pair kept as of this month but absent from the histories (drift) keeps nothing.
    exec(
        "UPDATE recipients SET stats_month = NULL WHERE stats_month = ?1",
        params![start],
    )?;
    exec(
        "UPDATE recipients SET stats_month = ?1, stats_created = p.created,
             stats_published = p.published, stats_attempts = p.attempts,
             stats_confirmed = p.confirmed, stats_vendor = p.vendor
         FROM temp.rebuilt_pairs p
         WHERE recipients.file_transfer_id = p.file_transfer_id AND recipients.recipient = p.recipient
           AND (recipients.stats_month IS NULL OR recipients.stats_month < ?1)",
        params![start],
    )?;
    exec(
        "DELETE FROM monthly_statistics WHERE year = ?1 AND month = ?2",
        params![year, month],
    )?;
    exec(
        "INSERT INTO monthly_statistics
         SELECT r.service_owner_id, ?1, ?2, t.resource_id, t.sender_org, p.recipient,
             COALESCE(t.sender_vendor, ''), p.vendor, SUM(p.created), SUM(p.published),
             SUM(p.attempts), SUM(p.confirmed)
         FROM temp.rebuilt_pairs p
             JOIN file_transfers t ON t.id = p.file_transfer_id JOIN resources r ON r.id = t.resource_id
         WHERE true
         GROUP BY r.service_owner_id, t.resource_id, t.sender_org, p.recipient,
             COALESCE(t.sender_vendor, ''), p.vendor",
        params![year, month],
    )?;
    exec("DELETE FROM temp.rebuilt_pairs", params![])?;
    Ok(())
}

fn monthly_rows(
    conn: &Connection,
    owner: &str,
    year: i32,
    month: u32,
    resource: Option<&str>,
) -> Result<Vec<MonthlyRow>, StoreError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT resource_id, sender, recipient, sender_vendor, recipient_vendor, total_file_transfers,
                 upload_count, download_attempts, downloads_confirmed
             FROM monthly_statistics
             WHERE service_owner_id = ?1 AND year = ?2 AND month = ?3
               AND (?4 IS NULL OR resource_id = ?4)",
        )
        .map_err(failure)?;
    let rows = statement
        .query_map(params![owner, year, month, resource], |r| {
            let count = |i| r.get::<_, i64>(i).map(|n| n.max(0) as u64);
            Ok(MonthlyRow {
                year,
                month,
                resource_id: r.get(0)?,
                sender: r.get(1)?,
                recipient: r.get(2)?,
                sender_vendor: r.get(3)?,
                recipient_vendor: r.get(4)?,
                total_file_transfers: count(5)?,
                upload_count: count(6)?,
                download_attempts: count(7)?,
                downloads_confirmed: count(8)?,
            })
        })
        .map_err(failure)?;
    rows.collect::<Result<_, _>>().map_err(failure)
}

fn daily_rows(conn: &Connection, excluded: &[String]) -> Result<Vec<DailyRow>, StoreError> {
    // The filter is a short operator-set list, passed as a JSON array.
    let excluded = serde_json::to_string(excluded).map_err(failure)?;
    let mut statement = conn
        .prepare_cached(
            "SELECT substr(t.created, 1, 10), o.id, o.name, t.sender_org, t.resource_id, rc.recipient, t.size
             FROM file_transfers t
                 JOIN resources r ON r.id = t.resource_id
                 JOIN service_owners o ON o.id = r.service_owner_id
                 JOIN recipients rc ON rc.file_transfer_id = t.id
             WHERE NOT (t.resource_id IN (SELECT value FROM json_each(?1))
                        AND lower(COALESCE(json_extract(t.property_list, '$.statusmessage'), '')) = 'true')",
        )
        .map_err(failure)?;
    let mut summary = DailySummary::default();
    let mut rows = statement.query(params![excluded]).map_err(failure)?;
    while let Some(r) = rows.next().map_err(failure)? {
        let text = |i| r.get_ref(i).and_then(|v| Ok(v.as_str()?)).map_err(failure);
        summary.add(DailyPair {
            date: text(0)?,
            service_owner_id: text(1)?,
            service_owner_name: text(2)?,
            sender_org: text(3)?,
            resource_id: text(4)?,
            recipient: text(5)?,
            size: r.get::<_, i64>(6).map_err(failure)?.max(0) as u64,
        });
    }
    Ok(summary.rows())
}

impl SqliteStore {
    /// Runs a report's read on a blocking thread, with a connection of its own.
    async fn report<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || work(&connect(&path)?))
            .await
            .map_err(failure)?
    }
}

#[async_trait]
impl Statistics for SqliteStore {
    async fn monthly_rows(
        &self,
        service_owner: &str,
        year: i32,
        month: u32,
        resource: Option<&str>,
    ) -> Result<Vec<MonthlyRow>, StoreError> {
        let (owner, resource) = (service_owner.to_string(), resource.map(str::to_string));
        self.report(move |conn| monthly_rows(conn, &owner, year, month, resource.as_deref()))
            .await
    }

    async fn rebuild_month(&self, year: i32, month: u32) -> Result<(), StoreError> {
        self.write(move |conn| rebuild(conn, year, month)).await
    }

    async fn daily_rows(
        &self,
        status_message_resources: &[String],
    ) -> Result<Vec<DailyRow>, StoreError> {
        let excluded = status_message_resources.to_vec();
        self.report(move |conn| daily_rows(conn, &excluded)).await
    }
}
