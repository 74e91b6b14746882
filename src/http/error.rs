//! The one place errors become HTTP responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use broker_actors::LifecycleError;
use broker_protocol::{ErrorCode, ProblemDetails};
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
    /// A request we cannot process for a reason outside the catalogue (e.g. a broken body).
    BadRequest(String),
    Internal(String),
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError::Code(code)
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::Rejected(code) => ApiError::Code(code),
            LifecycleError::Conflict => ApiError::Code(ErrorCode::FileTransferAlreadyUploaded),
            LifecycleError::Internal(m) => ApiError::Internal(m),
        }
    }
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
