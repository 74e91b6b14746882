//! Statistics endpoints (spec 7.4-7.5): a service owner's monthly CSV, and the internal daily summary
//! behind `X-API-Key` and a per-client rate limit.

use crate::daily_report;
use crate::http::app::{App, Policy};
use crate::http::error::ApiError;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use broker_actors::ports::RateDecision as Decision;
use broker_actors::statistics::MonthlyReportQuery;
use broker_protocol::ErrorCode;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

fn flag(pairs: &[(String, String)], name: &str, default: bool) -> Result<bool, ApiError> {
    match pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)) {
        None => Ok(default),
        Some((_, v)) if v.is_empty() => Ok(default),
        Some((_, v)) => v
            .to_ascii_lowercase()
            .parse()
            .map_err(|_| ApiError::field(name, format!("The value '{v}' is not valid."))),
    }
}

fn number<T: std::str::FromStr>(pairs: &[(String, String)], name: &str) -> Option<T> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// A service owner's monthly statistics as CSV (spec 7.4). A year or month missing or out of range is
/// `6003`, as the original answers a month it cannot read.
#[utoipa::path(get, path = "/broker/api/v1/statistics/monthly", tag = "Statistics",
    params(("year" = i32, Query), ("month" = u32, Query), ("resourceId" = Option<String>, Query),
        ("includeEndUser" = Option<bool>, Query), ("includeVendor" = Option<bool>, Query)),
    responses((status = 200, content_type = "text/csv", body = String), (status = 400, body = broker_protocol::ProblemDetails),
        (status = 401, body = broker_protocol::ProblemDetails), (status = 403)),
    security(("bearer" = ["altinn:serviceowner"])))]
pub async fn monthly(
    State(app): State<App>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let caller = app.authorize(&headers, Policy::ServiceOwner).await?;
    let query = MonthlyReportQuery {
        year: number(&pairs, "year").unwrap_or(0),
        month: number(&pairs, "month").unwrap_or(0),
        resource_id: pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("resourceId"))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.trim().is_empty()),
        include_end_user: flag(&pairs, "includeEndUser", true)?,
        include_vendor: flag(&pairs, "includeVendor", false)?,
    };
    let report = app.broker.monthly_report(&caller, query).await?;
    let disposition = format!("attachment; filename={}", report.file_name);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        report.csv,
    )
        .into_response())
}

/// Compares the keys' digests, so the time taken tells nothing about how much of the key matched.
fn same_key(given: &str, expected: &str) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn rate_headers(decision: &Decision) -> [(HeaderName, HeaderValue); 3] {
    [
        (
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderValue::from(decision.limit),
        ),
        (
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderValue::from(decision.remaining),
        ),
        (
            HeaderName::from_static("x-ratelimit-reset"),
            HeaderValue::from(decision.reset_unix()),
        ),
    ]
}

/// The daily summary's refusal of a call without a valid `X-API-Key` (as the original answers it).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct DailySummaryRefused {
    pub error: String,
}

/// The daily summary's answer to a client past its rate limit.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailySummaryRateLimited {
    pub error: String,
    /// Seconds until a call is let through again (also in `Retry-After`).
    pub retry_after: u64,
    pub reset_time: String,
}

/// The daily summary kept under the data dir's `reports/`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DailySummaryStored {
    pub file_path: String,
    /// The Parquet file's hash.
    pub file_hash: String,
    pub file_size_bytes: usize,
    pub service_owner_count: usize,
    pub total_file_transfer_count: u64,
    pub generated_at: String,
    pub environment: String,
    #[serde(rename = "altinn2Included")]
    pub altinn2_included: bool,
}

