//! Initialize, overview, details, search and confirm.

use crate::http::app::{json_body, parse_transfer_id, App, Policy};
use crate::http::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use broker_actors::ports::metadata::SearchQuery;
use broker_actors::query::{Histories, HISTORY_PAGE};
use broker_protocol::status::Role;
use broker_protocol::transfer::{
    strip_resource_urn, FileTransferDetails, FileTransferInitialize,
    FileTransferInitializeResponse, FileTransferOverview,
};
use broker_protocol::{FileTransferStatus, RecipientStatus};
use uuid::Uuid;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Initializes a file transfer.
#[utoipa::path(post, path = "/broker/api/v1/filetransfer", tag = "File transfer",
    request_body = FileTransferInitialize,
    params(("Idempotency-Key" = Option<String>, Header, description = "Broker extension: the same key from the same sender within 24 h returns the same id")),
    responses((status = 200, body = FileTransferInitializeResponse), (status = 400, body = broker_protocol::ProblemDetails),
        (status = 401), (status = 403), (status = 422, description = "The Idempotency-Key was used for another request (`BRO-09003`)", body = broker_protocol::ProblemDetails),
        (status = 503, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:broker.write"])))]
pub async fn initialize(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<FileTransferInitializeResponse>, ApiError> {
    let caller = app.authorize(&headers, Policy::Sender).await?;
    let request: FileTransferInitialize = json_body(&app, &headers, body).await?;
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let id = app.broker.initialize(&caller, request, key).await?;
    Ok(Json(FileTransferInitializeResponse {
        file_transfer_id: id,
    }))
}

/// The transfer's current status and each recipient's.
#[utoipa::path(get, path = "/broker/api/v1/filetransfer/{fileTransferId}", tag = "File transfer",
    params(("fileTransferId" = Uuid, Path)),
    responses((status = 200, body = FileTransferOverview), (status = 401), (status = 404, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:broker.write", "altinn:broker.read"])))]
pub async fn overview(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<FileTransferOverview>, ApiError> {
    let caller = app.authorize(&headers, Policy::SenderOrRecipient).await?;
    let id = parse_transfer_id(&id)?;
    Ok(Json(app.broker.overview(&caller, id).await?))
}

/// The overview plus the full status and recipient histories.
#[utoipa::path(get, path = "/broker/api/v1/filetransfer/{fileTransferId}/details", tag = "File transfer",
    params(("fileTransferId" = Uuid, Path)),
    responses((status = 200, body = FileTransferDetails), (status = 401), (status = 404, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:broker.write", "altinn:broker.read"])))]
pub async fn details(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = app.authorize(&headers, Policy::SenderOrRecipient).await?;
    let id = parse_transfer_id(&id)?;
    let (summary, histories) = app.broker.details(&caller, id).await?;
    let head = serde_json::to_vec(&FileTransferDetails {
        summary,
        file_transfer_status_history: vec![],
        recipient_file_transfer_status_history: vec![],
    })
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let head = head
        .strip_suffix(EMPTY_HISTORIES)
        .ok_or_else(|| ApiError::Internal("the details' histories are not last".into()))?
        .to_vec();
    Ok((
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        Body::from_stream(details_stream(histories, head)),
    )
        .into_response())
}

/// How the details body ends when both histories are empty: the histories are streamed in their place.
const EMPTY_HISTORIES: &[u8] =
    br#""fileTransferStatusHistory":[],"recipientFileTransferStatusHistory":[]}"#;

enum DetailsPart {
    Head(Vec<u8>),
    Status { after: i64, first: bool },
    Recipients { after: i64, first: bool },
    Done,
}

/// The details body: the overview's fields, then each history read page by page.
fn details_stream(
    histories: Histories,
    head: Vec<u8>,
) -> impl futures::Stream<Item = Result<Bytes, broker_actors::Error>> + Send {
    futures::stream::try_unfold(DetailsPart::Head(head), move |part| {
        let histories = histories.clone();
        async move { details_part(&histories, part).await }
    })
}

/// One piece of the details body, and what comes after it.
async fn details_part(
    histories: &Histories,
    part: DetailsPart,
) -> Result<Option<(Bytes, DetailsPart)>, broker_actors::Error> {
    let mut out = Vec::new();
    let next = match part {
        DetailsPart::Head(mut head) => {
            head.extend_from_slice(br#""fileTransferStatusHistory":["#);
            out = head;
            DetailsPart::Status {
                after: 0,
                first: true,
            }
        }
        DetailsPart::Status { after, first } => {
            let rows = histories.status_page(after).await?;
            match write_page(&mut out, &rows, first)? {
                Some(after) => DetailsPart::Status {
                    after,
                    first: false,
                },
                None => {
                    out.extend_from_slice(br#"],"recipientFileTransferStatusHistory":["#);
                    DetailsPart::Recipients {
                        after: 0,
                        first: true,
                    }
                }
            }
        }
        DetailsPart::Recipients { after, first } => {
            let rows = histories.recipient_page(after).await?;
            match write_page(&mut out, &rows, first)? {
                Some(after) => DetailsPart::Recipients {
                    after,
                    first: false,
                },
                None => {
                    out.extend_from_slice(b"]}");
                    DetailsPart::Done
                }
            }
        }
        DetailsPart::Done => return Ok(None),
    };
    Ok(Some((Bytes::from(out), next)))
}

/// Appends a page of history rows as JSON array elements (with the separator a page after the first
/// needs); the row to read on after when the page was full.
fn write_page<T: serde::Serialize>(
    out: &mut Vec<u8>,
    rows: &[(i64, T)],
    first: bool,
) -> Result<Option<i64>, broker_actors::Error> {
    for (i, (_, entry)) in rows.iter().enumerate() {
        if i > 0 || !first {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, entry)
            .map_err(|e| broker_actors::Error::Internal(e.to_string()))?;
    }
    let full = rows.len() == HISTORY_PAGE as usize;
    Ok(rows.last().map(|(seq, _)| *seq).filter(|_| full))
}

#[derive(Debug, Default, utoipa::IntoParams)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct SearchParams {
    resource_id: Option<String>,
    status: Option<String>,
    recipient_status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    order_ascending: Option<String>,
    role: Option<String>,
}

impl SearchParams {
    /// Query parameter names bind case-insensitively, as in ASP.NET.
    fn from_pairs(pairs: Vec<(String, String)>) -> SearchParams {
        let mut p = SearchParams::default();
        for (key, value) in pairs {
            let slot = match key.to_ascii_lowercase().as_str() {
                "resourceid" => &mut p.resource_id,
                "status" => &mut p.status,
                "recipientstatus" => &mut p.recipient_status,
                "from" => &mut p.from,
                "to" => &mut p.to,
                "orderascending" => &mut p.order_ascending,
                "role" => &mut p.role,
                _ => continue,
            };
            *slot = Some(value);
        }
        p
    }
}

fn parse_param<T: std::str::FromStr<Err = String>>(
    field: &str,
    raw: &Option<String>,
) -> Result<Option<T>, ApiError> {
    raw.as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<T>().map_err(|e| ApiError::field(field, e)))
        .transpose()
}

/// A date-time as ASP.NET binds a `DateTimeOffset` query value: RFC 3339, a date-time without offset
/// (taken as UTC), or a bare date (midnight UTC).
fn parse_date_time(s: &str) -> Option<broker_protocol::time::Timestamp> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&chrono::Utc));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
}

fn parse_time(
    field: &str,
    raw: &Option<String>,
) -> Result<Option<broker_protocol::time::Timestamp>, ApiError> {
    raw.as_deref()
        .filter(|s| !s.is_empty())
        .map(|s| {
            parse_date_time(s)
                .ok_or_else(|| ApiError::field(field, format!("The value '{s}' is not valid.")))
        })
        .transpose()
}

/// The caller's transfers on a resource (at most 100 ids), newest first unless `orderAscending`.
#[utoipa::path(get, path = "/broker/api/v1/filetransfer", tag = "File transfer", params(SearchParams),
    responses((status = 200, body = Vec<Uuid>), (status = 401), (status = 403, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:broker.write", "altinn:broker.read"])))]
pub async fn search(
    State(app): State<App>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Vec<Uuid>>, ApiError> {
    let params = SearchParams::from_pairs(pairs);
    let caller = app.authorize(&headers, Policy::SenderOrRecipient).await?;
    let resource_id = params
        .resource_id
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|r| strip_resource_urn(r).to_string())
        .ok_or_else(|| ApiError::field("resourceId", "The resourceId field is required."))?;
    let query = SearchQuery {
        resource_id,
        caller_org: String::new(),
        status: parse_param::<FileTransferStatus>("status", &params.status)?,
        recipient_status: parse_param::<RecipientStatus>(
            "recipientStatus",
            &params.recipient_status,
        )?,
        from: parse_time("from", &params.from)?,
        to: parse_time("to", &params.to)?,
        ascending: match params.order_ascending.as_deref() {
            None | Some("") => false,
            Some(v) => v.to_ascii_lowercase().parse::<bool>().map_err(|_| {
                ApiError::field("orderAscending", format!("The value '{v}' is not valid."))
            })?,
        },
        role: parse_param::<Role>("role", &params.role)?,
    };
    Ok(Json(app.broker.search(&caller, query).await?))
}

/// A recipient confirms it has downloaded the file.
#[utoipa::path(post, path = "/broker/api/v1/filetransfer/{fileTransferId}/confirmdownload", tag = "File transfer",
    params(("fileTransferId" = Uuid, Path)),
    responses((status = 204), (status = 400, body = broker_protocol::ProblemDetails), (status = 401), (status = 404, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:broker.read"])))]
pub async fn confirm_download(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let caller = app.authorize(&headers, Policy::Recipient).await?;
    let id = parse_transfer_id(&id)?;
    app.broker.confirm_download(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
