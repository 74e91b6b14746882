//! Binary upload (`POST /filetransfer/{id}/upload`) and initialize-and-upload (multipart/form-data).
//! Bodies stream through the upload pipeline; nothing is buffered whole.

use crate::app::{parse_transfer_id, require_sender, size_limit, App, Policy};
use crate::db::{NewTransfer, ResourceRow, TransferView};
use crate::http::error::ApiError;
use crate::http::form::{FormMetadata, FormReader, FILE_FIELD};
use crate::http::transfers::{create_transfer, prepare_transfer, IDEMPOTENCY_KEY};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use broker_actors::state::{StoredFile, UploadFailure};
use broker_actors::upload::{stream_into_blob, StreamError};
use broker_actors::UploadLease;
use broker_protocol::transfer::FileTransferInitializeResponse;
use broker_protocol::{ErrorCode, FileTransferStatus};
use futures::Stream;
use uuid::Uuid;

/// The largest file the form-data upload takes (spec 1.4: the original's multipart limit, int.MaxValue);
/// larger files go through initialize and a binary or resumable upload.
pub const MAX_FORM_FILE_SIZE: u64 = i32::MAX as u64;

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Uploads the file of an initialized transfer as one streamed request body.
#[utoipa::path(post, path = "/broker/api/v1/filetransfer/{fileTransferId}/upload", tag = "File transfer",
    params(("fileTransferId" = Uuid, Path)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = FileTransferInitializeResponse), (status = 400, body = broker_protocol::ProblemDetails),
        (status = 401), (status = 404, body = broker_protocol::ProblemDetails), (status = 409, body = broker_protocol::ProblemDetails),
        (status = 500, body = broker_protocol::ProblemDetails), (status = 503, body = broker_protocol::ProblemDetails),
        (status = 507, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:broker.write"])))]
pub async fn upload(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<FileTransferInitializeResponse>, ApiError> {
    let caller = app.authorize(&headers, Policy::Sender).await?;
    let view = app.transfer(parse_transfer_id(&id)?).await?;
    require_sender(&caller, &view)?;
    if view.status > FileTransferStatus::UploadStarted {
        return Err(ErrorCode::FileTransferAlreadyUploaded.into());
    }
    let resource = app.resource_of(&view).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/octet-stream")
    {
        return Err(ApiError::UnsupportedMediaType("application/octet-stream"));
    }
    let limit = check_size(&app, &view, &resource, declared_length(&headers)).await?;
    store_upload(&app, view.id, body.into_data_stream(), limit).await?;
    Ok(Json(FileTransferInitializeResponse {
        file_transfer_id: view.id,
    }))
}

/// Refuses a declared length above the transfer's limits (400 `16`) or the free space (507 `9001`),
/// and returns the limit to enforce while streaming.
async fn check_size(
    app: &App,
    view: &TransferView,
    resource: &ResourceRow,
    declared: Option<u64>,
) -> Result<u64, ApiError> {
    let limit = size_limit(view, resource);
    if let Some(len) = declared {
        if len > limit {
            return Err(ErrorCode::FileSizeExceedsMaximum.into());
        }
        check_free_space(app, len).await?;
    }
    Ok(limit)
}

async fn check_free_space(app: &App, len: u64) -> Result<(), ApiError> {
    if let Ok(Some(free)) = app.blobs.available_space().await {
        if len > free.saturating_sub(app.config.storage.reserve_bytes) {
            return Err(ErrorCode::InsufficientStorage.into());
        }
    }
    Ok(())
}

/// Our storage failed: the transfer fails (500 `8`) and its bytes are removed.
pub(crate) async fn fail_storage(lease: UploadLease, error: impl std::fmt::Display) -> ApiError {
    tracing::error!(id = %lease.transfer_id(), %error, "storage failed during upload");
    match lease.fail(UploadFailure::Storage).await {
        Err(e) => e.into(),
        Ok(()) => ErrorCode::UploadFailed.into(),
    }
}

/// Claims the upload slot, streams the body into storage with hashing, and hands the result to the
/// transfer's supervisor. A cut body or a shutdown leaves the transfer UploadStarted and retryable.
async fn store_upload<S, E>(app: &App, id: Uuid, body: S, limit: u64) -> Result<(), ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::fmt::Display,
{
    // Each streaming upload holds a few threads and MiB: bound how many run at once.
    let _permit = app
        .upload_permits
        .try_acquire()
        .map_err(|_| ApiError::Code(ErrorCode::TooManyUploads))?;
    let lease = app.lifecycle.begin_upload(id).await?;
    // A binary upload starts the file over: a resumable upload begun earlier no longer applies.
    app.store.delete_tus(id, "").await?;
    app.tus_hashes.forget(id);
    let writer = match app.blobs.create(id).await {
        Ok(w) => w,
        Err(e) => return Err(fail_storage(lease, e).await),
    };
    // Every request body already keeps the minimum data rate (`http::connections`).
    let streamed = tokio::select! {
        r = stream_into_blob(body, writer, Some(limit)) => r,
        _ = app.shutdown.cancelled() => return Err(ErrorCode::ShuttingDown.into()),
    };
    match streamed {
        Ok(file) => Ok(lease.complete(file).await?),
        Err(StreamError::Body(e)) => Err(ApiError::BadRequest(format!(
            "The upload was interrupted: {e}. Retry the upload."
        ))),
        Err(StreamError::TooLarge(_)) => Err(ErrorCode::FileSizeExceedsMaximum.into()),
        Err(StreamError::Storage(e)) => Err(fail_storage(lease, e).await),
    }
}

/// Bytes stored for a transfer not created yet. Dropped unclaimed (the request failed or its client
/// went away), they are removed.
struct Unclaimed {
    app: App,
    id: Uuid,
    claimed: bool,
}

impl Unclaimed {
    fn new(app: &App, id: Uuid) -> Unclaimed {
        Unclaimed {
            app: app.clone(),
            id,
            claimed: false,
        }
    }

    /// A transfer's upload lease holds the bytes now (and removes them if it is abandoned).
    fn claim(mut self) {
        self.claimed = true;
    }

    /// Removes the bytes now.
    async fn discard(mut self) {
        self.claimed = true;
        remove_blob(&self.app, self.id).await;
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if self.claimed {
            return;
        }
        let (app, id) = (self.app.clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { remove_blob(&app, id).await });
        }
    }
}

async fn remove_blob(app: &App, id: Uuid) {
    if let Err(e) = app.blobs.delete(id).await {
        tracing::warn!(%id, error = %e, "could not remove a refused upload's bytes");
    }
}

/// Streams the body into a new file for `id` (no transfer holds it yet) with hashing.
async fn store_unclaimed<S, E>(
    app: &App,
    id: Uuid,
    body: S,
    limit: u64,
) -> Result<StoredFile, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::fmt::Display,
{
    let writer = app
        .blobs
        .create(id)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let streamed = tokio::select! {
        r = stream_into_blob(body, writer, Some(limit)) => r,
        _ = app.shutdown.cancelled() => Err(StreamError::Body("the broker is shutting down".into())),
    };
    match streamed {
        Ok(file) => Ok(file),
        Err(_) if app.shutdown.is_cancelled() => Err(ErrorCode::ShuttingDown.into()),
        Err(StreamError::Body(e)) => Err(ApiError::BadRequest(format!(
            "The upload was interrupted: {e}. Retry the upload."
        ))),
        Err(StreamError::TooLarge(_)) => Err(ErrorCode::FileSizeExceedsMaximum.into()),
        Err(StreamError::Storage(e)) => {
            tracing::error!(%id, error = %e, "storage failed during a form upload");
            Err(ErrorCode::UploadFailed.into())
        }
    }
}

/// The transfer an Idempotency-Key already names for this request, if any (422 if for another).
async fn idempotent_replay(app: &App, new: &NewTransfer) -> Result<Option<Uuid>, ApiError> {
    let Some((key, fingerprint)) = &new.idempotency else {
        return Ok(None);
    };
    let since = new.created - chrono::Duration::hours(24);
    match app
        .store
        .idempotent_transfer(&new.sender_org, key, since)
        .await?
    {
        None => Ok(None),
        Some((id, hash)) if hash.as_deref() == Some(fingerprint.as_str()) => Ok(Some(id)),
        Some(_) => Err(ErrorCode::IdempotencyKeyReused.into()),
    }
}

/// Initializes a transfer and uploads its file in one multipart/form-data request. Fields come in any
/// order; the file part streams straight to storage. With the metadata before the file, every check of
/// initialize runs before a byte is stored; either way the transfer is created only once its file is
/// stored and the whole form checked, so a refused form leaves nothing behind.
#[utoipa::path(post, path = "/broker/api/v1/filetransfer/upload", tag = "File transfer",
    request_body(content_type = "multipart/form-data", description = "Metadata.FileName, Metadata.ResourceId, Metadata.Sender, Metadata.Recipients (repeated), Metadata.SendersFileTransferReference, Metadata.PropertyList.<key>, Metadata.Checksum, Metadata.DisableVirusScan and the file part FileTransfer, in any order (a file sent after the metadata is checked before it is stored)"),
    responses((status = 200, body = FileTransferInitializeResponse), (status = 400, body = broker_protocol::ProblemDetails), (status = 401), (status = 403),
        (status = 409, body = broker_protocol::ProblemDetails), (status = 413, body = broker_protocol::ProblemDetails), (status = 415, body = broker_protocol::ProblemDetails),
        (status = 422, body = broker_protocol::ProblemDetails), (status = 503, body = broker_protocol::ProblemDetails), (status = 507, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:broker.write"])))]
pub async fn initialize_and_upload(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<FileTransferInitializeResponse>, ApiError> {
    let caller = app.authorize(&headers, Policy::Sender).await?;
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut form = FormReader::new(&headers, body)?;
    let mut metadata = FormMetadata::new(app.config.limits.max_json_body_bytes);
    let Some(file) = form.next_file(&mut metadata).await? else {
        return Err(ApiError::field(
            FILE_FIELD,
            "The FileTransfer field is required.",
        ));
    };
    // Checked now if the metadata came first: nothing is stored for a form that will be refused.
    let early = if metadata.has_required_fields() {
        let prepared =
            prepare_transfer(&app, &caller, metadata.request().clone(), key.clone()).await?;
        if let Some(id) = idempotent_replay(&app, &prepared.new).await? {
            // Sent again: the earlier transfer's id, its file uploaded if that never completed.
            if app.transfer(id).await?.status <= FileTransferStatus::UploadStarted {
                store_upload(&app, id, file, prepared.size_limit).await?;
            }
            return Ok(Json(FileTransferInitializeResponse {
                file_transfer_id: id,
            }));
        }
        Some(prepared)
    } else {
        None
    };
    if let Some(len) = declared_length(&headers) {
        check_free_space(&app, len).await?;
    }
    let _permit = app
        .upload_permits
        .try_acquire()
        .map_err(|_| ApiError::Code(ErrorCode::TooManyUploads))?;
    let id = early.as_ref().map_or_else(Uuid::new_v4, |p| p.new.id);
    // A file sent before the metadata that would allow it may not fill the disk for everyone else.
    let room = match app.blobs.available_space().await {
        Ok(Some(free)) => free.saturating_sub(app.config.storage.reserve_bytes),
        _ => u64::MAX,
    };
    let allowed = early
        .as_ref()
        .map_or(MAX_FORM_FILE_SIZE, |p| p.size_limit.min(MAX_FORM_FILE_SIZE));
    let limit = allowed.min(room);
    let unclaimed = Unclaimed::new(&app, id);
    let stored = match store_unclaimed(&app, id, file, limit).await {
        Ok(stored) => stored,
        Err(e) => {
            unclaimed.discard().await;
            return Err(match e {
                ApiError::Code(ErrorCode::FileSizeExceedsMaximum) if room < allowed => {
                    ErrorCode::InsufficientStorage.into()
                }
                e => e,
            });
        }
    };
    let checked = async {
        if form.next_file(&mut metadata).await?.is_some() {
            return Err(ApiError::field(
                FILE_FIELD,
                "Only one FileTransfer part may be sent.",
            ));
        }
        let prepared = prepare_transfer(&app, &caller, metadata.request().clone(), key).await?;
        if stored.size > prepared.size_limit.min(MAX_FORM_FILE_SIZE) {
            return Err(ErrorCode::FileSizeExceedsMaximum.into());
        }
        if idempotent_replay(&app, &prepared.new).await?.is_some() {
            // Another request with this key created its transfer meanwhile.
            return Err(ErrorCode::FileTransferAlreadyUploaded.into());
        }
        Ok(prepared)
    };
    let mut new = match checked.await {
        Ok(prepared) => prepared.new,
        Err(e) => {
            unclaimed.discard().await;
            return Err(e);
        }
    };
    new.id = id;
    // The transfer is created and takes its file on a task of its own: a client that goes away now
    // cannot leave a transfer half made.
    let publish = tokio::spawn({
        let app = app.clone();
        async move {
            match create_transfer(&app, new).await {
                Ok(created) if created == id => {}
                other => {
                    unclaimed.discard().await;
                    return Err(other
                        .err()
                        .unwrap_or(ErrorCode::FileTransferAlreadyUploaded.into()));
                }
            }
            let lease = app.lifecycle.begin_upload(id).await;
            let lease = match lease {
                Ok(lease) => lease,
                Err(e) => {
                    unclaimed.discard().await;
                    return Err(ApiError::from(e));
                }
            };
            unclaimed.claim();
            lease.complete(stored).await.map_err(ApiError::from)
        }
    });
    publish
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(FileTransferInitializeResponse {
        file_transfer_id: id,
    }))
}