fn unauthorized(message: &str) -> Response {
    let body = DailySummaryRefused {
        error: message.into(),
    };
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

/// The daily summary's gate: the client's rate limit (every call counts, so keys cannot be guessed
/// quickly), then the API key. The refusal, if any, comes with the decision.
async fn admit(
    app: &App,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<(Decision, Option<Response>), ApiError> {
    let now = chrono::Utc::now();
    let decision = app
        .daily_summary_limit
        .check(&app.trusted_proxies.client(headers, peer).to_string(), now)
        .await?;
    if !decision.allowed {
        let retry_after = decision.retry_after(now);
        let reset = decision.reset;
        let body = DailySummaryRateLimited {
            error: "Rate limit exceeded. Too many requests for the daily summary report.".into(),
            retry_after,
            reset_time: broker_protocol::time::format(&reset),
        };
        let response = (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from(retry_after))],
            Json(body),
        );
        return Ok((decision, Some(response.into_response())));
    }
    let given = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or("");
    let refusal = match app.config.statistics.api_key.as_deref() {
        None => Some("The statistics API key is not configured on this broker."),
        Some(_) if given.is_empty() => Some("The X-API-Key header is missing."),
        Some(expected) if !same_key(given, expected.trim()) => Some("The API key is not valid."),
        Some(_) => None,
    };
    Ok((decision, refusal.map(unauthorized)))
}

/// Answers an admitted call with what `answer` makes; the rate limit's headers go on every answer,
/// refusals included.
async fn gated<F: std::future::Future<Output = Response>>(
    app: &App,
    headers: &HeaderMap,
    peer: SocketAddr,
    answer: impl FnOnce() -> F,
) -> Response {
    let (decision, refusal) = match admit(app, headers, peer).await {
        Ok(admitted) => admitted,
        Err(e) => return e.into_response(),
    };
    let mut response = match refusal {
        Some(refused) => refused,
        None => answer().await,
    };
    response.headers_mut().extend(rate_headers(&decision));
    response
}

fn environment(app: &App) -> String {
    app.config
        .statistics
        .environment
        .clone()
        .unwrap_or_else(|| {
            match app.config.registry.environment {
                crate::config::Environment::Production => "production",
                crate::config::Environment::Development => "development",
            }
            .to_string()
        })
}

/// Builds today's report from every transfer; no transfers is `6001`.
async fn generate(app: &App) -> Result<daily_report::DailyReport, ApiError> {
    let rows = app
        .broker
        .daily_summary(&app.config.statistics.status_message_resources)
        .await?;
    if rows.is_empty() {
        return Err(ErrorCode::NoFileTransfersForReport.into());
    }
    daily_report::build(&rows, &environment(app), chrono::Utc::now()).map_err(|e| {
        tracing::error!(error = %e, "the daily summary could not be built");
        ApiError::Code(ErrorCode::ReportGenerationFailed)
    })
}

/// Builds the report and keeps it under the data dir's `reports/`; the answer describes it.
async fn stored_report(app: &App) -> Result<Json<DailySummaryStored>, ApiError> {
    let report = generate(app).await?;
    let path = daily_report::store(&app.config.storage.data_dir, &report)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the daily summary could not be stored");
            ApiError::Code(ErrorCode::ReportGenerationFailed)
        })?;
    Ok(Json(DailySummaryStored {
        file_path: path.display().to_string(),
        file_hash: report.hash,
        file_size_bytes: report.bytes.len(),
        service_owner_count: report.service_owner_count,
        total_file_transfer_count: report.total_file_transfers,
        generated_at: broker_protocol::time::format(&report.generated_at),
        environment: report.environment,
        altinn2_included: false,
    }))
}

/// Generates the daily summary and keeps it under the data dir's `reports/`. Internal: it takes the
/// operator's `X-API-Key`, not a token, and a client may call it a few times a minute.
#[utoipa::path(post, path = "/broker/api/v1/statistics/generate-daily-summary", tag = "Statistics",
    responses((status = 200, description = "The report, kept under the data dir's `reports/`", body = DailySummaryStored,
            headers(("X-RateLimit-Limit" = u32), ("X-RateLimit-Remaining" = u32), ("X-RateLimit-Reset" = u64))),
        (status = 401, description = "No `X-API-Key`, a wrong one, or none configured on this broker", body = DailySummaryRefused,
            headers(("X-RateLimit-Limit" = u32), ("X-RateLimit-Remaining" = u32), ("X-RateLimit-Reset" = u64))),
        (status = 404, description = "No file transfers to report (`6001`)", body = broker_protocol::ProblemDetails, content_type = "application/problem+json"),
        (status = 406, description = "The `Accept` header names no media type this endpoint produces", content_type = "text/plain", body = String),
        (status = 429, description = "Too many calls from this client: retry after `Retry-After` seconds", body = DailySummaryRateLimited,
            headers(("Retry-After" = u64), ("X-RateLimit-Limit" = u32), ("X-RateLimit-Remaining" = u32), ("X-RateLimit-Reset" = u64))),
        (status = 500, description = "The report could not be built or kept (`6002`)", body = broker_protocol::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down (`BRO-09006`)", body = broker_protocol::ProblemDetails, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn generate_daily_summary(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    gated(&app, &headers, peer, || async {
        stored_report(&app).await.into_response()
    })
    .await
}

