//! tus concatenation: an upload sent as parallel parts (`Upload-Concat: partial`), joined by a `final`
//! upload that lists them. The parts are not copied: the transfer's file becomes the list of parts and
//! reads span them. The whole file's MD5 and SHA-256 are computed over the parts in order after the final
//! upload was answered (one more read of the data: parts are not hashed while they stream, so four
//! parallel parts do not need four cores of MD5).

use super::{max_size, tus_error, tus_header, TUS_VERSION};
use crate::app::App;
use crate::db::{PartAdmission, TransferView};
use crate::http::error::ApiError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use broker_protocol::ErrorCode;
use std::collections::HashSet;
use std::sync::Mutex;
use uuid::Uuid;

/// Parts with a PATCH in flight: one request at a time per part.
#[derive(Default)]
pub struct PartLocks(Mutex<HashSet<(Uuid, String)>>);

/// Held while a request appends to a part; released on drop.
pub struct PartLock {
    app: App,
    key: (Uuid, String),
}

impl PartLock {
    pub fn take(app: &App, id: Uuid, part: &str) -> Result<PartLock, ApiError> {
        let key = (id, part.to_string());
        if !app
            .tus_part_locks
            .0
            .lock()
            .expect("part locks")
            .insert(key.clone())
        {
            return Err(ErrorCode::FileTransferAlreadyUploaded.into());
        }
        Ok(PartLock {
            app: app.clone(),
            key,
        })
    }
}

impl Drop for PartLock {
    fn drop(&mut self) {
        self.app
            .tus_part_locks
            .0
            .lock()
            .expect("part locks")
            .remove(&self.key);
    }
}

/// Makes the transfer's file the list of `parts` and records the joined upload; its check follows in
/// the background. Returns the joined size.
async fn join(
    app: App,
    lease: broker_actors::UploadLease,
    view: TransferView,
    parts: Vec<String>,
) -> Result<u64, ApiError> {
    let id = lease.transfer_id();
    app.blobs
        .concat(id, &parts)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut size = 0u64;
    for part in &parts {
        let length = app.sessions.get(id, part).await?.and_then(|r| r.length);
        size += length.ok_or_else(|| ApiError::Internal(format!("the part {part} disappeared")))?;
    }
    // The joined upload is recorded complete before its parts are forgotten, so a restart in between
    // still finds it (and verifies it).
    app.sessions
        .record_joined(id, size, app.clock.now())
        .await?;
    for part in &parts {
        app.sessions.remove(id, part).await?;
    }
    // UploadProcessing silently (spec 4.5); the whole file is hashed, parts in order, after the reply.
    crate::finalize::complete(&app, lease, &view, true, size, None).await?;
    Ok(size)
}

