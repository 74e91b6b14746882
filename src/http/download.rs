//! Downloads with the single-range rules of spec 5.

use crate::http::app::{parse_transfer_id, App, Policy};
use crate::http::error::ApiError;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use broker_actors::download::Download;
use broker_protocol::range::ByteRange;

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
    let download = app
        .broker
        .open_download(&caller, parse_transfer_id(&id)?)
        .await?;
    let size = download.size;
    // A strong validator: the content's SHA-256.
    let etag = download.sha256.as_ref().map(|sha| format!("\"{sha}\""));
    let range = requested_range(&headers, etag.as_deref());
    let (start, end) = match range {
        Some(r) => r
            .resolve(size)
            .map_err(|_| ApiError::RangeNotSatisfiable { size })?,
        None if size == 0 => (0, 0),
        None => (0, size - 1),
    };
    let len = if size == 0 { 0 } else { end - start + 1 };
    let stream = app
        .broker
        .read_download(&download, start, len, range.is_some(), !head)
        .await?;
    let body = stream.map_or_else(Body::empty, Body::from_stream);
    let range = range.map(|_| (start, end));
    Ok(respond(&download, etag, range, len, body))
}

/// The answer to a download: 200 with the whole file or 206 with `range`, and its headers.
fn respond(
    download: &Download,
    etag: Option<String>,
    range: Option<(u64, u64)>,
    len: u64,
    body: Body,
) -> Response {
    let status = match range {
        Some(_) => StatusCode::PARTIAL_CONTENT,
        None => StatusCode::OK,
    };
    let mut response = (status, body).into_response();
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
    let disposition = content_disposition(&download.file_name, &download.id.to_string());
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some((start, end)) = range {
        let size = download.size;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    response
}

/// The Range asked for, if any and still valid: `If-Range` with anything but the file's ETag (another
/// tag, a date) means the client's partial copy is stale, so the whole file is sent. An unparsable
/// Range is ignored (spec 5).
fn requested_range(headers: &HeaderMap, etag: Option<&str>) -> Option<ByteRange> {
    let still_valid = match headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(validator) => etag == Some(validator.trim()),
    };
    headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(ByteRange::parse)
        .filter(|_| still_valid)
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
