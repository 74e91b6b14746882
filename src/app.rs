//! The application state shared by every handler, and the checks several endpoints share
//! (authentication, the embedded policy, request decoding).

use crate::auth::{Authenticator, Caller};
use crate::config::{Config, Environment};
use crate::db::{ResourceRow, Store, TransferView};
use crate::http::error::ApiError;
use crate::registry::Registry;
use axum::http::{header, HeaderMap};
use broker_actors::{BlobStore, Clock, Lifecycle};
use broker_protocol::json::{decode_case_insensitive, WireFields};
use broker_protocol::ErrorCode;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Largest transfer with virus scanning (50 GB), and the global cap (32 MiB x 50,000 blocks).
pub const MAX_VIRUS_SCAN_SIZE: i64 = 50_000_000_000;
pub const MAX_FILE_SIZE: i64 = 32 * 50_000 * 1024 * 1024;
/// Range downloads record at most one DownloadStarted per caller and transfer in this window.
const RANGE_DEBOUNCE: Duration = Duration::from_secs(300);

pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub lifecycle: Lifecycle,
    pub auth: Authenticator,
    pub registry: Registry,
    pub clock: Arc<dyn Clock>,
    /// Cancelled when the server starts shutting down: streaming uploads stop and stay retryable.
    pub shutdown: CancellationToken,
    /// Bounds how many uploads stream at once (each holds threads and a few MiB).
    pub upload_permits: tokio::sync::Semaphore,
    /// MD5/SHA-256 state of resumable uploads between their PATCHes (rebuilt from disk when missing).
    pub tus_hashes: Arc<crate::http::tus::hashes::HashCache>,
    /// tus PATCHes in flight, so a newer request can ask a half-dead one to stop.
    pub tus_running: crate::http::tus::RunningPatches,
    /// Parts of concatenated tus uploads with a PATCH in flight.
    pub tus_part_locks: crate::http::tus::concat::PartLocks,
    /// Transfers whose background finalization runs now (`finalize`).
    pub finalizing: Mutex<std::collections::HashSet<Uuid>>,
    /// Last recorded range download per (transfer, recipient), for the debounce.
    pub(crate) range_downloads: Mutex<HashMap<(Uuid, String), Instant>>,
}

pub type App = Arc<AppState>;

/// The scopes an endpoint accepts (any one of them).
#[derive(Debug, Clone, Copy)]
pub enum Policy {
    Sender,
    Recipient,
    SenderOrRecipient,
    ServiceOwner,
    Maintenance,
}

impl Policy {
    fn scopes(self) -> &'static [&'static str] {
        use broker_protocol::scopes::*;
        match self {
            Policy::Sender => &[WRITE],
            Policy::Recipient => &[READ],
            Policy::SenderOrRecipient => &[WRITE, READ],
            Policy::ServiceOwner => &[SERVICE_OWNER],
            Policy::Maintenance => &[MAINTENANCE],
        }
    }
}

impl AppState {
    pub fn is_production(&self) -> bool {
        self.config.registry.environment == Environment::Production
    }

    /// Authenticates the bearer token and checks the endpoint's scope: 401 without a valid token,
    /// 403 (empty body) without the scope.
    pub async fn authorize(&self, headers: &HeaderMap, policy: Policy) -> Result<Caller, ApiError> {
        let token = bearer_token(headers).ok_or(ApiError::Unauthenticated)?;
        let caller = self.auth.authenticate(token).await.map_err(|e| {
            tracing::debug!(error = %e, "token refused");
            ApiError::Unauthenticated
        })?;
        if !policy.scopes().iter().any(|s| caller.has_scope(s)) {
            return Err(ApiError::MissingScope);
        }
        Ok(caller)
    }

