//! The one place errors become HTTP responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use broker_actors::{Error, TusRefusal};
use broker_protocol::{ErrorCode, ProblemDetails, TUS_VERSION};
use std::collections::BTreeMap;

#[derive(Debug)]
pub enum ApiError {
    /// An application error from the catalogue (ProblemDetails with a `BRO-xxxxx` code).
    Code(ErrorCode),
    /// Field validation failed (ValidationProblemDetails).
    Validation(BTreeMap<String, Vec<String>>),
    /// No or invalid token: 401, empty body, `WWW-Authenticate: Bearer`.
    Unauthenticated,
    /// Valid token without the needed scope: 403, empty body.
    MissingScope,
    UnsupportedMediaType(&'static str),
    /// The request's Accept names none of the types this endpoint produces (plain text, as ASP.NET).
    NotAcceptable(&'static str),
    /// A Range beyond the file: 416 `BRO-00013` with `Content-Range: bytes */size`.
    RangeNotSatisfiable {
        size: u64,
    },
    /// A request we cannot process for a reason outside the catalogue (e.g. a broken body).
    BadRequest(String),
    /// A tus rule refused the request: plain text, as tusd and tusdotnet answer.
    Tus(TusRefusal),
    Internal(String),
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError::Code(code)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Refused(code) => ApiError::Code(code),
            Error::Invalid(errors) => ApiError::Validation(errors),
            Error::Tus(refusal) => ApiError::Tus(refusal),
            Error::Unreadable(text) => ApiError::BadRequest(text),
            Error::Conflict => ApiError::Code(ErrorCode::FileTransferAlreadyUploaded),
            Error::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<TusRefusal> for ApiError {
    fn from(r: TusRefusal) -> Self {
        ApiError::Tus(r)
    }
}

/// A tus refusal's status and text.
fn tus_status(refusal: TusRefusal) -> (StatusCode, String) {
    let bad = StatusCode::BAD_REQUEST;
    match refusal {
        TusRefusal::VersionUnsupported => (
            StatusCode::PRECONDITION_FAILED,
            "Tus-Resumable must be 1.0.0".into(),
        ),
        TusRefusal::BadRequest(text) => (bad, text),
        TusRefusal::ContentType => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/offset+octet-stream".into(),
        ),
        TusRefusal::NoUpload => (
            StatusCode::NOT_FOUND,
            "No upload has been created for this file transfer".into(),
        ),
        TusRefusal::NoSuchPart => (
            StatusCode::NOT_FOUND,
            "No such partial upload for this file transfer".into(),
        ),
        TusRefusal::OffsetMismatch { sent, actual } => (
            StatusCode::CONFLICT,
            format!("Upload-Offset {sent} does not match the upload's offset {actual}"),
        ),
        TusRefusal::OffsetMoved => (
            StatusCode::CONFLICT,
            "Upload-Offset no longer matches the upload's offset; ask for it with HEAD".into(),
        ),
        TusRefusal::TooLong => (bad, "The PATCH exceeded the upload's length".into()),
        TusRefusal::ChecksumMismatch => (
            StatusCode::from_u16(460).expect("460 is a valid status"),
            "Checksum Mismatch: the body does not match its Upload-Checksum; the offset did not move"
                .into(),
        ),
    }
}

/// A plain-text tus answer with the protocol's version headers.
fn tus_response(status: StatusCode, text: String) -> Response {
    let headers = [
        (
            header::HeaderName::from_static("tus-resumable"),
            HeaderValue::from_static(TUS_VERSION),
        ),
        (
            header::HeaderName::from_static("tus-version"),
            HeaderValue::from_static(TUS_VERSION),
        ),
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ),
    ];
    (status, headers, text).into_response()
}

impl From<broker_actors::ports::StoreError> for ApiError {
    fn from(e: broker_actors::ports::StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl ApiError {
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Validation(BTreeMap::from([(field.to_string(), vec![message.into()])]))
    }
}

tokio::task_local! {
    /// The path of the request being handled, for the `instance` of an unexpected error.
    pub static REQUEST_PATH: String;
}

/// A W3C trace-context id, as ASP.NET puts in `traceId`.
pub fn new_trace_id() -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("00-{a}-{}-01", &b[..16])
}

fn problem_response(problem: ProblemDetails) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        )],
        body,
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let trace_id = new_trace_id();
        match self {
            ApiError::Code(code) => {
                if code.http_status() >= 500 {
                    tracing::warn!(code = %code.code(), %trace_id, "request failed");
                }
                problem_response(ProblemDetails::for_code(code, trace_id))
            }
            ApiError::Validation(errors) => {
                problem_response(ProblemDetails::validation(errors, trace_id))
            }
            ApiError::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
            )
                .into_response(),
            ApiError::MissingScope => StatusCode::FORBIDDEN.into_response(),
            ApiError::UnsupportedMediaType(expected) => problem_response(ProblemDetails::plain(
                415,
                format!("The request body must be {expected}."),
                trace_id,
            )),
            ApiError::BadRequest(detail) => {
                problem_response(ProblemDetails::plain(400, detail, trace_id))
            }
            ApiError::NotAcceptable(produced) => (
                StatusCode::NOT_ACCEPTABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("This endpoint does not support the requested Accept header. Supported Accept headers are: {produced}, */*."),
            )
                .into_response(),
            ApiError::RangeNotSatisfiable { size } => {
                let mut response = problem_response(ProblemDetails::for_code(
                    ErrorCode::RangeNotSatisfiable,
                    trace_id,
                ));
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                response
            }
            ApiError::Tus(refusal) => {
                let (status, text) = tus_status(refusal);
                tus_response(status, text)
            }
            ApiError::Internal(message) => {
                tracing::error!(%trace_id, error = %message, "internal error");
                let mut p = ProblemDetails::for_code(ErrorCode::InternalError, trace_id);
                p.code = None;
                p.detail = None;
                p.instance = REQUEST_PATH.try_with(String::clone).ok();
                p.title = "Internal Server Error".into();
                problem_response(p)
            }
        }
    }
}
