//! Binary upload (`POST /filetransfer/{id}/upload`) and initialize-and-upload (multipart/form-data).
//! Bodies stream through to the actors' upload pipeline; nothing is buffered whole.

use crate::http::app::{parse_transfer_id, App, Policy};
use crate::http::error::ApiError;
use crate::http::form::FormUpload;
use crate::http::transfers::IDEMPOTENCY_KEY;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use broker_protocol::transfer::FileTransferInitializeResponse;

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
    let id = parse_transfer_id(&id)?;
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
    let declared = declared_length(&headers);
    let body = body.into_data_stream();
    app.broker.upload(&caller, id, declared, body).await?;
    Ok(Json(FileTransferInitializeResponse {
        file_transfer_id: id,
    }))
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
    let form = FormUpload::new(&headers, body, app.config.limits.max_json_body_bytes)?;
    let declared = declared_length(&headers);
    let id = app
        .broker
        .initialize_and_upload(&caller, key, declared, Box::new(form))
        .await?;
    Ok(Json(FileTransferInitializeResponse {
        file_transfer_id: id,
    }))
}
