//! Binary upload (`POST /filetransfer/{id}/upload`) and initialize-and-upload (multipart/form-data).
//! Bodies stream through the upload pipeline; nothing is buffered whole.

use crate::app::{parse_transfer_id, require_sender, size_limit, App, Policy};
use crate::db::{ResourceRow, TransferView};
use crate::http::error::ApiError;
use crate::http::transfers::{initialize_transfer, IDEMPOTENCY_KEY};
use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Path, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use broker_actors::state::UploadFailure;
use broker_actors::upload::{stream_into_blob, StreamError};
use broker_actors::UploadLease;
use broker_protocol::transfer::{FileTransferInitialize, FileTransferInitializeResponse};
use broker_protocol::{ErrorCode, FileTransferStatus};
use futures::{Stream, StreamExt};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// A form-data metadata field may hold at most this much; only the file part is unbounded.
const MAX_METADATA_FIELD: usize = 64 << 10;
/// At most this many metadata fields (recipients are repeated fields).
const MAX_METADATA_FIELDS: usize = 10_000;

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
    let view = app.transfer(parse_transfer_id(&id)?, false).await?;
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

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body arrived slower than {0} bytes/s")]
    TooSlow(u64),
    #[error("no data arrived for {0:?}")]
    Idle(Duration),
    #[error("{0}")]
    Read(String),
}

/// Cuts a body off once it averages less than `rate` bytes/s after `grace` (Kestrel's minimum data
/// rate), or when nothing arrives for `idle`: a slow multi-hour stream that still moves is never cut;
/// a stalled one is, so its upload slot frees up for a retry.
pub(crate) fn with_min_rate<S, E>(
    body: S,
    rate: u64,
    grace: Duration,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, BodyError>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
    E: std::fmt::Display,
{
    let start = Instant::now();
    futures::stream::unfold(
        (body, 0u64, false),
        move |(mut body, total, done)| async move {
            if done {
                return None;
            }
            let idle_deadline = Instant::now() + idle;
            let rate_deadline = (rate > 0).then(|| {
                start + Duration::from_secs_f64((total + 1) as f64 / rate as f64).max(grace)
            });
            let deadline = rate_deadline.map_or(idle_deadline, |r| r.min(idle_deadline));
            match tokio::time::timeout_at(deadline, body.next()).await {
                Err(_) if Some(deadline) == rate_deadline => {
                    Some((Err(BodyError::TooSlow(rate)), (body, total, true)))
                }
                Err(_) => Some((Err(BodyError::Idle(idle)), (body, total, true))),
                Ok(None) => None,
                Ok(Some(Ok(chunk))) => {
                    let total = total + chunk.len() as u64;
                    Some((Ok(chunk), (body, total, false)))
                }
                Ok(Some(Err(e))) => {
                    Some((Err(BodyError::Read(e.to_string())), (body, total, true)))
                }
            }
        },
    )
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
    let server = &app.config.server;
    let body = Box::pin(with_min_rate(
        body,
        server.min_data_rate,
        Duration::from_secs(server.min_data_rate_grace_secs),
        Duration::from_secs(server.upload_idle_timeout_secs),
    ));
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

/// Applies one `Metadata.*` form field to the initialize request.
fn apply_metadata(
    request: &mut FileTransferInitialize,
    name: &str,
    value: String,
) -> Result<(), ApiError> {
    let lower = name.to_ascii_lowercase();
    let Some(field) = lower.strip_prefix("metadata.") else {
        return Ok(());
    };
    let original = &name["metadata.".len()..];
    match field {
        "filename" => request.file_name = Some(value),
        "resourceid" => request.resource_id = Some(value),
        "sendersfiletransferreference" => request.senders_file_transfer_reference = Some(value),
        "sender" => request.sender = Some(value),
        "checksum" => request.checksum = Some(value),
        "disablevirusscan" => {
            let v = value
                .trim()
                .to_ascii_lowercase()
                .parse::<bool>()
                .map_err(|_| {
                    ApiError::field(
                        "Metadata.DisableVirusScan",
                        format!("The value '{value}' is not valid."),
                    )
                })?;
            request.disable_virus_scan = Some(v);
        }
        f if f == "recipients" || (f.starts_with("recipients[") && f.ends_with(']')) => {
            request.recipients.get_or_insert_with(Vec::new).push(value)
        }
        f if f.starts_with("propertylist.") || f.starts_with("propertylist[") => {
            let key = original["propertylist".len()..]
                .trim_start_matches(['.', '['])
                .trim_end_matches(']');
            request
                .property_list
                .get_or_insert_with(BTreeMap::new)
                .insert(key.to_string(), value);
        }
        _ => {}
    }
    Ok(())
}

/// Reads a metadata field, refusing more than [`MAX_METADATA_FIELD`] bytes.
async fn read_field(mut field: axum::extract::multipart::Field<'_>) -> Result<String, ApiError> {
    let name = field.name().unwrap_or_default().to_string();
    let mut value = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
    {
        if value.len() + chunk.len() > MAX_METADATA_FIELD {
            return Err(ApiError::field(
                &name,
                format!("The field is longer than {MAX_METADATA_FIELD} bytes."),
            ));
        }
        value.extend_from_slice(&chunk);
    }
    String::from_utf8(value).map_err(|_| ApiError::field(&name, "The field is not valid UTF-8."))
}

/// Initializes a transfer and uploads its file in one multipart/form-data request: the `Metadata.*`
/// fields first, then the file part `FileTransfer`, which streams straight to storage.
#[utoipa::path(post, path = "/broker/api/v1/filetransfer/upload", tag = "File transfer",
    request_body(content_type = "multipart/form-data", description = "Metadata.FileName, Metadata.ResourceId, Metadata.Sender, Metadata.Recipients (repeated), Metadata.SendersFileTransferReference, Metadata.PropertyList.<key>, Metadata.Checksum, Metadata.DisableVirusScan, then the file part FileTransfer (the file must come last: it is streamed, not buffered)"),
    responses((status = 200, body = FileTransferInitializeResponse), (status = 400, body = broker_protocol::ProblemDetails), (status = 401), (status = 403)),
    security(("bearer" = ["altinn:broker.write"])))]
