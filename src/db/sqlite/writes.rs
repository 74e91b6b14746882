//! The writes of a transition and of initialize, each run by the writer thread inside one savepoint.

use super::jobs::{cancel_in, schedule_in};
use super::{failure, insert_events};
use crate::db::*;
use broker_actors::ports::TransferChange;
use broker_protocol::time;
use rusqlite::{params, Connection, OptionalExtension};

pub(super) fn apply_change(
    conn: &Connection,
    c: TransferChange,
    inline_file: Option<bytes::Bytes>,
) -> Result<Option<u64>, StoreError> {
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
    if let Some(token) = c.ends_lease {
        // Fenced: only the upload's current holder ends it (the savepoint undoes this if refused).
        let ended = conn
            .prepare_cached(
                "DELETE FROM upload_leases WHERE file_transfer_id = ? AND part = '' AND token = ?",
            )
            .and_then(|mut s| s.execute(params![id, token as i64]))
            .map_err(failure)?;
        if ended == 0 {
            return Err(StoreError::LeaseLost);
        }
    }
    let updated = conn
        .prepare_cached(
            "UPDATE file_transfers SET
                status = COALESCE(?1, status),
                status_text = CASE WHEN ?1 IS NULL THEN status_text ELSE ?2 END,
                status_changed = CASE WHEN ?1 IS NULL THEN status_changed ELSE ?3 END,
                published = COALESCE(?4, published),
                size = COALESCE(?5, size),
                checksum = CASE WHEN ?6 IS NULL THEN checksum ELSE COALESCE(declared_checksum, ?6) END,
                sha256 = COALESCE(?7, sha256),
                version = version + 1
             WHERE id = ?8 AND status = ?9 AND version = ?10",
        )
        .and_then(|mut s| {
            s.execute(params![
                status,
                text,
                at,
                published,
                size,
                md5,
                sha256,
                id,
                c.expected_status.code(),
                c.expected_version as i64
            ])
        })
        .map_err(failure)?;
    if updated == 0 {
        return Err(StoreError::Conflict);
    }
    let began = match &c.begins_lease {
        Some(begin) => {
            if super::leases::alive_grant(conn, &id, "")?.is_some() {
                return Err(StoreError::LeaseHeld);
            }
            Some(super::leases::grant(
                conn,
                &id,
                "",
                &begin.holder,
                begin.ttl_ms,
            )?)
        }
        None => None,
    };
    if let Some(status) = status {
        conn.prepare_cached("INSERT INTO file_transfer_status_history (file_transfer_id, status, text, changed) VALUES (?, ?, ?, ?)")
            .and_then(|mut s| s.execute(params![id, status, text, at]))
            .map_err(failure)?;
    }
    for (recipient, status) in &c.recipient_rows {
        conn.prepare_cached("INSERT INTO recipient_status_history (file_transfer_id, recipient, status, changed, vendor) VALUES (?, ?, ?, ?, ?)")
            .and_then(|mut s| s.execute(params![id, recipient, status.code(), at, c.vendor]))
            .map_err(failure)?;
        conn.prepare_cached("UPDATE recipients SET status = MAX(status, ?), status_changed = ? WHERE file_transfer_id = ? AND recipient = ?")
            .and_then(|mut s| s.execute(params![status.code(), at, id, recipient]))
            .map_err(failure)?;
    }
    if let Some(bytes) = inline_file {
        conn.prepare_cached(
            "INSERT OR REPLACE INTO inline_files (file_transfer_id, data) VALUES (?, ?)",
        )
        .and_then(|mut s| s.execute(params![id, &bytes[..]]))
        .map_err(failure)?;
    }
    insert_events(conn, c.id, &c.events, &at)?;
    for (key, due_at) in &c.jobs {
        schedule_in(conn, key, *due_at)?;
    }
    for key in &c.cancelled_jobs {
        cancel_in(conn, key)?;
    }
    Ok(began)
}

pub(super) fn insert_transfer(
    conn: &Connection,
    t: NewTransfer,
    events: Vec<CloudEvent>,
    jobs: Vec<(JobKey, Timestamp)>,
) -> Result<Created, StoreError> {
    let created = time::format(&t.created);
    if let Some((key, fingerprint)) = &t.idempotency {
        let since = time::format(&(t.created - Duration::hours(24)));
        let existing = conn
            .prepare_cached(
                "SELECT id, idempotency_hash FROM file_transfers
                 WHERE sender_org = ? AND idempotency_key = ? AND created > ? ORDER BY created DESC LIMIT 1",
            )
            .and_then(|mut s| {
                s.query_row(params![t.sender_org, key, since], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .optional()
            })
            .map_err(failure)?;
        if let Some((id, hash)) = existing {
            if hash.as_deref() != Some(fingerprint.as_str()) {
                return Ok(Created::KeyReused);
            }
            return Ok(Created::Existing(id.parse().map_err(failure)?));
        }
    }
    let id = t.id.to_string();
    conn.prepare_cached(
        "INSERT INTO file_transfers (id, resource_id, file_name, senders_reference, sender, sender_org,
            declared_checksum, checksum, use_virus_scan, size, status, status_text, status_changed, created,
            expiration_time, property_list, idempotency_key, idempotency_hash, sender_vendor)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, NULL, ?, ?, ?, ?, ?, ?, ?)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            t.resource_id,
            t.file_name,
            t.senders_reference,
            t.sender,
            t.sender_org,
            t.declared_checksum,
            t.declared_checksum,
            t.use_virus_scan,
            created,
            created,
            time::format(&t.expiration_time),
            serde_json::to_string(&t.property_list).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?,
            t.idempotency.as_ref().map(|i| i.0.clone()),
            t.idempotency.as_ref().map(|i| i.1.clone()),
            t.sender_vendor,
        ])
    })
    .map_err(failure)?;
    conn.prepare_cached("INSERT INTO file_transfer_status_history (file_transfer_id, status, text, changed) VALUES (?, 0, NULL, ?)")
        .and_then(|mut s| s.execute(params![id, created]))
        .map_err(failure)?;
    let mut recipient = conn
        .prepare_cached("INSERT OR IGNORE INTO recipients (file_transfer_id, recipient, position, status, status_changed) VALUES (?, ?, ?, 0, ?)")
        .map_err(failure)?;
    let mut history = conn
        .prepare_cached("INSERT INTO recipient_status_history (file_transfer_id, recipient, status, changed) VALUES (?, ?, 0, ?)")
        .map_err(failure)?;
    for (position, org) in t.recipients.iter().enumerate() {
        recipient
            .execute(params![id, org, position as i64, created])
            .map_err(failure)?;
        history
            .execute(params![id, org, created])
            .map_err(failure)?;
    }
    insert_events(conn, t.id, &events, &created)?;
    for (key, due_at) in &jobs {
        schedule_in(conn, key, *due_at)?;
    }
    Ok(Created::New(t.id))
}
