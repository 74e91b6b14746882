//! Service owners, resources, the event outbox and health.

use crate::http::app::{json_body, App, Policy};
use crate::http::error::ApiError;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use broker_protocol::events::OutboxEntry;
use broker_protocol::resource::{
    ResourceConfiguration, ResourceUpdate, ServiceOwnerInitialize, ServiceOwnerOverview,
};

/// Registers the calling organisation as a Broker service owner.
#[utoipa::path(post, path = "/broker/api/v1/serviceowner", tag = "Service owner", request_body = ServiceOwnerInitialize,
    responses((status = 200), (status = 400, body = broker_protocol::ProblemDetails), (status = 409, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:serviceowner"])))]
pub async fn create_service_owner(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let caller = app.authorize(&headers, Policy::ServiceOwner).await?;
    let request: ServiceOwnerInitialize = json_body(&app, &headers, body).await?;
    app.broker
        .create_service_owner(&caller, request.name)
        .await?;
    Ok(StatusCode::OK)
}

/// The calling service owner and its storage providers.
#[utoipa::path(get, path = "/broker/api/v1/serviceowner", tag = "Service owner",
    responses((status = 200, body = ServiceOwnerOverview), (status = 400, body = broker_protocol::ProblemDetails), (status = 404, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:serviceowner"])))]
pub async fn service_owner(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<Json<ServiceOwnerOverview>, ApiError> {
    let caller = app.authorize(&headers, Policy::ServiceOwner).await?;
    Ok(Json(app.broker.service_owner(&caller).await?))
}

#[utoipa::path(put, path = "/broker/api/v1/resource/{resourceId}", tag = "Resource", request_body = ResourceUpdate,
    params(("resourceId" = String, Path)),
    responses((status = 204), (status = 400, body = broker_protocol::ProblemDetails), (status = 401, body = broker_protocol::ProblemDetails), (status = 403, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:serviceowner"])))]
pub async fn configure_resource(
    State(app): State<App>,
    Path(resource_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let caller = app.authorize(&headers, Policy::ServiceOwner).await?;
    let update: ResourceUpdate = json_body(&app, &headers, body).await?;
    app.broker
        .configure_resource(&caller, &resource_id, update)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The resource's Broker configuration (durations in .NET TimeSpan format).
#[utoipa::path(get, path = "/broker/api/v1/resource/{resourceId}", tag = "Resource", params(("resourceId" = String, Path)),
    responses((status = 200, body = ResourceConfiguration), (status = 400, body = broker_protocol::ProblemDetails), (status = 401, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:serviceowner"])))]
pub async fn resource(
    State(app): State<App>,
    Path(resource_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ResourceConfiguration>, ApiError> {
    let caller = app.authorize(&headers, Policy::ServiceOwner).await?;
    Ok(Json(app.broker.resource(&caller, &resource_id).await?))
}

#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Return entries with a sequence number above this (default 0).
    after: Option<i64>,
    /// At most this many entries (default 100, max 1000).
    limit: Option<u32>,
}

/// The durable event outbox, in sequence order (read-only).
#[utoipa::path(get, path = "/broker/api/v1/maintenance/events", tag = "Maintenance", params(EventsParams),
    responses((status = 200, body = Vec<OutboxEntry>), (status = 401), (status = 403)),
    security(("bearer" = ["altinn:broker.maintenance"])))]
pub async fn events(
    State(app): State<App>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Vec<OutboxEntry>>, ApiError> {
    app.authorize(&headers, Policy::Maintenance).await?;
    let mut params = EventsParams {
        after: None,
        limit: None,
    };
    for (key, value) in &pairs {
        let invalid = || ApiError::field(key, format!("The value '{value}' is not valid."));
        match key.to_ascii_lowercase().as_str() {
            "after" => params.after = Some(value.parse::<i64>().map_err(|_| invalid())?),
            "limit" => params.limit = Some(value.parse::<u32>().map_err(|_| invalid())?),
            _ => {}
        }
    }
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let after = params.after.unwrap_or(0);
    Ok(Json(app.broker.events_after(after, limit).await?))
}

/// 200 when the database and the storage answer.
#[utoipa::path(get, path = "/health", tag = "Health", responses((status = 200, body = String), (status = 400, body = String)))]
pub async fn health(State(app): State<App>) -> (StatusCode, &'static str) {
    match app.broker.health().await {
        Ok(()) => (StatusCode::OK, "Environment properly configured"),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::BAD_REQUEST,
                "Environment not properly configured",
            )
        }
    }
}
