//! Statistics endpoints (spec 7.4-7.5): a service owner's monthly CSV, and the internal daily summary
//! behind `X-API-Key` and a per-client rate limit.

use crate::daily_report;
use crate::http::app::{App, Policy};
use crate::http::error::ApiError;
use crate::http::rate_limit::Decision;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use broker_actors::statistics::MonthlyReportQuery;
use broker_protocol::ErrorCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::time::SystemTime;

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

fn unauthorized(message: &str) -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({ "error": message }))).into_response()
}

/// The daily summary's gate: the client's rate limit (every call counts, so keys cannot be guessed
/// quickly), then the API key. The refusal, if any, comes with the decision.
fn admit(app: &App, headers: &HeaderMap, peer: SocketAddr) -> (Decision, Option<Response>) {
    let now = SystemTime::now();
    let decision = app
        .daily_summary_limit
        .check(&app.trusted_proxies.client(headers, peer).to_string(), now);
    if !decision.allowed {
        let retry_after = decision.retry_after(now);
        let reset = chrono::DateTime::<chrono::Utc>::from(decision.reset);
        let body = json!({
            "error": "Rate limit exceeded. Too many requests for the daily summary report.",
            "retryAfter": retry_after,
            "resetTime": broker_protocol::time::format(&reset),
        });
        let response = (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from(retry_after))],
            Json(body),
        );
        return (decision, Some(response.into_response()));
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
    (decision, refusal.map(unauthorized))
}

/// Answers an admitted call with what `answer` makes; the rate limit's headers go on every answer,
/// refusals included.
async fn gated<F: std::future::Future<Output = Response>>(
    app: &App,
    headers: &HeaderMap,
    peer: SocketAddr,
    answer: impl FnOnce() -> F,
) -> Response {
    let (decision, refusal) = admit(app, headers, peer);
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
async fn stored_report(app: &App) -> Result<Json<serde_json::Value>, ApiError> {
    let report = generate(app).await?;
    let path = daily_report::store(&app.config.storage.data_dir, &report)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "the daily summary could not be stored");
            ApiError::Code(ErrorCode::ReportGenerationFailed)
        })?;
    Ok(Json(json!({
        "filePath": path.display().to_string(),
        "fileHash": report.hash,
        "fileSizeBytes": report.bytes.len(),
        "serviceOwnerCount": report.service_owner_count,
        "totalFileTransferCount": report.total_file_transfers,
        "generatedAt": broker_protocol::time::format(&report.generated_at),
        "environment": report.environment,
        "altinn2Included": false,
    })))
}

/// Generates the daily summary and keeps it under the data dir's `reports/`. Internal, so not in the
/// OpenAPI document (as the original leaves it out).
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
