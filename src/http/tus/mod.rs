//! tus 1.0.0 resumable uploads at `/broker/api/v1/filetransfer/upload/tus/{fileTransferId}` (spec 4):
//! creation (with upload, with deferred length), HEAD, PATCH and termination.
//!
//! Every PATCH holds the transfer's upload slot through its supervisor, so one upload advances at a
//! time. The bytes stream through the same pipeline as a binary upload, continuing the upload's MD5 and
//! SHA-256 state; the offset is acknowledged only once the bytes are synced and the DB offset has moved
//! (conditionally). The hash state of an upload lives in memory between PATCHes; after a restart it is
//! rebuilt from the durable prefix on disk.

mod append;
pub mod concat;
pub mod expiry;
mod termination;

pub use append::RunningPatches;
use append::{append, parse_checksum, refusal, stop_running, Appended, Incoming};
pub use termination::{terminate, terminate_part};

use crate::app::{parse_transfer_id, require_sender, App, Policy};
use crate::db::{SessionRow, TransferView};
use crate::http::error::ApiError;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use broker_actors::fail_storage;
use broker_actors::upload::HashState;
use broker_actors::MAX_FILE_SIZE;
use broker_protocol::tus_headers::{self, UploadConcat};
use broker_protocol::{ErrorCode, FileTransferStatus};
pub(crate) use broker_protocol::{TUS_OFFSET_CONTENT_TYPE as OFFSET_CONTENT_TYPE, TUS_VERSION};

const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,checksum,concatenation,expiration";

pub(crate) fn tus_header(name: &'static str, value: impl ToString) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_str(&value.to_string()).expect("header values are ASCII"),
    )
}

/// A tus protocol error: plain text, as tusd and tusdotnet answer.
pub(super) struct TusError {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl IntoResponse for TusError {
    fn into_response(self) -> Response {
        let headers = [
            tus_header("tus-resumable", TUS_VERSION),
            tus_header("tus-version", TUS_VERSION),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
        ];
        (self.status, headers, self.message).into_response()
    }
}

pub(crate) fn tus_error(status: StatusCode, message: &str) -> Response {
    TusError {
        status,
        message: message.to_string(),
    }
    .into_response()
}

fn check_version(headers: &HeaderMap) -> Result<(), TusError> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(TUS_VERSION) => Ok(()),
        _ => Err(TusError {
            status: StatusCode::PRECONDITION_FAILED,
            message: "Tus-Resumable must be 1.0.0".into(),
        }),
    }
}

fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, TusError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(tus_headers::parse_number)
            .map(Some)
            .ok_or_else(|| TusError {
                status: StatusCode::BAD_REQUEST,
                message: format!("{name} must be a non-negative integer"),
            }),
    }
}

/// The largest file this transfer may hold.
pub(crate) async fn max_size(app: &App, view: &TransferView) -> Result<u64, ApiError> {
    Ok(crate::app::size_limit(view, &app.resource_of(view).await?))
}

/// The sender's transfer, while an upload may still go to it.
pub(crate) async fn sender_transfer(
    app: &App,
    headers: &HeaderMap,
    id: &str,
) -> Result<TransferView, ApiError> {
    let view = upload_caller_transfer(app, headers, id).await?;
    if view.status > FileTransferStatus::UploadStarted {
        return Err(ErrorCode::FileTransferAlreadyUploaded.into());
    }
    Ok(view)
}

