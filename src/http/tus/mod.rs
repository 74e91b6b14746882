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

/// The `Tus-Resumable` header's one accepted value, for the OpenAPI description.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum TusResumable {
    #[schema(rename = "1.0.0")]
    V1_0_0,
}

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
#[utoipa::path(options, path = "/broker/api/v1/filetransfer/upload/tus/{fileTransferId}", tag = "Resumable upload (tus)",
    operation_id = "tus_options", params(("fileTransferId" = Uuid, Path)),
    responses((status = 204, description = "The protocol's version, extensions, checksum algorithms and largest size",
        headers(("Tus-Resumable" = String), ("Tus-Version" = String), ("Tus-Extension" = String),
            ("Tus-Checksum-Algorithm" = String), ("Tus-Max-Size" = u64)))),
    security(("bearer" = ["altinn:broker.write"])))]
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
#[utoipa::path(post, path = "/broker/api/v1/filetransfer/upload/tus/{fileTransferId}", tag = "Resumable upload (tus)",
    operation_id = "tus_create",
    params(("fileTransferId" = Uuid, Path), ("Tus-Resumable" = TusResumable, Header, description = "The tus version: 1.0.0 (412 otherwise)"),
        ("Upload-Length" = Option<u64>, Header, description = "The upload's length in bytes"),
        ("Upload-Defer-Length" = Option<String>, Header, description = "1: the length comes with a later PATCH"),
        ("Upload-Metadata" = Option<String>, Header, description = "tus metadata: comma-separated `key base64value` pairs"),
        ("Upload-Concat" = Option<String>, Header, description = "`partial` (a part of a concatenated upload) or `final;<part URLs>` (joins them)"),
        ("Upload-Checksum" = Option<String>, Header, description = "`md5|sha1|sha256 <base64 digest>` of the bytes sent with the creation")),
    request_body(description = "The first bytes (creation-with-upload), optional", content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses((status = 201, description = "Created: the upload (or part) is at `Location`",
            headers(("Location" = String), ("Tus-Resumable" = String), ("Upload-Offset" = Option<u64>, description = "With creation-with-upload"),
                ("Upload-Expires" = Option<String>), ("Upload-Length" = Option<u64>, description = "Of a final upload: the joined size"),
                ("Upload-Concat" = Option<String>, description = "`partial` for a new part"))),
        (status = 400, description = "A tus header that is not valid (plain text), or a ProblemDetails refusal", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 404, description = "No such upload or part (plain text), or no such transfer (`BRO-00001`)", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 409, description = "`Upload-Offset` is not the upload's offset (plain text), or the transfer is uploaded (`BRO-00004`)", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 412, description = "`Tus-Resumable` is missing or not 1.0.0", content_type = "text/plain", body = String), (status = 415, description = "The body is not `application/offset+octet-stream`", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 460, description = "The body does not match its `Upload-Checksum`; the offset did not move", content_type = "text/plain", body = String), (status = 507, description = "Not enough free storage for the declared length (`BRO-09001`)", body = broker_protocol::ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = ["altinn:broker.write"])))]
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
#[utoipa::path(head, path = "/broker/api/v1/filetransfer/upload/tus/{fileTransferId}", tag = "Resumable upload (tus)",
    operation_id = "tus_head", params(("fileTransferId" = Uuid, Path), ("Tus-Resumable" = TusResumable, Header, description = "The tus version: 1.0.0 (412 otherwise)")),
    responses((status = 200, description = "The durable offset (a PATCH still running on the upload is stopped first)",
            headers(("Upload-Offset" = u64), ("Upload-Length" = Option<u64>), ("Upload-Defer-Length" = Option<String>),
                ("Tus-Resumable" = String), ("Cache-Control" = String))),
        (status = 400, description = "Not valid (plain text or ProblemDetails; no body on HEAD)"), (status = 404, description = "No such upload, part or transfer (no body on HEAD)"), (status = 412, description = "`Tus-Resumable` is missing or not 1.0.0 (no body on HEAD)")),
    security(("bearer" = ["altinn:broker.write"])))]
pub async fn head(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    head_of(&app, &id, None, &headers).await
}

