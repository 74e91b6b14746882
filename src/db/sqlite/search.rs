//! The search query, built from the filters given: one statement per combination, each prepared once.

use crate::db::*;
use broker_protocol::time;
use rusqlite::types::Value;

/// The SQL and its parameters for `q`: the ids of matching transfers, newest first unless ascending.
pub(super) fn search_statement(q: &SearchQuery) -> (String, Vec<Value>) {
    // The sort date is the time the transfer entered the filtered status, else its creation.
    let sort = if q.status.is_some() {
        "f.status_changed"
    } else {
        "f.created"
    };
    let mut sql = String::from("SELECT f.id FROM file_transfers f WHERE f.resource_id = ?");
    let mut binds: Vec<Value> = vec![Value::Text(q.resource_id.clone())];
    let org = || Value::Text(q.caller_org.clone());
    if let Some(rs) = q.recipient_status {
        sql.push_str(" AND EXISTS (SELECT 1 FROM recipients r WHERE r.file_transfer_id = f.id AND r.recipient = ? AND r.status = ?)");
        binds.extend([org(), Value::Integer(rs.code())]);
    } else {
        sql.push_str(" AND (0");
        if q.role != Some(Role::Recipient) {
            sql.push_str(" OR f.sender_org = ?");
            binds.push(org());
        }
        if q.role != Some(Role::Sender) {
            sql.push_str(" OR EXISTS (SELECT 1 FROM recipients r WHERE r.file_transfer_id = f.id AND r.recipient = ?)");
            binds.push(org());
        }
        sql.push(')');
    }
    if let Some(s) = q.status {
        sql.push_str(" AND f.status = ?");
        binds.push(Value::Integer(s.code()));
    }
    let moment = |t: &Timestamp| Value::Text(time::format(t));
    match (q.from, q.to) {
        (Some(from), Some(to)) => {
            sql.push_str(&format!(" AND {sort} BETWEEN ? AND ?"));
            binds.extend([moment(&from), moment(&to)]);
        }
        (Some(from), None) => {
            sql.push_str(&format!(" AND {sort} > ?"));
            binds.push(moment(&from));
        }
        (None, Some(to)) => {
            sql.push_str(&format!(" AND {sort} < ?"));
            binds.push(moment(&to));
        }
        (None, None) => {}
    }
    sql.push_str(&format!(
        " ORDER BY {sort} {} LIMIT {SEARCH_LIMIT}",
        if q.ascending { "ASC" } else { "DESC" }
    ));
    (sql, binds)
}

/// How many transfers are in each status (read from the search index by resource and status, which
/// holds the status: smaller than the table).
pub(super) fn transfer_counts(
    conn: &rusqlite::Connection,
) -> Result<Vec<(FileTransferStatus, u64)>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT status, COUNT(*) FROM file_transfers GROUP BY status ORDER BY status",
        )
        .and_then(|mut s| {
            s.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(super::failure)?;
    rows.into_iter()
        .map(|(code, n)| Ok((super::status_of(code)?, n as u64)))
        .collect()
}