/// Authenticates the sender of an upload and returns the transfer. A token that has expired is still
/// accepted (signature and issuer checked) while the transfer has an active resumable upload, it is
/// UploadStarted or UploadProcessing and the caller is its sender: multi-hour uploads outlive ~1 h
/// tokens (spec 4.6).
async fn upload_caller_transfer(
    app: &App,
    headers: &HeaderMap,
    id: &str,
) -> Result<TransferView, ApiError> {
    let caller = match app.authorize(headers, Policy::Sender).await {
        Ok(caller) => caller,
        Err(ApiError::Unauthenticated) => {
            let token = app.bearer(headers).ok_or(ApiError::Unauthenticated)?;
            let caller = app
                .auth
                .authenticate_ignoring_expiry(token)
                .await
                .map_err(|_| ApiError::Unauthenticated)?;
            let view = app
                .transfer(parse_transfer_id(id)?)
                .await
                .map_err(|_| ApiError::Unauthenticated)?;
            let window = chrono::Duration::seconds(app.config.server.tus_upload_expiry_secs as i64);
            let session = matches!(
                view.status,
                FileTransferStatus::UploadStarted | FileTransferStatus::UploadProcessing
            ) && caller.org.as_deref() == Some(view.sender_org.as_str())
                && caller.has_scope(broker_protocol::scopes::WRITE)
                && app
                    .sessions
                    .active_since(view.id, app.clock.now() - window)
                    .await?;
            if !session {
                return Err(ApiError::Unauthenticated);
            }
            caller
        }
        Err(e) => return Err(e),
    };
    let view = app.transfer(parse_transfer_id(id)?).await?;
    require_sender(&caller, &view)?;
    Ok(view)
}

/// `OPTIONS`: what this server speaks. It needs the sender's token (spec 4.1), except for a browser's
/// CORS preflight, which carries none.
pub async fn options(State(app): State<App>, headers: HeaderMap) -> Result<Response, ApiError> {
    if !headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        app.authorize(&headers, Policy::Sender).await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [
            tus_header("tus-resumable", TUS_VERSION),
            tus_header("tus-version", TUS_VERSION),
            tus_header("tus-extension", EXTENSIONS),
            tus_header("tus-checksum-algorithm", "md5,sha1,sha256"),
            tus_header("tus-max-size", MAX_FILE_SIZE),
        ],
    )
        .into_response())
}

/// Refuses an `Upload-Metadata` that is not valid tus grammar (400, as tus servers answer).
fn check_metadata(headers: &HeaderMap) -> Result<(), TusError> {
    let Some(value) = headers.get("upload-metadata") else {
        return Ok(());
    };
    let bad = |message: String| TusError {
        status: StatusCode::BAD_REQUEST,
        message,
    };
    let text = value
        .to_str()
        .map_err(|_| bad("Upload-Metadata must be ASCII".into()))?;
    tus_headers::parse_metadata(text).map_err(|e| bad(e.to_string()))?;
    Ok(())
}

/// `POST`: creates the upload (Upload-Length, or Upload-Defer-Length: 1), optionally with its first bytes.
pub async fn create(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Err(e) = check_version(&headers) {
        return Ok(e.into_response());
    }
    let view = sender_transfer(&app, &headers, &id).await?;
    if let Err(e) = check_metadata(&headers) {
        return Ok(e.into_response());
    }
    let concat = match headers.get("upload-concat").map(|v| v.to_str()) {
        None => None,
        Some(text) => match text.ok().and_then(tus_headers::parse_concat) {
            Some(c) => Some(c),
            None => {
                return Ok(tus_error(
                    StatusCode::BAD_REQUEST,
                    "Upload-Concat must be 'partial' or 'final;<urls>'",
                ))
            }
        },
    };
    let partial = match concat {
        None => false,
        Some(UploadConcat::Partial) => true,
        Some(UploadConcat::Final(urls)) => return concat::finish(&app, &view, &urls).await,
    };
    let length = match (
        number(&headers, "upload-length"),
        headers.get("upload-defer-length"),
    ) {
        (Err(e), _) => return Ok(e.into_response()),
        (Ok(Some(l)), None) => Some(l),
        (Ok(None), Some(v)) if v.as_bytes() == b"1" => None,
        _ => {
            return Ok(tus_error(
                StatusCode::BAD_REQUEST,
                "Upload-Length or Upload-Defer-Length: 1 is required",
            ))
        }
    };
    if length.is_some_and(|l| l > 0) && length > Some(max_size(&app, &view).await?) {
        return Err(ErrorCode::FileSizeExceedsMaximum.into());
    }
    if partial {
        return concat::create_part(&app, &view, length).await;
    }
    // Claim the slot (this records UploadStarted), start an empty file, and let the slot go.
    let lease = app.lifecycle.begin_upload(view.id).await?;
    let writer = match app.blobs.create(view.id).await {
        Ok(w) => w,
        Err(e) => return Err(fail_storage(lease, e).await.into()),
    };
    if let Err(e) = writer.commit().await {
        return Err(fail_storage(lease, e).await.into());
    }
    app.sessions
        .create(view.id, "", length, app.clock.now())
        .await?;
    app.broker
        .tus_hashes()
        .put(view.id, HashState::default().into());
    lease.release().await;
    let location = format!("/broker/api/v1/filetransfer/upload/tus/{}", view.id);
    let with_upload = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.eq_ignore_ascii_case(OFFSET_CONTENT_TYPE));
    let mut response = if with_upload {
        let checksum = match parse_checksum(&headers) {
            Ok(c) => c,
            Err(e) => return Ok(e.into_response()),
        };
        let row = SessionRow {
            length,
            offset: 0,
            joined: false,
        };
        let body_len = number(&headers, "content-length").ok().flatten();
        let incoming = Incoming {
            body,
            new_length: None,
            len: body_len,
            checksum,
        };
        match append(&app, &view, None, row, incoming).await? {
            Appended::Offset(offset) => {
                (StatusCode::CREATED, [tus_header("upload-offset", offset)]).into_response()
            }
            refused => return Ok(refusal(refused)),
        }
    } else {
        StatusCode::CREATED.into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("ids are ASCII"),
    );
    h.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    h.insert("upload-expires", expiry::expires_header(&app));
    Ok(response)
}

