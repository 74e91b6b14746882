//! Initialize, overview, details, search and confirm.

use crate::app::{json_body, parse_transfer_id, require_party, require_recipient, App, Policy};
use crate::auth::Caller;
use crate::db::{Created, NewTransfer, SearchQuery, TransferView};
use crate::http::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use broker_actors::ports::StoreError;
use broker_protocol::events::{CloudEvent, EventRole, EventType};
use broker_protocol::status::Role;
use broker_protocol::transfer::{
    normalize_org, strip_resource_urn, FileTransferDetails, FileTransferInitialize,
    FileTransferInitializeResponse, FileTransferOverview, FileTransferSummary,
    RecipientFileTransferStatus,
};
use broker_protocol::{ErrorCode, FileTransferStatus, RecipientStatus};
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
    let id = initialize_transfer(&app, &caller, request, key).await?;
    Ok(Json(FileTransferInitializeResponse {
        file_transfer_id: id,
    }))
}

/// The checks and effects of initialize (spec 1.2).
pub async fn initialize_transfer(
    app: &App,
    caller: &Caller,
    request: FileTransferInitialize,
    idempotency_key: Option<String>,
) -> Result<Uuid, ApiError> {
    let prepared = prepare_transfer(app, caller, request, idempotency_key).await?;
    create_transfer(app, prepared.new).await
}

/// A transfer that passed every check of initialize, not written yet.
pub struct PreparedTransfer {
    pub new: NewTransfer,
    /// The largest file it may hold.
    pub size_limit: u64,
}