fn valid_part_id(part: &str) -> bool {
    part.len() == 32 && part.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `POST` with `Upload-Concat: partial`: a new part with its own URL.
pub async fn create_part(
    app: &App,
    view: &TransferView,
    length: Option<u64>,
) -> Result<Response, ApiError> {
    let Some(length) = length else {
        return Ok(tus_error(
            StatusCode::BAD_REQUEST,
            "A partial upload needs Upload-Length",
        ));
    };
    let max_total = max_size(app, view).await?;
    if length > max_total {
        return Err(ErrorCode::FileSizeExceedsMaximum.into());
    }
    // The transfer enters UploadStarted with its first part; parts are created concurrently, so none
    // takes the upload slot.
    app.lifecycle.record_upload_started(view.id).await?;
    let part = Uuid::new_v4().simple().to_string();
    // Counted and checked against the maximum with every other part, atomically: parts alone must not
    // add up to more than one upload may hold.
    let admission = app
        .sessions
        .create_part(
            view.id,
            &part,
            length,
            app.clock.now(),
            app.config.limits.max_tus_parts,
            max_total,
        )
        .await?;
    match admission {
        PartAdmission::Created => {}
        PartAdmission::TooManyParts => return Err(ErrorCode::TooManyTusParts.into()),
        PartAdmission::TooLarge => return Err(ErrorCode::FileSizeExceedsMaximum.into()),
    }
    let created = async {
        let writer = app.blobs.open_append(view.id, Some(&part), 0).await?;
        writer.commit().await
    };
    if let Err(e) = created.await {
        let _ = app.sessions.remove(view.id, &part).await;
        return Err(ApiError::Internal(e.to_string()));
    }
    let location = format!(
        "/broker/api/v1/filetransfer/upload/tus/{}/partial/{part}",
        view.id
    );
    Ok((
        StatusCode::CREATED,
        [
            tus_header("tus-resumable", TUS_VERSION),
            tus_header("upload-concat", "partial"),
            (
                header::LOCATION,
                HeaderValue::from_str(&location).expect("ids are ASCII"),
            ),
        ],
    )
        .into_response())
}

/// `POST` with `Upload-Concat: final;<url> <url> …`: joins complete parts of this transfer, in order;
/// verifying and publishing the whole file follow in the background.
pub async fn finish(app: &App, view: &TransferView, urls: &[&str]) -> Result<Response, ApiError> {
    let mut parts: Vec<String> = Vec::new();
    let mut total = 0u64;
    for url in urls {
        let part = url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default();
        let prefix = format!("/filetransfer/upload/tus/{}/", view.id);
        if !url.contains(&prefix) || !valid_part_id(part) {
            return Ok(tus_error(
                StatusCode::BAD_REQUEST,
                &format!("{url} is not a partial upload of this file transfer"),
            ));
        }
        if parts.iter().any(|p| p == part) {
            return Ok(tus_error(
                StatusCode::BAD_REQUEST,
                &format!("the partial upload {part} is listed twice"),
            ));
        }
        match app.sessions.get(view.id, part).await? {
            Some(row) if row.length == Some(row.offset) => {
                total = total.saturating_add(row.offset);
                parts.push(part.to_string())
            }
            Some(_) => {
                return Ok(tus_error(
                    StatusCode::BAD_REQUEST,
                    &format!("the partial upload {part} is not complete"),
                ))
            }
            None => {
                return Ok(tus_error(
                    StatusCode::BAD_REQUEST,
                    &format!("no partial upload {part}"),
                ))
            }
        }
    }
    // The limits may have been lowered since the parts were created.
    if total > max_size(app, view).await? {
        return Err(ErrorCode::FileSizeExceedsMaximum.into());
    }
    if parts.is_empty() {
        return Ok(tus_error(
            StatusCode::BAD_REQUEST,
            "Upload-Concat: final lists no partial uploads",
        ));
    }
    let mut lease = app.lifecycle.begin_upload(view.id).await?;
    lease.keep_bytes_on_drop();
    // Joining must not be cut short by the client going away: it runs on its own task.
    let size = tokio::spawn(join(app.clone(), lease, view.clone(), parts))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let location = format!("/broker/api/v1/filetransfer/upload/tus/{}", view.id);
    Ok((
        StatusCode::CREATED,
        [
            tus_header("tus-resumable", TUS_VERSION),
            tus_header("upload-length", size),
            (
                header::LOCATION,
                HeaderValue::from_str(&location).expect("ids are ASCII"),
            ),
        ],
    )
        .into_response())
}

/// `DELETE` on a part (termination): removes the part's bytes; a PATCH still running on it is stopped
/// first.
pub async fn terminate_part(
    app: &App,
    view: &TransferView,
    part: &str,
) -> Result<Response, ApiError> {
    if !valid_part_id(part) || app.sessions.get(view.id, part).await?.is_none() {
        return Ok(tus_error(
            StatusCode::NOT_FOUND,
            "No such partial upload for this file transfer",
        ));
    }
    super::append::stop_running(app, view.id, Some(part)).await;
    let _lock = PartLock::take(app, view.id, part)?;
    // The upload slot, so a `final` joining this part cannot be under way (409 while it is).
    let lease = app.lifecycle.begin_upload(view.id).await?;
    app.sessions
        .terminate(view.id, part, app.clock.now())
        .await?;
    if let Err(e) = app.blobs.delete_part(view.id, part).await {
        tracing::warn!(id = %view.id, part, error = %e, "could not remove a terminated part's bytes");
    }
    lease.release().await;
    Ok((
        StatusCode::NO_CONTENT,
        [tus_header("tus-resumable", TUS_VERSION)],
    )
        .into_response())
}
