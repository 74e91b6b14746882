//! tus 1.0.0 resumable uploads at `/broker/api/v1/filetransfer/upload/tus/{fileTransferId}` (spec 4):
//! creation (with upload, with deferred length), HEAD, PATCH and termination.
//!
//! Every PATCH holds the transfer's upload slot through its supervisor, so one upload advances at a
//! time. The bytes stream through the same pipeline as a binary upload, continuing the upload's MD5 and
//! SHA-256 state; the offset is acknowledged only once the bytes are synced and the DB offset has moved
//! (conditionally). The hash state of an upload lives in memory between PATCHes; after a restart it is
//! rebuilt from the durable prefix on disk.

use crate::app::{
    parse_transfer_id, require_sender, App, Policy, MAX_FILE_SIZE, MAX_VIRUS_SCAN_SIZE,
};
use crate::db::{TransferView, TusRow};
use crate::http::error::ApiError;
use crate::http::upload::{fail_storage, with_min_rate};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use broker_actors::upload::{stream_append, Checkpoint, HashState, StreamError};
use broker_protocol::{ErrorCode, FileTransferStatus};
use futures::StreamExt;
use std::time::Duration;
use uuid::Uuid;

pub(crate) const TUS_VERSION: &str = "1.0.0";
const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,checksum,concatenation";
const OFFSET_CONTENT_TYPE: &str = "application/offset+octet-stream";

pub(crate) fn tus_header(name: &'static str, value: impl ToString) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_str(&value.to_string()).expect("header values are ASCII"),
    )
}

/// A tus protocol error: plain text, as tusd and tusdotnet answer.
struct TusError {
    status: StatusCode,
    message: String,
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
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| TusError {
                status: StatusCode::BAD_REQUEST,
                message: format!("{name} must be a non-negative integer"),
            }),
    }
}

/// The largest file this transfer may hold.
pub(crate) async fn max_size(app: &App, view: &TransferView) -> Result<u64, ApiError> {
    let resource = app.resource_of(view).await?;
    let mut limit = MAX_FILE_SIZE;
    if view.use_virus_scan {
        limit = limit.min(MAX_VIRUS_SCAN_SIZE);
    }
    if let Some(max) = resource.max_file_transfer_size {
        limit = limit.min(max);
    }
    Ok(limit.max(0) as u64)
}

/// The sender's transfer, while an upload may still go to it.
pub(crate) async fn sender_transfer(
    app: &App,
    headers: &HeaderMap,
    id: &str,
) -> Result<TransferView, ApiError> {
    let caller = app.authorize(headers, Policy::Sender).await?;
    let view = app.transfer(parse_transfer_id(id)?, false).await?;
    require_sender(&caller, &view)?;
    if view.status > FileTransferStatus::UploadStarted {
        return Err(ErrorCode::FileTransferAlreadyUploaded.into());
    }
    Ok(view)
}