/// Every check of initialize (spec 1.2, in its order), without writing anything: the form-data upload
/// runs them before it stores a byte, and again once it has read the whole form.
pub async fn prepare_transfer(
    app: &App,
    caller: &Caller,
    request: FileTransferInitialize,
    idempotency_key: Option<String>,
) -> Result<PreparedTransfer, ApiError> {
    let mut errors = request.validate();
    let max_recipients = app.config.limits.max_recipients;
    if request
        .recipients
        .as_ref()
        .is_some_and(|r| r.len() > max_recipients)
    {
        errors.entry("Recipients".into()).or_default().push(format!(
            "The Recipients field can contain at most {max_recipients} recipients."
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let fingerprint = crate::util::sha256_hex(&serde_json::to_vec(&request).unwrap_or_default());
    let resource_id =
        strip_resource_urn(request.resource_id.as_deref().unwrap_or_default()).to_string();
    let sender = request.sender.clone().unwrap_or_default();
    let sender_org = normalize_org(&sender);
    // The same organisation named twice (perhaps in two forms) is one recipient.
    let mut seen = std::collections::HashSet::new();
    let recipients: Vec<String> = request
        .recipients
        .iter()
        .flatten()
        .map(|r| normalize_org(r))
        .filter(|r| seen.insert(r.clone()))
        .collect();
    let resource = app.store.resource(&resource_id).await?;
    let entry = app.registry.lookup(
        &resource_id,
        resource.as_ref().map(|r| r.service_owner_id.as_str()),
        None,
    );
    // 1. Policy: the caller acts for the sender, and the registry lets that sender use the resource.
    let permitted = caller.org.as_deref() == Some(sender_org.as_str())
        && entry.as_ref().is_none_or(|e| e.allows_sender(&sender_org));
    if !permitted {
        return Err(ErrorCode::NoAccess.into());
    }
    // 2-3. The resource is configured for Broker and its service owner exists.
    let resource = resource.ok_or(ErrorCode::ResourceNotConfigured)?;
    if app
        .store
        .service_owner(&resource.service_owner_id)
        .await?
        .is_none()
    {
        return Err(ErrorCode::ServiceOwnerNotConfigured.into());
    }
    // 4. Turning the scan off needs an approval in production.
    let disable_scan = request.disable_virus_scan.unwrap_or(false);
    if disable_scan
        && app.is_production()
        && !entry
            .as_ref()
            .is_some_and(|e| e.approved_for_disabled_virus_scan)
    {
        return Err(ErrorCode::VirusScanCannotBeDisabled.into());
    }
    // 6-7. Registered in the registry; recipients on its access list.
    let entry = entry.ok_or(ErrorCode::ResourceNotRegistered)?;
    if !recipients.iter().all(|r| entry.allows_recipient(r)) {
        return Err(ErrorCode::RecipientsNotInAccessList.into());
    }
    // 8. A required party must take part: as sender, or as the only recipient.
    if let Some(required) = resource.required_party.as_deref().map(normalize_org) {
        if required != sender_org {
            if recipients.len() > 1 {
                return Err(ErrorCode::RequiredPartyOneRecipient.into());
            }
            if recipients.first() != Some(&required) {
                return Err(ErrorCode::RequiredPartyMissing.into());
            }
        }
    }
    // No scanner is configured yet, so every transfer takes the no-virus-scan path.
    let use_virus_scan = false;
    let now = app.clock.now();
    let size_limit = crate::app::max_file_size(use_virus_scan, &resource);
    let new = NewTransfer {
        id: Uuid::new_v4(),
        resource_id,
        file_name: request.file_name.clone().unwrap_or_default(),
        senders_reference: request.senders_file_transfer_reference.clone(),
        sender,
        sender_org,
        recipients,
        property_list: request.property_list.clone().unwrap_or_default(),
        declared_checksum: request.declared_checksum().map(str::to_string),
        use_virus_scan,
        created: now,
        expiration_time: now + resource.time_to_live(),
        idempotency: idempotency_key.map(|k| (k, fingerprint)),
    };
    Ok(PreparedTransfer { new, size_limit })
}

/// Writes a prepared transfer (Initialized, event `filetransferinitialized`); with an idempotency key
/// used before for the same request, the earlier transfer's id.
pub async fn create_transfer(app: &App, new: NewTransfer) -> Result<Uuid, ApiError> {
    let event = CloudEvent::new(
        EventType::FileTransferInitialized,
        new.id,
        &new.resource_id,
        &new.sender,
        EventRole::Sender,
        &crate::event_source(&app.config),
        new.created,
    );
    match app.store.create_transfer(new, vec![event]).await? {
        Created::New(id) | Created::Existing(id) => Ok(id),
        Created::KeyReused => Err(ErrorCode::IdempotencyKeyReused.into()),
    }
}

fn summary(view: TransferView) -> FileTransferSummary {
    let status_text = view
        .status_text
        .clone()
        .unwrap_or_else(|| view.status.default_text().to_string());
    FileTransferSummary {
        file_transfer_id: view.id,
        resource_id: view.resource_id,
        file_name: view.file_name,
        senders_file_transfer_reference: view.senders_reference,
        checksum: view.checksum,
        sha256: view.sha256,
        use_virus_scan: view.use_virus_scan,
        file_transfer_size: view.size,
        file_transfer_status: view.status,
        file_transfer_status_text: status_text,
        file_transfer_status_changed: view.status_changed,
        created: view.created,
        expiration_time: view.expiration_time,
        sender: view.sender,
        recipients: view
            .recipients
            .into_iter()
            .map(|r| RecipientFileTransferStatus {
                recipient: r.recipient,
                current_recipient_file_transfer_status_code: r.status,
                current_recipient_file_transfer_status_text: r.status.text().to_string(),
                current_recipient_file_transfer_status_changed: r.changed,
            })
            .collect(),
        property_list: view.property_list,
    }
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
    let view = app.transfer(parse_transfer_id(&id)?).await?;
    require_party(&caller, &view)?;
    let published = view.published;
    Ok(Json(FileTransferOverview {
        summary: summary(view),
        published,
    }))
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
    let view = app.transfer(parse_transfer_id(&id)?).await?;
    require_party(&caller, &view)?;
    let id = view.id;
    let head = serde_json::to_vec(&FileTransferDetails {
        summary: summary(view),
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
        Body::from_stream(details_stream(app, id, head)),
    )
        .into_response())
}

/// How the details body ends when both histories are empty: the histories are streamed in their place.
const EMPTY_HISTORIES: &[u8] =
    br#""fileTransferStatusHistory":[],"recipientFileTransferStatusHistory":[]}"#;
/// History rows read (and held) at a time: the body's memory does not grow with the history.
const HISTORY_PAGE: u32 = 512;

enum DetailsPart {
    Head(Vec<u8>),
    Status { after: i64, first: bool },
    Recipients { after: i64, first: bool },
    Done,
}

/// The details body: the overview's fields, then each history read page by page.
fn details_stream(
    app: App,
    id: Uuid,
    head: Vec<u8>,
) -> impl futures::Stream<Item = Result<Bytes, StoreError>> + Send {
    futures::stream::try_unfold(DetailsPart::Head(head), move |part| {
        let app = app.clone();
        async move {
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
                    let rows = app.store.status_history(id, after, HISTORY_PAGE).await?;
                    let last = rows.last().map(|(seq, _)| *seq);
                    write_entries(&mut out, rows.iter().map(|(_, e)| e), first)?;
                    match last {
                        Some(after) if rows.len() == HISTORY_PAGE as usize => DetailsPart::Status {
                            after,
                            first: false,
                        },
                        _ => {
                            out.extend_from_slice(br#"],"recipientFileTransferStatusHistory":["#);
                            DetailsPart::Recipients {
                                after: 0,
                                first: true,
                            }
                        }
                    }
                }
                DetailsPart::Recipients { after, first } => {
                    let rows = app.store.recipient_history(id, after, HISTORY_PAGE).await?;
                    let last = rows.last().map(|(seq, _)| *seq);
                    write_entries(&mut out, rows.iter().map(|(_, e)| e), first)?;
                    match last {
                        Some(after) if rows.len() == HISTORY_PAGE as usize => {
                            DetailsPart::Recipients {
                                after,
                                first: false,
                            }
                        }
                        _ => {
                            out.extend_from_slice(b"]}");
                            DetailsPart::Done
                        }
                    }
                }
                DetailsPart::Done => return Ok(None),
            };
            Ok(Some((Bytes::from(out), next)))
        }
    })
}

/// Appends JSON array elements (with the separators a page after the first needs).
fn write_entries<'a, T: serde::Serialize + 'a>(
    out: &mut Vec<u8>,
    entries: impl Iterator<Item = &'a T>,
    first: bool,
) -> Result<(), StoreError> {
    for (i, entry) in entries.enumerate() {
        if i > 0 || !first {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, entry).map_err(|e| StoreError::Failure(e.to_string()))?;
    }
    Ok(())
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
    let caller_org = caller.org.clone().ok_or(ErrorCode::NoAccess)?;
    let resource_id = params
        .resource_id
        .as_deref()
        .filter(|r| !r.is_empty())
        .map(|r| strip_resource_urn(r).to_string())
        .ok_or_else(|| ApiError::field("resourceId", "The resourceId field is required."))?;
    let query = SearchQuery {
        resource_id,
        caller_org,
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
    if app.store.resource(&query.resource_id).await?.is_none() {
        return Err(ErrorCode::ResourceNotRegistered.into());
    }
    Ok(Json(app.store.search(&query).await?))
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
    let view = app.transfer(parse_transfer_id(&id)?).await?;
    let recipient = require_recipient(&caller, &view)?;
    app.lifecycle.confirm_download(view.id, recipient).await?;
    Ok(StatusCode::NO_CONTENT)
}
