//! The HTTP transport's state shared by every handler, and the checks several endpoints share
//! (authentication, the embedded policy, request decoding).

use crate::auth::{Authenticator, Caller};
use crate::config::Config;
use crate::http::error::ApiError;
use axum::http::{header, HeaderMap};
use broker_actors::Broker;
use broker_protocol::json::{decode_case_insensitive, WireFields};
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub struct AppState {
    pub config: Config,
    /// The application: every command and query.
    pub broker: Broker,
    pub auth: Authenticator,
    /// Cancelled when the server starts shutting down: streaming uploads stop and stay retryable.
    pub shutdown: CancellationToken,
    /// The daily summary's per-client rate limit.
    pub daily_summary_limit: crate::http::rate_limit::RateLimiter,
    /// The proxies whose forwarding headers name the client (`[server] trusted_proxies`).
    pub trusted_proxies: crate::http::client_address::TrustedProxies,
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
    /// Altinn Events' subscription scope.
    Subscriber,
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
            Policy::Subscriber => &[EVENTS_SUBSCRIBE],
        }
    }
}

impl AppState {
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