/// `OPTIONS`: what this server speaks (no token needed, so browsers' preflights pass).
pub async fn options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            tus_header("tus-resumable", TUS_VERSION),
            tus_header("tus-version", TUS_VERSION),
            tus_header("tus-extension", EXTENSIONS),
            tus_header("tus-checksum-algorithm", "md5,sha1,sha256"),
            tus_header("tus-max-size", MAX_FILE_SIZE),
        ],
    )
        .into_response()
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
    let concat = headers
        .get("upload-concat")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    if let Some(list) = concat.and_then(|c| c.strip_prefix("final;")) {
        return crate::http::tus_concat::finish(&app, &view, list).await;
    }
    let partial = match concat {
        None => false,
        Some("partial") => true,
        Some(_) => {
            return Ok(tus_error(
                StatusCode::BAD_REQUEST,
                "Upload-Concat must be 'partial' or 'final;<urls>'",
            ))
        }
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
        return crate::http::tus_concat::create_part(&app, &view, length).await;
    }
    // Claim the slot (this records UploadStarted), start an empty file, and let the slot go.
    let lease = app.lifecycle.begin_upload(view.id).await?;
    let writer = match app.blobs.create(view.id).await {
        Ok(w) => w,
        Err(e) => return Err(fail_storage(lease, e).await),
    };
    if let Err(e) = writer.commit().await {
        return Err(fail_storage(lease, e).await);
    }
    app.store
        .create_tus(view.id, "", length, app.clock.now())
        .await?;
    app.tus_hashes
        .lock()
        .expect("tus hash states")
        .insert(view.id, HashState::default());
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
        let row = TusRow { length, offset: 0 };
        match append(&app, &view, None, row, body, None, checksum).await? {
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
    let caller = app.authorize(headers, Policy::Sender).await?;
    let view = app.transfer(parse_transfer_id(id)?, false).await?;
    require_sender(&caller, &view)?;
    let row = if part.is_none() && view.status > FileTransferStatus::UploadStarted && view.size > 0
    {
        // The upload completed: it is whole.
        Some(TusRow {
            length: Some(view.size as u64),
            offset: view.size as u64,
        })
    } else {
        app.store.tus(view.id, part.unwrap_or("")).await?
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
    let view = app.transfer(parse_transfer_id(id)?, false).await?;
    // A PATCH repeated after its upload completed (e.g. after a timeout) succeeds idempotently.
    if part.is_none() && view.status > FileTransferStatus::UploadStarted {
        let caller = app.authorize(&headers, Policy::Sender).await?;
        require_sender(&caller, &view)?;
        if view.size as u64 == offset {
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
    let Some(mut row) = app.store.tus(view.id, part.unwrap_or("")).await? else {
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
    if part.is_some() && checksum.is_some() {
        return Ok(tus_error(
            StatusCode::BAD_REQUEST,
            "Upload-Checksum is not supported on partial uploads yet",
        ));
    }
    let new_offset = match append(&app, &view, part, row, body, declared_length, checksum).await? {
        Appended::Offset(offset) => offset,
        refused => return Ok(refusal(refused)),
    };
    Ok((
        StatusCode::NO_CONTENT,
        [
            tus_header("tus-resumable", TUS_VERSION),
            tus_header("upload-offset", new_offset),
        ],
    )
        .into_response())
}

/// The upload's hash state at its durable offset: kept in memory between PATCHes, rebuilt from the
/// stored prefix when missing or stale (after a restart).
async fn hash_state(app: &App, id: Uuid, offset: u64) -> Result<HashState, ApiError> {
    let cached = app.tus_hashes.lock().expect("tus hash states").remove(&id);
    if let Some(state) = cached.filter(|s| s.len() == offset) {
        return Ok(state);
    }
    let mut state = HashState::default();
    if offset > 0 {
        let mut stream = app
            .blobs
            .read(id, 0, offset)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ApiError::Internal(e.to_string()))?;
            state = tokio::task::spawn_blocking(move || {
                state.update(&chunk);
                state
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        }
    }
    Ok(state)
}

/// An `Upload-Checksum` (tus checksum extension): the algorithm and the digest the PATCH body must have.
pub struct Checksum {
    hasher: ChecksumHasher,
    expected: Vec<u8>,
}

enum ChecksumHasher {
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
}

impl ChecksumHasher {
    fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        match self {
            ChecksumHasher::Sha1(h) => h.update(bytes),
            ChecksumHasher::Md5(h) => h.update(bytes),
            ChecksumHasher::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        use sha2::Digest;
        match self {
            ChecksumHasher::Sha1(h) => h.finalize().to_vec(),
            ChecksumHasher::Md5(h) => h.finalize().to_vec(),
            ChecksumHasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// Reads `Upload-Checksum: <algorithm> <base64 digest>`.
fn parse_checksum(headers: &HeaderMap) -> Result<Option<Checksum>, TusError> {
    use base64::Engine;
    let Some(value) = headers.get("upload-checksum") else {
        return Ok(None);
    };
    let bad = |message: &str| TusError {
        status: StatusCode::BAD_REQUEST,
        message: message.into(),
    };
    let text = value
        .to_str()
        .map_err(|_| bad("Upload-Checksum is not valid"))?;
    let (algorithm, digest) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("Upload-Checksum must be '<algorithm> <base64>'"))?;
    let hasher = match algorithm.to_ascii_lowercase().as_str() {
        "sha1" => ChecksumHasher::Sha1(Default::default()),
        "md5" => ChecksumHasher::Md5(Default::default()),
        "sha256" => ChecksumHasher::Sha256(Default::default()),
        _ => {
            return Err(bad(
                "Unsupported checksum algorithm; use sha1, md5 or sha256",
            ))
        }
    };
    let expected = base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .map_err(|_| bad("The Upload-Checksum digest is not base64"))?;
    Ok(Some(Checksum { hasher, expected }))
}

/// How an append ended.
enum Appended {
    /// The bytes are durable and the offset moved here.
    Offset(u64),
    /// The body ran past the upload's length: nothing of it was kept.
    TooLong,
    /// The body did not match its `Upload-Checksum`: nothing of it was kept.
    ChecksumMismatch,
}

/// Records a long PATCH's durable progress as the upload's offset.
struct OffsetCheckpoint<'a> {
    app: &'a App,
    id: Uuid,
    part: &'a str,
    /// The offset this PATCH started at.
    base: u64,
    /// The offset last recorded in the DB.
    durable: u64,
}

#[async_trait::async_trait]
impl Checkpoint for OffsetCheckpoint<'_> {
    async fn durable(&mut self, written: u64) {
        let to = self.base + written;
        match self
            .app
            .store
            .advance_tus(
                self.id,
                self.part,
                self.durable,
                to,
                None,
                self.app.clock.now(),
            )
            .await
        {
            Ok(true) => self.durable = to,
            Ok(false) => {
                tracing::warn!(id = %self.id, "the upload's offset moved under a running PATCH")
            }
            Err(e) => tracing::warn!(id = %self.id, error = %e, "could not record a checkpoint"),
        }
    }
}

/// The answer to a body that was not kept.
fn refusal(outcome: Appended) -> Response {
    match outcome {
        Appended::ChecksumMismatch => tus_error(
            StatusCode::from_u16(460).expect("460 is a valid status"),
            "Checksum Mismatch: the body does not match its Upload-Checksum; the offset did not move",
        ),
        _ => tus_error(StatusCode::BAD_REQUEST, "The PATCH exceeded the upload's length"),
    }
}

/// Streams one request body onto the upload at `row.offset`, makes it durable and moves the offset;
/// completes the transfer at its full length. A body with a checksum is all or nothing; one without
/// keeps what arrived if it breaks off (that is what makes the upload resumable).
async fn append(
    app: &App,
    view: &TransferView,
    part: Option<&str>,
    row: TusRow,
    body: Body,
    new_length: Option<u64>,
    checksum: Option<Checksum>,
) -> Result<Appended, ApiError> {
    let room = match row.length {
        Some(length) => length - row.offset,
        None => max_size(app, view).await?.saturating_sub(row.offset),
    };
    let hold = Hold::take(app, view.id, part).await?;
    let state = match part {
        // A part is hashed with the others once they are concatenated.
        Some(_) => HashState::length_only(row.offset),
        None => match hash_state(app, view.id, row.offset).await {
            Ok(s) => s,
            Err(e) => {
                hold.release().await;
                return Err(e);
            }
        },
    };
    let writer = match app.blobs.open_append(view.id, part, row.offset).await {
        Ok(w) => w,
        Err(e) => return Err(hold.storage_failed(e).await),
    };
    let server = &app.config.server;
    let (expected, check) = match checksum {
        Some(c) => (
            Some(c.expected),
            Some(std::sync::Arc::new(std::sync::Mutex::new(c.hasher))),
        ),
        None => (None, None),
    };
    let body = {
        let check = check.clone();
        body.into_data_stream().inspect(move |chunk| {
            if let (Some(check), Ok(bytes)) = (&check, chunk) {
                check.lock().expect("checksum state").update(bytes);
            }
        })
    };
    let body = Box::pin(with_min_rate(
        body,
        server.min_data_rate,
        Duration::from_secs(server.min_data_rate_grace_secs),
        Duration::from_secs(server.upload_idle_timeout_secs),
    ));
    let keep_partial = check.is_none();
    // Without a checksum a long PATCH is made durable every 64 MiB, so a crash loses at most that much.
    let mut progress = OffsetCheckpoint {
        app,
        id: view.id,
        part: part.unwrap_or(""),
        base: row.offset,
        durable: row.offset,
    };
    let checkpoint: Option<&mut dyn Checkpoint> = if keep_partial {
        Some(&mut progress)
    } else {
        None
    };
    let appended =
        match stream_append(body, writer, state, Some(room), keep_partial, checkpoint).await {
            Ok(a) => a,
            Err(StreamError::TooLarge(_)) => {
                hold.release().await;
                return Ok(Appended::TooLong);
            }
            Err(StreamError::Storage(e)) => return Err(hold.storage_failed(e).await),
            Err(StreamError::Body(e)) => {
                hold.release().await;
                return Err(ApiError::BadRequest(e));
            }
        };
    if let (Some(check), Some(expected)) = (check, expected) {
        let hasher = std::sync::Arc::try_unwrap(check)
            .ok()
            .map(|m| m.into_inner().expect("checksum state"));
        if hasher.map(ChecksumHasher::finish).as_deref() != Some(expected.as_slice()) {
            // The bytes past the durable offset are cut off when the upload continues.
            hold.release().await;
            return Ok(Appended::ChecksumMismatch);
        }
    }
    let new_offset = appended.state.len();
    let now = app.clock.now();
    if !app
        .store
        .advance_tus(
            view.id,
            part.unwrap_or(""),
            progress.durable,
            new_offset,
            new_length,
            now,
        )
        .await?
    {
        hold.release().await;
        return Err(ErrorCode::FileTransferAlreadyUploaded.into());
    }
    match hold {
        Hold::Transfer(lease) if row.length.or(new_length) == Some(new_offset) => {
            app.store.delete_tus(view.id, "").await?;
            lease.complete(appended.state.finish()).await?;
        }
        Hold::Transfer(lease) => {
            app.tus_hashes
                .lock()
                .expect("tus hash states")
                .insert(view.id, appended.state);
            lease.release().await;
        }
        // A complete part waits for the final upload that concatenates it.
        Hold::Part { .. } => {}
    }
    if let Some(reason) = appended.interrupted {
        tracing::info!(id = %view.id, offset = new_offset, %reason, "tus PATCH broke off; the received bytes are kept");
    }
    Ok(Appended::Offset(new_offset))
}

/// What keeps other requests off the bytes a request appends.
enum Hold {
    /// The transfer's own upload: its supervisor's upload slot.
    Transfer(broker_actors::UploadLease),
    /// A part of a concatenated upload: a lock on that part (parts upload in parallel), held until
    /// this value is dropped.
    Part {
        _lock: crate::http::tus_concat::PartLock,
    },
}

impl Hold {
    async fn take(app: &App, id: Uuid, part: Option<&str>) -> Result<Hold, ApiError> {
        match part {
            None => {
                let mut lease = app.lifecycle.begin_upload(id).await?;
                // Whatever happens to this request, the bytes acknowledged before it stay.
                lease.keep_bytes_on_drop();
                Ok(Hold::Transfer(lease))
            }
            Some(part) => Ok(Hold::Part {
                _lock: crate::http::tus_concat::PartLock::take(app, id, part)?,
            }),
        }
    }

    async fn release(self) {
        if let Hold::Transfer(lease) = self {
            lease.release().await;
        }
    }

    /// Our storage failed: the transfer fails (its own upload), or the part answers 500 and may be
    /// retried.
    async fn storage_failed(self, error: impl std::fmt::Display) -> ApiError {
        match self {
            Hold::Transfer(lease) => fail_storage(lease, error).await,
            Hold::Part { .. } => {
                tracing::error!(%error, "storage failed during a partial upload");
                ErrorCode::UploadFailed.into()
            }
        }
    }
}

/// `DELETE` (termination): removes the upload's bytes; the transfer stays UploadStarted, so a new upload
/// can be created.
pub async fn terminate(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Err(e) = check_version(&headers) {
        return Ok(e.into_response());
    }
    let view = sender_transfer(&app, &headers, &id).await?;
    if app.store.tus(view.id, "").await?.is_none() {
        return Ok(tus_error(
            StatusCode::NOT_FOUND,
            "No upload has been created for this file transfer",
        ));
    }
    let lease = app.lifecycle.begin_upload(view.id).await?;
    app.tus_hashes
        .lock()
        .expect("tus hash states")
        .remove(&view.id);
    app.store.delete_tus(view.id, "").await?;
    if let Err(e) = app.blobs.delete(view.id).await {
        tracing::warn!(id = %view.id, error = %e, "could not remove a terminated upload's bytes");
    }
    lease.release().await;
    Ok((
        StatusCode::NO_CONTENT,
        [tus_header("tus-resumable", TUS_VERSION)],
    )
        .into_response())
}