/// `HEAD` on a part of a concatenated upload.
#[utoipa::path(head, path = "/broker/api/v1/filetransfer/upload/tus/{fileTransferId}/partial/{partId}", tag = "Resumable upload (tus)",
    operation_id = "tus_head_part", params(("fileTransferId" = Uuid, Path), ("partId" = String, Path, description = "The part's id, as its Location gave it"), ("Tus-Resumable" = TusResumable, Header, description = "The tus version: 1.0.0 (412 otherwise)")),
    responses((status = 200, description = "The part's durable offset",
            headers(("Upload-Offset" = u64), ("Upload-Length" = Option<u64>), ("Upload-Defer-Length" = Option<String>),
                ("Upload-Concat" = String), ("Tus-Resumable" = String), ("Cache-Control" = String))),
        (status = 400, description = "Not valid (plain text or ProblemDetails; no body on HEAD)"), (status = 404, description = "No such upload, part or transfer (no body on HEAD)"), (status = 412, description = "`Tus-Resumable` is missing or not 1.0.0 (no body on HEAD)")),
    security(("bearer" = ["altinn:broker.write"])))]
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
#[utoipa::path(patch, path = "/broker/api/v1/filetransfer/upload/tus/{fileTransferId}", tag = "Resumable upload (tus)",
    operation_id = "tus_patch",
    params(("fileTransferId" = Uuid, Path), ("Tus-Resumable" = TusResumable, Header, description = "The tus version: 1.0.0 (412 otherwise)"),
        ("Upload-Offset" = u64, Header, description = "Where the bytes go: the upload's offset"),
        ("Upload-Length" = Option<u64>, Header, description = "The length, if it was deferred"),
        ("Upload-Checksum" = Option<String>, Header, description = "`md5|sha1|sha256 <base64 digest>` of this PATCH's bytes")),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses((status = 204, description = "Appended: the new durable offset",
            headers(("Upload-Offset" = u64), ("Upload-Expires" = String), ("Tus-Resumable" = String))),
        (status = 400, description = "A tus header that is not valid (plain text), or a ProblemDetails refusal", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 404, description = "No such upload or part (plain text), or no such transfer (`BRO-00001`)", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 409, description = "`Upload-Offset` is not the upload's offset (plain text), or the transfer is uploaded (`BRO-00004`)", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 412, description = "`Tus-Resumable` is missing or not 1.0.0", content_type = "text/plain", body = String), (status = 415, description = "The body is not `application/offset+octet-stream`", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 460, description = "The body does not match its `Upload-Checksum`; the offset did not move", content_type = "text/plain", body = String), (status = 507, description = "Not enough free storage for the declared length (`BRO-09001`)", body = broker_protocol::ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = ["altinn:broker.write"])))]
pub async fn patch(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    patch_at(&app, &id, None, &headers, body).await
}

/// `PATCH` on a part of a concatenated upload.
#[utoipa::path(patch, path = "/broker/api/v1/filetransfer/upload/tus/{fileTransferId}/partial/{partId}", tag = "Resumable upload (tus)",
    operation_id = "tus_patch_part",
    params(("fileTransferId" = Uuid, Path), ("partId" = String, Path, description = "The part's id, as its Location gave it"), ("Tus-Resumable" = TusResumable, Header, description = "The tus version: 1.0.0 (412 otherwise)"),
        ("Upload-Offset" = u64, Header, description = "Where the bytes go: the part's offset"),
        ("Upload-Length" = Option<u64>, Header, description = "The part's length, if it was deferred"),
        ("Upload-Checksum" = Option<String>, Header, description = "`md5|sha1|sha256 <base64 digest>` of this PATCH's bytes")),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses((status = 204, description = "Appended: the part's new durable offset",
            headers(("Upload-Offset" = u64), ("Upload-Expires" = String), ("Tus-Resumable" = String))),
        (status = 400, description = "A tus header that is not valid (plain text), or a ProblemDetails refusal", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 404, description = "No such upload or part (plain text), or no such transfer (`BRO-00001`)", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 409, description = "`Upload-Offset` is not the upload's offset (plain text), or the transfer is uploaded (`BRO-00004`)", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 412, description = "`Tus-Resumable` is missing or not 1.0.0", content_type = "text/plain", body = String), (status = 415, description = "The body is not `application/offset+octet-stream`", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 460, description = "The body does not match its `Upload-Checksum`; the offset did not move", content_type = "text/plain", body = String), (status = 507, description = "Not enough free storage for the declared length (`BRO-09001`)", body = broker_protocol::ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = ["altinn:broker.write"])))]
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
#[utoipa::path(delete, path = "/broker/api/v1/filetransfer/upload/tus/{fileTransferId}", tag = "Resumable upload (tus)",
    operation_id = "tus_terminate", params(("fileTransferId" = Uuid, Path), ("Tus-Resumable" = TusResumable, Header, description = "The tus version: 1.0.0 (412 otherwise)")),
    responses((status = 204, description = "The upload and its parts are removed", headers(("Tus-Resumable" = String))),
        (status = 400, description = "A tus header that is not valid (plain text), or a ProblemDetails refusal", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 404, description = "No such upload or part (plain text), or no such transfer (`BRO-00001`)", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 409, description = "`Upload-Offset` is not the upload's offset (plain text), or the transfer is uploaded (`BRO-00004`)", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 412, description = "`Tus-Resumable` is missing or not 1.0.0", content_type = "text/plain", body = String)),
    security(("bearer" = ["altinn:broker.write"])))]
pub async fn terminate(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    terminate_of(&app, &id, None, &headers).await
}

/// `DELETE` on a part of a concatenated upload.
#[utoipa::path(delete, path = "/broker/api/v1/filetransfer/upload/tus/{fileTransferId}/partial/{partId}", tag = "Resumable upload (tus)",
    operation_id = "tus_terminate_part", params(("fileTransferId" = Uuid, Path), ("partId" = String, Path, description = "The part's id, as its Location gave it"), ("Tus-Resumable" = TusResumable, Header, description = "The tus version: 1.0.0 (412 otherwise)")),
    responses((status = 204, description = "The part is removed", headers(("Tus-Resumable" = String))),
        (status = 400, description = "A tus header that is not valid (plain text), or a ProblemDetails refusal", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 404, description = "No such upload or part (plain text), or no such transfer (`BRO-00001`)", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 409, description = "`Upload-Offset` is not the upload's offset (plain text), or the transfer is uploaded (`BRO-00004`)", content((String = "text/plain"), (broker_protocol::ProblemDetails = "application/problem+json"))), (status = 412, description = "`Tus-Resumable` is missing or not 1.0.0", content_type = "text/plain", body = String)),
    security(("bearer" = ["altinn:broker.write"])))]
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