    /// The bearer token of a request, if any.
    pub fn bearer<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        bearer_token(headers)
    }

    /// The transfer, or 404 `BRO-00001`.
    pub async fn transfer(&self, id: Uuid) -> Result<TransferView, ApiError> {
        self.store
            .transfer(id)
            .await?
            .ok_or(ApiError::Code(ErrorCode::FileTransferNotFound))
    }

    /// The resource and its service owner must still exist: 403 `5` and 400 `2` otherwise.
    pub async fn resource_of(&self, view: &TransferView) -> Result<ResourceRow, ApiError> {
        let resource = self
            .store
            .resource(&view.resource_id)
            .await?
            .ok_or(ApiError::Code(ErrorCode::ResourceNotRegistered))?;
        if self
            .store
            .service_owner(&resource.service_owner_id)
            .await?
            .is_none()
        {
            return Err(ApiError::Code(ErrorCode::ServiceOwnerNotConfigured));
        }
        Ok(resource)
    }

    /// Whether this download should append a DownloadStarted row: every full download does; range
    /// downloads once per caller and transfer every five minutes.
    pub fn should_record_download(&self, id: Uuid, caller: &str, is_range: bool) -> bool {
        if !is_range {
            return true;
        }
        let mut seen = self.range_downloads.lock().expect("debounce map");
        let now = Instant::now();
        if seen.len() > 100_000 {
            seen.retain(|_, t| now.duration_since(*t) < RANGE_DEBOUNCE);
        }
        match seen.get(&(id, caller.to_string())) {
            Some(t) if now.duration_since(*t) < RANGE_DEBOUNCE => false,
            _ => {
                seen.insert((id, caller.to_string()), now);
                true
            }
        }
    }
}

/// The largest file a transfer may hold: the global cap, the virus-scan cap when scanned, and the
/// resource's own maximum.
pub fn size_limit(view: &TransferView, resource: &ResourceRow) -> u64 {
    max_file_size(view.use_virus_scan, resource)
}

/// [`size_limit`] for a transfer not yet created.
pub fn max_file_size(use_virus_scan: bool, resource: &ResourceRow) -> u64 {
    let mut limit = MAX_FILE_SIZE;
    if use_virus_scan {
        limit = limit.min(MAX_VIRUS_SCAN_SIZE);
    }
    if let Some(max) = resource.max_file_transfer_size {
        limit = limit.min(max);
    }
    limit.max(0) as u64
}

/// Policy: the caller acts as the transfer's sender.
pub fn require_sender(caller: &Caller, view: &TransferView) -> Result<(), ApiError> {
    match &caller.org {
        Some(org) if *org == view.sender_org => Ok(()),
        _ => Err(ApiError::Code(ErrorCode::NoAccess)),
    }
}

/// Policy: the caller is one of the transfer's recipients; returns the caller's org.
pub fn require_recipient(caller: &Caller, view: &TransferView) -> Result<String, ApiError> {
    match &caller.org {
        Some(org) if view.is_recipient(org) => Ok(org.clone()),
        _ => Err(ApiError::Code(ErrorCode::NoAccess)),
    }
}

/// Policy: the caller is the sender or a recipient.
pub fn require_party(caller: &Caller, view: &TransferView) -> Result<(), ApiError> {
    match &caller.org {
        Some(org) if *org == view.sender_org || view.is_recipient(org) => Ok(()),
        _ => Err(ApiError::Code(ErrorCode::NoAccess)),
    }
}

pub fn parse_transfer_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::field("fileTransferId", format!("The value '{raw}' is not valid.")))
}

/// `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 7235).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reads a JSON request body: a JSON content type (415 otherwise), at most `limits.max_json_body_bytes`
/// (413), bound with ASP.NET's input rules (400 ValidationProblemDetails naming the property).
pub async fn json_body<T: DeserializeOwned + WireFields>(
    app: &AppState,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<T, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !(essence == "application/json" || essence == "text/json" || essence.ends_with("+json")) {
        return Err(ApiError::UnsupportedMediaType("application/json"));
    }
    let bytes =
        crate::http::body::read_limited(headers, body, app.config.limits.max_json_body_bytes)
            .await?;
    decode_case_insensitive(&bytes).map_err(|e| ApiError::field(&e.path, e.message))
}
