//! tus 1.0.0 resumable uploads at `/broker/api/v1/filetransfer/upload/tus/{fileTransferId}` (spec 4):
//! each handler decodes the tus headers, calls the broker's tus commands, and encodes the answer.

mod headers;

use crate::http::app::{parse_transfer_id, App, Policy};
use crate::http::error::ApiError;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use broker_actors::tus::Patch;
use broker_actors::{Caller, TusRefusal, MAX_FILE_SIZE};
use broker_protocol::tus_headers::UploadConcat;
use broker_protocol::TUS_VERSION;
use headers::{check_version, number, tus_header, upload_caller};
use uuid::Uuid;

const EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,checksum,concatenation,expiration";

fn upload_url(id: impl std::fmt::Display) -> String {
    format!("/broker/api/v1/filetransfer/upload/tus/{id}")
}

fn location(url: &str) -> (header::HeaderName, HeaderValue) {
    (
        header::LOCATION,
        HeaderValue::from_str(url).expect("ids are ASCII"),
    )
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

/// The body of a request with what its headers say of it.
fn patch_of(
    headers: &HeaderMap,
    body: Body,
    new_length: Option<u64>,
) -> Result<Patch<axum::body::BodyDataStream>, ApiError> {
    Ok(Patch {
        body: body.into_data_stream(),
        new_length,
        len: number(headers, "content-length")?,
        checksum: headers::checksum(headers)?,
    })
}

/// `POST`: creates the upload (Upload-Length, or Upload-Defer-Length: 1), optionally with its first
/// bytes; with `Upload-Concat`, a part or the final upload that joins parts.
pub async fn create(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_version(&headers)?;
    let id = parse_transfer_id(&id)?;
    let caller = upload_caller(&app, &headers, id).await?;
    headers::check_metadata(&headers)?;
    let partial = match headers::concat(&headers)? {
        None => false,
        Some(UploadConcat::Partial) => true,
        Some(UploadConcat::Final(urls)) => return join_parts(&app, &caller, id, &urls).await,
    };
    let length = headers::creation_length(&headers)?;
    if partial {
        return create_part(&app, &caller, id, length).await;
    }
    let first = match headers::is_offset_stream(&headers) {
        true => Some(patch_of(&headers, body, None)?),
        false => None,
    };
    let offset = app.broker.tus_create(&caller, id, length, first).await?;
    let mut response = match offset {
        Some(offset) => {
            (StatusCode::CREATED, [tus_header("upload-offset", offset)]).into_response()
        }
        None => StatusCode::CREATED.into_response(),
    };
    let h = response.headers_mut();
    h.insert(header::LOCATION, location(&upload_url(id)).1);
    h.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    h.insert("upload-expires", headers::expires(&app));
    Ok(response)
}

/// `Upload-Concat: final;<urls>`: joins the listed parts.
async fn join_parts(
    app: &App,
    caller: &Caller,
    id: Uuid,
    urls: &[&str],
) -> Result<Response, ApiError> {
    let size = app.broker.tus_finish(caller, id, urls).await?;
    let url = upload_url(id);
    let answer = [
        tus_header("tus-resumable", TUS_VERSION),
        tus_header("upload-length", size),
        location(&url),
    ];
    Ok((StatusCode::CREATED, answer).into_response())
}

/// `Upload-Concat: partial`: a new part, at its own URL.
async fn create_part(
    app: &App,
    caller: &Caller,
    id: Uuid,
    length: Option<u64>,
) -> Result<Response, ApiError> {
    let part = app.broker.tus_create_part(caller, id, length).await?;
    let url = format!("{}/partial/{part}", upload_url(id));
    let answer = [
        tus_header("tus-resumable", TUS_VERSION),
        tus_header("upload-concat", "partial"),
        location(&url),
    ];
    Ok((StatusCode::CREATED, answer).into_response())
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
    check_version(headers)?;
    let id = parse_transfer_id(id)?;
    let caller = upload_caller(app, headers, id).await?;
    let state = app.broker.tus_head(&caller, id, part).await?;
    let mut response = (
        StatusCode::OK,
        [
            tus_header("tus-resumable", TUS_VERSION),
            tus_header("upload-offset", state.offset),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response();
    let h = response.headers_mut();
    match state.length {
        Some(l) => h.insert("upload-length", HeaderValue::from(l)),
        None => h.insert("upload-defer-length", HeaderValue::from_static("1")),
    };
    if part.is_some() {
        h.insert("upload-concat", HeaderValue::from_static("partial"));
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
    patch_at(&app, &id, None, &headers, body).await
}

/// `PATCH` on a part of a concatenated upload.
pub async fn patch_part(
    State(app): State<App>,
    Path((id, part)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    patch_at(&app, &id, Some(&part), &headers, body).await
}

async fn patch_at(
    app: &App,
    id: &str,
    part: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_version(headers)?;
    if !headers::is_offset_stream(headers) {
        return Err(TusRefusal::ContentType.into());
    }
    let required = || ApiError::Tus(TusRefusal::BadRequest("Upload-Offset is required".into()));
    let offset = number(headers, "upload-offset")?.ok_or_else(required)?;
    let new_length = number(headers, "upload-length")?;
    let patch = patch_of(headers, body, new_length)?;
    let id = parse_transfer_id(id)?;
    let caller = upload_caller(app, headers, id).await?;
    let offset = app
        .broker
        .tus_patch(&caller, id, part, offset, patch)
        .await?;
    let answer = [
        tus_header("tus-resumable", TUS_VERSION),
        tus_header("upload-offset", offset),
        (
            header::HeaderName::from_static("upload-expires"),
            headers::expires(app),
        ),
    ];
    Ok((StatusCode::NO_CONTENT, answer).into_response())
}

/// `DELETE` (termination): removes the upload's bytes, and the parts sent for it if any; the transfer
/// stays UploadStarted, so a new upload can be created.
pub async fn terminate(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    terminate_of(&app, &id, None, &headers).await
}

/// `DELETE` on a part of a concatenated upload.
pub async fn terminate_part(
    State(app): State<App>,
    Path((id, part)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    terminate_of(&app, &id, Some(&part), &headers).await
}

async fn terminate_of(
    app: &App,
    id: &str,
    part: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    check_version(headers)?;
    let id = parse_transfer_id(id)?;
    let caller = upload_caller(app, headers, id).await?;
    app.broker.tus_terminate(&caller, id, part).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [tus_header("tus-resumable", TUS_VERSION)],
    )
        .into_response())
}