/// `HEAD`: the durable offset.
pub async fn head(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    head_of(&app, &id, None, &headers).await
}

/// `HEAD` on a part of a concatenated upload.
pub async fn head_part(
    State(app): State<App>,
    Path((id, part)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    head_of(&app, &id, Some(&part), &headers).await
}

async fn head_of(
    app: &App,
    id: &str,
    part: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if let Err(e) = check_version(headers) {
        return Ok(e.into_response());
    }
    let view = upload_caller_transfer(app, headers, id).await?;
    // A HEAD while a PATCH still runs (its client may have gone silent) stops that PATCH first.
    stop_running(app, view.id, part).await;
    let row = match whole_upload(app, &view, part).await? {
        Some(length) => Some(SessionRow {
            length: Some(length),
            offset: length,
            joined: false,
        }),
        None => app.sessions.get(view.id, part.unwrap_or("")).await?,
    };
    let Some(row) = row else {
        return Ok(tus_error(
            StatusCode::NOT_FOUND,
            "No upload has been created for this file transfer",
        ));
    };
    let mut response = (
        StatusCode::OK,
        [
            tus_header("tus-resumable", TUS_VERSION),
            tus_header("upload-offset", row.offset),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response();
    match row.length {
        Some(l) => response
            .headers_mut()
            .insert("upload-length", HeaderValue::from(l)),
        None => response
            .headers_mut()
            .insert("upload-defer-length", HeaderValue::from_static("1")),
    };
    if part.is_some() {
        response
            .headers_mut()
            .insert("upload-concat", HeaderValue::from_static("partial"));
    }
    Ok(response)
}

/// The length of the transfer's upload if every byte of it is stored (verified or being verified). A
/// complete upload not verified yet gets its check started if none runs.
async fn whole_upload(
    app: &App,
    view: &TransferView,
    part: Option<&str>,
) -> Result<Option<u64>, ApiError> {
    if part.is_some() {
        return Ok(None);
    }
    let verified = |view: &TransferView| match view.status {
        FileTransferStatus::Published | FileTransferStatus::AllConfirmedDownloaded => true,
        FileTransferStatus::UploadProcessing => view.sha256.is_some(),
        _ => false,
    };
    if verified(view) {
        return Ok(Some(view.size as u64));
    }
    if !matches!(
        view.status,
        FileTransferStatus::UploadStarted | FileTransferStatus::UploadProcessing
    ) {
        return Ok(None);
    }
    let complete = app
        .sessions
        .get(view.id, "")
        .await?
        .and_then(|r| r.length.filter(|l| *l == r.offset));
    match complete {
        // Every byte is stored but the transfer is not verified: make sure its check runs (the
        // request that stored the last byte may have been cut off, spec 4.5 recovery).
        Some(length) => {
            crate::finalize::start(app, view.id, None);
            Ok(Some(length))
        }
        // The check may have ended between our two reads.
        None => {
            let now = app.transfer(view.id).await?;
            Ok(verified(&now).then_some(now.size as u64))
        }
    }
}

/// `PATCH`: appends at `Upload-Offset`.
pub async fn patch(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    patch_of(&app, &id, None, &headers, body).await
}

/// `PATCH` on a part of a concatenated upload.
pub async fn patch_part(
    State(app): State<App>,
    Path((id, part)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    patch_of(&app, &id, Some(&part), &headers, body).await
}

async fn patch_of(
    app: &App,
    id: &str,
    part: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (app, headers) = (app.clone(), headers.clone());
    if let Err(e) = check_version(&headers) {
        return Ok(e.into_response());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim()
        .eq_ignore_ascii_case(OFFSET_CONTENT_TYPE)
    {
        return Ok(tus_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/offset+octet-stream",
        ));
    }
    let (offset, declared_length, content_length) = match (
        number(&headers, "upload-offset"),
        number(&headers, "upload-length"),
        number(&headers, "content-length"),
    ) {
        (Ok(Some(o)), Ok(l), Ok(c)) => (o, l, c),
        (Ok(None), _, _) => {
            return Ok(tus_error(
                StatusCode::BAD_REQUEST,
                "Upload-Offset is required",
            ))
        }
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return Ok(r.into_response()),
    };
    let view = app.transfer(parse_transfer_id(id)?).await?;
    // A PATCH repeated after its upload completed (e.g. after a timeout) succeeds idempotently.
    if part.is_none() && view.status > FileTransferStatus::UploadStarted {
        let view = upload_caller_transfer(&app, &headers, id).await?;
        if whole_upload(&app, &view, part).await? == Some(offset) {
            return Ok((
                StatusCode::NO_CONTENT,
                [
                    tus_header("tus-resumable", TUS_VERSION),
                    tus_header("upload-offset", offset),
                ],
            )
                .into_response());
        }
        return Err(ErrorCode::FileTransferAlreadyUploaded.into());
    }
    let view = sender_transfer(&app, &headers, id).await?;
    let Some(mut row) = app.sessions.get(view.id, part.unwrap_or("")).await? else {
        return Ok(tus_error(
            StatusCode::NOT_FOUND,
            "No upload has been created for this file transfer",
        ));
    };
    if row.offset != offset {
        return Ok(tus_error(
            StatusCode::CONFLICT,
            &format!(
                "Upload-Offset {offset} does not match the upload's offset {}",
                row.offset
            ),
        ));
    }
    if let Some(l) = declared_length {
        match row.length {
            None if l >= offset && l <= max_size(&app, &view).await? => row.length = Some(l),
            None => return Err(ErrorCode::FileSizeExceedsMaximum.into()),
            Some(known) if known != l => {
                return Ok(tus_error(
                    StatusCode::BAD_REQUEST,
                    "Upload-Length cannot change",
                ))
            }
            Some(_) => {}
        }
    }
    if let (Some(length), Some(cl)) = (row.length, content_length) {
        if offset + cl > length {
            return Ok(tus_error(
                StatusCode::BAD_REQUEST,
                "The PATCH would exceed the upload's length",
            ));
        }
    }
    let checksum = match parse_checksum(&headers) {
        Ok(c) => c,
        Err(e) => return Ok(e.into_response()),
    };
    let incoming = Incoming {
        body,
        new_length: declared_length,
        len: content_length,
        checksum,
    };
    let appended = append(&app, &view, part, row, incoming).await?;
    let new_offset = match appended {
        Appended::Offset(offset) => offset,
        refused => return Ok(refusal(refused)),
    };
    Ok((
        StatusCode::NO_CONTENT,
        [
            tus_header("tus-resumable", TUS_VERSION),
            tus_header("upload-offset", new_offset),
            (
                HeaderName::from_static("upload-expires"),
                expiry::expires_header(&app),
            ),
        ],
    )
        .into_response())
}