pub async fn initialize_and_upload(
    State(app): State<App>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Json<FileTransferInitializeResponse>, ApiError> {
    let caller = app.authorize(&headers, Policy::Sender).await?;
    let mut multipart =
        multipart.map_err(|_| ApiError::UnsupportedMediaType("multipart/form-data"))?;
    // As in JSON, an omitted sender's reference binds as "" and fails validation.
    let mut request = FileTransferInitialize {
        senders_file_transfer_reference: Some(String::new()),
        ..Default::default()
    };
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    for _ in 0..MAX_METADATA_FIELDS {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let Some(field) = field else {
            return Err(ApiError::field(
                "FileTransfer",
                "The FileTransfer field is required.",
            ));
        };
        let name = field.name().unwrap_or_default().to_string();
        if name.eq_ignore_ascii_case("filetransfer") {
            let id = initialize_transfer(&app, &caller, request, key).await?;
            let view = app.transfer(id, false).await?;
            if view.status > FileTransferStatus::UploadStarted {
                // A replay (same Idempotency-Key) of a request whose upload already completed.
                return Ok(Json(FileTransferInitializeResponse {
                    file_transfer_id: id,
                }));
            }
            let resource = app.resource_of(&view).await?;
            let limit = check_size(&app, &view, &resource, None).await?;
            if let Some(len) = declared_length(&headers) {
                check_free_space(&app, len).await?;
            }
            store_upload(&app, id, field, limit).await?;
            return Ok(Json(FileTransferInitializeResponse {
                file_transfer_id: id,
            }));
        }
        let value = read_field(field).await?;
        apply_metadata(&mut request, &name, value)?;
    }
    Err(ApiError::BadRequest(format!(
        "More than {MAX_METADATA_FIELDS} form fields."
    )))
}