/// Generates the daily summary and sends the file itself (internal, as above).
#[utoipa::path(post, path = "/broker/api/v1/statistics/generate-and-download-daily-summary", tag = "Statistics",
    responses((status = 200, description = "The report itself (Parquet)", content_type = "application/octet-stream", body = Vec<u8>,
            headers(("Content-Disposition" = String), ("X-File-Hash" = String), ("X-File-Size" = u64), ("X-Service-Owner-Count" = u64),
                ("X-Total-FileTransfer-Count" = u64), ("X-Generated-At" = String), ("X-Environment" = String), ("X-Altinn2-Included" = bool),
                ("X-RateLimit-Limit" = u32), ("X-RateLimit-Remaining" = u32), ("X-RateLimit-Reset" = u64))),
        (status = 401, description = "No `X-API-Key`, a wrong one, or none configured on this broker", body = DailySummaryRefused,
            headers(("X-RateLimit-Limit" = u32), ("X-RateLimit-Remaining" = u32), ("X-RateLimit-Reset" = u64))),
        (status = 404, description = "No file transfers to report (`6001`)", body = broker_protocol::ProblemDetails, content_type = "application/problem+json"),
        (status = 406, description = "The `Accept` header names no media type this endpoint produces", content_type = "text/plain", body = String),
        (status = 429, description = "Too many calls from this client: retry after `Retry-After` seconds", body = DailySummaryRateLimited,
            headers(("Retry-After" = u64), ("X-RateLimit-Limit" = u32), ("X-RateLimit-Remaining" = u32), ("X-RateLimit-Reset" = u64))),
        (status = 500, description = "The report could not be built or kept (`6002`)", body = broker_protocol::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "Shutting down (`BRO-09006`)", body = broker_protocol::ProblemDetails, content_type = "application/problem+json")),
    security(("api_key" = [])))]
pub async fn download_daily_summary(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    gated(&app, &headers, peer, || async {
        match generate(&app).await {
            Ok(report) => {
                let text = |v: String| HeaderValue::from_str(&v).expect("a header-safe value");
                let headers = [
                    (
                        header::CONTENT_TYPE,
                        text("application/octet-stream".into()),
                    ),
                    (
                        header::CONTENT_DISPOSITION,
                        text(format!("attachment; filename={}", report.file_name)),
                    ),
                    (
                        HeaderName::from_static("x-file-hash"),
                        text(report.hash.clone()),
                    ),
                    (
                        HeaderName::from_static("x-file-size"),
                        text(report.bytes.len().to_string()),
                    ),
                    (
                        HeaderName::from_static("x-service-owner-count"),
                        text(report.service_owner_count.to_string()),
                    ),
                    (
                        HeaderName::from_static("x-total-filetransfer-count"),
                        text(report.total_file_transfers.to_string()),
                    ),
                    (
                        HeaderName::from_static("x-generated-at"),
                        text(broker_protocol::time::format(&report.generated_at)),
                    ),
                    (
                        HeaderName::from_static("x-environment"),
                        text(report.environment.clone()),
                    ),
                    (
                        HeaderName::from_static("x-altinn2-included"),
                        text("false".into()),
                    ),
                ];
                (headers, report.bytes).into_response()
            }
            Err(e) => e.into_response(),
        }
    })
    .await
}
