//! Downloads with the single-range rules of spec 5.

use crate::app::{parse_transfer_id, require_recipient, App, Policy};
use crate::http::error::ApiError;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use broker_protocol::range::ByteRange;
use broker_protocol::ErrorCode;

/// RFC 6266 / 5987: an ASCII fallback plus the UTF-8 name, percent-encoded. Only the name's last path
/// component is kept, without control characters; when nothing printable remains, `fallback` (the
/// transfer id) names the file.
pub fn content_disposition(file_name: &str, fallback: &str) -> String {
    let last = file_name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    let clean = match clean.trim() {
        "" | "." | ".." => fallback.to_string(),
        _ => clean,
    };
    let fallback: String = clean
        .chars()
        .map(|c| {
            if c.is_ascii() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in clean.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Downloads the file, whole or one byte range.
#[utoipa::path(get, path = "/broker/api/v1/filetransfer/{fileTransferId}/download", tag = "File transfer",
    params(("fileTransferId" = Uuid, Path), ("Range" = Option<String>, Header, description = "One range: bytes=a-b, bytes=a- or bytes=-n"),
        ("If-Range" = Option<String>, Header, description = "The ETag of a partial copy: the range is served only if the file still has it, else the whole file")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 206, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401), (status = 403, body = broker_protocol::ProblemDetails), (status = 404, body = broker_protocol::ProblemDetails),
        (status = 410, body = broker_protocol::ProblemDetails), (status = 416, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:broker.read"])))]
pub async fn download(
    State(app): State<App>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // HEAD tells the size and range support without downloading, so it records no DownloadStarted.
    let head = method == Method::HEAD;
    let caller = app.authorize(&headers, Policy::Recipient).await?;
    let view = app.transfer(parse_transfer_id(&id)?).await?;
    let recipient = require_recipient(&caller, &view)?;
    if !matches!(
        view.status,
        broker_protocol::FileTransferStatus::Published
            | broker_protocol::FileTransferStatus::AllConfirmedDownloaded
    ) {
        return Err(ErrorCode::FileNotReadyForDownload.into());
    }
    app.resource_of(&view).await?;
    if app.clock.now() >= view.expiration_time {
        return Err(ErrorCode::FileTransferExpired.into());
    }
    let size = view.size as u64;
    // A strong validator: the content's SHA-256. `If-Range` with anything else (another tag, a date)
    // means the client's partial copy is stale, so the whole file is sent.
    let etag = view.sha256.as_ref().map(|sha| format!("\"{sha}\""));
    let range_still_valid = match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(validator) => etag.as_deref() == Some(validator.trim()),
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(ByteRange::parse)
        .filter(|_| range_still_valid);
    let (start, end) = match range {
        Some(r) => match r.resolve(size) {
            Ok(bounds) => bounds,
            Err(_) => {
                let mut response = ApiError::Code(ErrorCode::RangeNotSatisfiable).into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(response);
            }
        },
        None if size == 0 => (0, 0),
        None => (0, size - 1),
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    if !head && app.should_record_download(view.id, &recipient, range.is_some()) {
        app.lifecycle.record_download(view.id, recipient).await?;
    }
    let body = if len == 0 || head {
        Body::empty()
    } else {
        let stream = app
            .blobs
            .read(view.id, start, len)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Body::from_stream(stream)
    };
    let mut response = (
        if range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        },
        body,
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) =
        HeaderValue::from_str(&content_disposition(&view.file_name, &view.id.to_string()))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if range.is_some() {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_encoded_for_content_disposition() {
        assert_eq!(
            content_disposition("rapport 2026.pdf", "id"),
            "attachment; filename=\"rapport 2026.pdf\"; filename*=UTF-8''rapport%202026.pdf"
        );
        assert_eq!(
            content_disposition("bl\u{e5}b\u{e6}r\"\n.txt", "id"),
            "attachment; filename=\"bl_b_r_.txt\"; filename*=UTF-8''bl%C3%A5b%C3%A6r%22.txt"
        );
    }

    #[test]
    fn only_the_last_path_component_of_a_file_name_is_kept() {
        assert_eq!(
            content_disposition("../../etc/passwd", "id"),
            "attachment; filename=\"passwd\"; filename*=UTF-8''passwd"
        );
        assert_eq!(
            content_disposition("C:\\Users\\a\\report.pdf", "id"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
    }

    #[test]
    fn a_name_with_nothing_printable_left_falls_back_to_the_transfer_id() {
        for name in ["\n\t", "../", "..", "dir/\u{7}", "  "] {
            assert_eq!(
                content_disposition(name, "5f0c"),
                "attachment; filename=\"5f0c\"; filename*=UTF-8''5f0c",
                "{name:?}"
            );
        }
    }
}
