//! The writes of a transition and of initialize, each run by the writer task inside one savepoint.

use super::jobs::{cancel_in, schedule_in};
use super::{failure, insert_events};
use crate::db::*;
use broker_actors::ports::TransferChange;
use broker_protocol::time;
use sqlx::sqlite::SqliteConnection;
use sqlx::Row;

pub(super) async fn apply_change(
    conn: &mut SqliteConnection,
    c: TransferChange,
) -> Result<(), StoreError> {
    let at = time::format(&c.at);
    let id = c.id.to_string();
    let (status, text) = match &c.new_status {
        Some((s, t)) => (Some(s.code()), t.clone()),
        None => (None, None),
    };
    let published = (c.new_status.as_ref().map(|s| s.0) == Some(FileTransferStatus::Published))
        .then(|| at.clone());
    let (size, md5, sha256) = match &c.stored_file {
        Some(f) => (
            Some(f.size as i64),
            Some(f.md5.clone()),
            Some(f.sha256.clone()),
        ),
        None => (None, None, None),
    };
    let updated = sqlx::query(
        "UPDATE file_transfers SET
            status = COALESCE(?1, status),
            status_text = CASE WHEN ?1 IS NULL THEN status_text ELSE ?2 END,
            status_changed = CASE WHEN ?1 IS NULL THEN status_changed ELSE ?3 END,
            published = COALESCE(?4, published),
            size = COALESCE(?5, size),
            checksum = CASE WHEN ?6 IS NULL THEN checksum ELSE COALESCE(declared_checksum, ?6) END,
            sha256 = COALESCE(?7, sha256)
         WHERE id = ?8 AND status = ?9",
    )
    .bind(status)
    .bind(text.clone())
    .bind(&at)
    .bind(published)
    .bind(size)
    .bind(md5)
    .bind(sha256)
    .bind(&id)
    .bind(c.expected_status.code())
    .execute(&mut *conn)
    .await
    .map_err(failure)?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::Conflict);
    }
    if let Some(status) = status {
        sqlx::query("INSERT INTO file_transfer_status_history (file_transfer_id, status, text, changed) VALUES (?, ?, ?, ?)")
            .bind(&id).bind(status).bind(text).bind(&at)
            .execute(&mut *conn).await.map_err(failure)?;
    }
    for (recipient, status) in &c.recipient_rows {
        sqlx::query("INSERT INTO recipient_status_history (file_transfer_id, recipient, status, changed) VALUES (?, ?, ?, ?)")
            .bind(&id).bind(recipient).bind(status.code()).bind(&at)
            .execute(&mut *conn).await.map_err(failure)?;
        sqlx::query("UPDATE recipients SET status = MAX(status, ?), status_changed = ? WHERE file_transfer_id = ? AND recipient = ?")
            .bind(status.code()).bind(&at).bind(&id).bind(recipient)
            .execute(&mut *conn).await.map_err(failure)?;
    }
    insert_events(conn, c.id, &c.events, &at).await?;
    for (key, due_at) in &c.jobs {
        schedule_in(conn, key, *due_at).await?;
    }
    for key in &c.cancelled_jobs {
        cancel_in(conn, key).await?;
    }
    Ok(())
}

pub(super) async fn insert_transfer(
    conn: &mut SqliteConnection,
    t: NewTransfer,
    events: Vec<CloudEvent>,
    jobs: Vec<(JobKey, Timestamp)>,
) -> Result<Created, StoreError> {
    let created = time::format(&t.created);
    if let Some((key, fingerprint)) = &t.idempotency {
        let since = time::format(&(t.created - Duration::hours(24)));
        let existing = sqlx::query(
            "SELECT id, idempotency_hash FROM file_transfers
             WHERE sender_org = ? AND idempotency_key = ? AND created > ? ORDER BY created DESC LIMIT 1",
        )
        .bind(&t.sender_org)
        .bind(key)
        .bind(since)
        .fetch_optional(&mut *conn)
        .await
        .map_err(failure)?;
        if let Some(row) = existing {
            let hash: Option<String> = row.get(1);
            if hash.as_deref() != Some(fingerprint.as_str()) {
                return Ok(Created::KeyReused);
            }
            let id: String = row.get(0);
            return Ok(Created::Existing(id.parse().map_err(failure)?));
        }
    }
    let id = t.id.to_string();
    sqlx::query(
        "INSERT INTO file_transfers (id, resource_id, file_name, senders_reference, sender, sender_org,
            declared_checksum, checksum, use_virus_scan, size, status, status_text, status_changed, created,
            expiration_time, property_list, idempotency_key, idempotency_hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, NULL, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(&t.resource_id)
    .bind(&t.file_name)
    .bind(&t.senders_reference)
    .bind(&t.sender)
    .bind(&t.sender_org)
    .bind(&t.declared_checksum)
    .bind(&t.declared_checksum)
    .bind(t.use_virus_scan)
    .bind(&created)
    .bind(&created)
    .bind(time::format(&t.expiration_time))
    .bind(serde_json::to_string(&t.property_list).map_err(failure)?)
    .bind(t.idempotency.as_ref().map(|i| i.0.clone()))
    .bind(t.idempotency.as_ref().map(|i| i.1.clone()))
    .execute(&mut *conn)
    .await
    .map_err(failure)?;
    sqlx::query("INSERT INTO file_transfer_status_history (file_transfer_id, status, text, changed) VALUES (?, 0, NULL, ?)")
        .bind(&id).bind(&created)
        .execute(&mut *conn).await.map_err(failure)?;
    for (position, recipient) in t.recipients.iter().enumerate() {
        sqlx::query("INSERT OR IGNORE INTO recipients (file_transfer_id, recipient, position, status, status_changed) VALUES (?, ?, ?, 0, ?)")
            .bind(&id).bind(recipient).bind(position as i64).bind(&created)
            .execute(&mut *conn).await.map_err(failure)?;
        sqlx::query("INSERT INTO recipient_status_history (file_transfer_id, recipient, status, changed) VALUES (?, ?, 0, ?)")
            .bind(&id).bind(recipient).bind(&created)
            .execute(&mut *conn).await.map_err(failure)?;
    }
    insert_events(conn, t.id, &events, &created).await?;
    for (key, due_at) in &jobs {
        schedule_in(conn, key, *due_at).await?;
    }
    Ok(Created::New(t.id))
}
