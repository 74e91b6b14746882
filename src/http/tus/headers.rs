//! Decoding tus requests: the protocol version, numbers, `Upload-Metadata`, `Upload-Concat` and
//! `Upload-Checksum` headers, and who may send them (a sender whose token expired mid-upload too).

use crate::http::app::{App, Policy};
use crate::http::error::ApiError;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use broker_actors::tus::UploadChecksum;
use broker_actors::{Caller, TusRefusal};
use broker_protocol::tus_headers::{self, UploadConcat};
use broker_protocol::TUS_VERSION;
use uuid::Uuid;

pub(crate) fn tus_header(name: &'static str, value: impl ToString) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static(name),
        HeaderValue::from_str(&value.to_string()).expect("header values are ASCII"),
    )
}

fn bad(text: impl Into<String>) -> ApiError {
    ApiError::Tus(TusRefusal::BadRequest(text.into()))
}

/// `Tus-Resumable: 1.0.0` (412 otherwise).
pub(super) fn check_version(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(TUS_VERSION) => Ok(()),
        _ => Err(TusRefusal::VersionUnsupported.into()),
    }
}

/// A non-negative integer header, if present.
pub(super) fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(tus_headers::parse_number)
            .map(Some)
            .ok_or_else(|| bad(format!("{name} must be a non-negative integer"))),
    }
}

/// Refuses an `Upload-Metadata` that is not valid tus grammar (400, as tus servers answer).
pub(super) fn check_metadata(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get("upload-metadata") else {
        return Ok(());
    };
    let text = value
        .to_str()
        .map_err(|_| bad("Upload-Metadata must be ASCII"))?;
    tus_headers::parse_metadata(text).map_err(|e| bad(e.to_string()))?;
    Ok(())
}

/// `Upload-Concat`, if present.
pub(super) fn concat(headers: &HeaderMap) -> Result<Option<UploadConcat<'_>>, ApiError> {
    match headers.get("upload-concat") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(tus_headers::parse_concat)
            .map(Some)
            .ok_or_else(|| bad("Upload-Concat must be 'partial' or 'final;<urls>'")),
    }
}

/// `Upload-Length`, or `None` for `Upload-Defer-Length: 1`; one of them is required.
pub(super) fn creation_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match (
        number(headers, "upload-length")?,
        headers.get("upload-defer-length"),
    ) {
        (Some(l), None) => Ok(Some(l)),
        (None, Some(v)) if v.as_bytes() == b"1" => Ok(None),
        _ => Err(bad("Upload-Length or Upload-Defer-Length: 1 is required")),
    }
}

/// `Upload-Checksum: <algorithm> <base64 digest>`, if present.
pub(super) fn checksum(headers: &HeaderMap) -> Result<Option<UploadChecksum>, ApiError> {
    let Some(value) = headers.get("upload-checksum") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| bad("Upload-Checksum is not valid"))?;
    let (algorithm, digest) = tus_headers::parse_checksum(text).map_err(bad)?;
    Ok(Some(UploadChecksum::new(algorithm, digest)))
}

/// Whether the body is `application/offset+octet-stream` (a PATCH, or a creation with upload).
pub(super) fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case(broker_protocol::TUS_OFFSET_CONTENT_TYPE)
        })
}

/// The `Upload-Expires` of an upload touched now (RFC 9110 date).
pub(super) fn expires(app: &App) -> HeaderValue {
    let at = app.broker.tus_expires();
    HeaderValue::from_str(&at.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .expect("dates are ASCII")
}

/// Authenticates the sender of an upload. A token that has expired is still accepted (signature and
/// issuer checked) while the caller may continue the transfer's upload: multi-hour uploads outlive
/// ~1 h tokens (spec 4.6). Only for as long past its expiry as an upload may sit untouched
/// (`server.tus_upload_expiry_secs`): a token expired longer ago is refused like any other.
pub(super) async fn upload_caller(
    app: &App,
    headers: &HeaderMap,
    id: Uuid,
) -> Result<Caller, ApiError> {
    match app.authorize(headers, Policy::Sender).await {
        Err(ApiError::Unauthenticated) => {}
        other => return other,
    }
    let token = app.bearer(headers).ok_or(ApiError::Unauthenticated)?;
    let caller = app
        .auth
        .authenticate_expired_within(
            token,
            std::time::Duration::from_secs(app.config.server.tus_upload_expiry_secs),
        )
        .await
        .map_err(|_| ApiError::Unauthenticated)?;
    match app.broker.may_continue_upload(&caller, id).await {
        Ok(true) => Ok(caller),
        _ => Err(ApiError::Unauthenticated),
    }
}
