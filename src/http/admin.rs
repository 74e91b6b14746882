//! Service owners, resources, the event outbox and health.

use crate::app::{json_body, App, Policy, MAX_FILE_SIZE, MAX_VIRUS_SCAN_SIZE};
use crate::db::ResourceRow;
use crate::duration::{format_timespan, parse_iso8601};
use crate::http::error::ApiError;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use broker_protocol::events::OutboxEntry;
use broker_protocol::resource::{
    ResourceConfiguration, ResourceUpdate, ServiceOwnerInitialize, ServiceOwnerOverview,
    StorageProvider,
};
use broker_protocol::transfer::{parse_org, strip_resource_urn};
use broker_protocol::ErrorCode;
use chrono::Duration;

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
    let org = caller.org.ok_or(ErrorCode::CallerOrganizationUnknown)?;
    let request: ServiceOwnerInitialize = json_body(&app, &headers, body).await?;
    let name = request
        .name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| ApiError::field("Name", "The Name field is required."))?;
    if !app
        .store
        .create_service_owner(&org, &name, app.clock.now())
        .await?
    {
        return Err(ErrorCode::ServiceOwnerAlreadyExists.into());
    }
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
    let org = caller.org.ok_or(ErrorCode::CallerOrganizationUnknown)?;
    let owner = app
        .store
        .service_owner(&org)
        .await?
        .ok_or(ErrorCode::ServiceOwnerNotFound)?;
    let environment = if app.is_production() {
        "Production"
    } else {
        "Development"
    };
    // Storage is provisioned with the broker itself, so both providers are ready at once.
    let providers = ["AltinnAzure", "AltinnAzureWithoutVirusScan"]
        .iter()
        .map(|t| StorageProvider {
            type_: t.to_string(),
            deployment_status: "Ready".into(),
            deployment_environment: environment.into(),
        })
        .collect();
    Ok(Json(ServiceOwnerOverview {
        name: owner.name,
        storage_providers: providers,
    }))
}

/// Validates an update and applies it to the stored configuration (spec 1.10).
fn apply_update(
    app: &App,
    row: &mut ResourceRow,
    update: &ResourceUpdate,
    approved_no_scan: bool,
) -> Result<(), ApiError> {
    if let Some(max) = update.max_file_transfer_size {
        if max < 0 {
            return Err(ErrorCode::MaxSizeNegative.into());
        }
        if max == 0 {
            return Err(ErrorCode::MaxSizeZero.into());
        }
        if app.is_production() && max > MAX_VIRUS_SCAN_SIZE && !approved_no_scan {
            return Err(ErrorCode::MaxSizeAboveVirusScanLimit.into());
        }
        if max > MAX_FILE_SIZE {
            return Err(ErrorCode::MaxSizeAboveGlobalLimit.into());
        }
        row.max_file_transfer_size = Some(max);
    }
    if let Some(ttl) = &update.file_transfer_time_to_live {
        let d = parse_iso8601(ttl).ok_or(ErrorCode::InvalidTimeToLive)?;
        if d > Duration::days(365) {
            return Err(ErrorCode::TimeToLiveTooLong.into());
        }
        row.file_transfer_time_to_live = Some(d);
    }
    if let Some(grace) = &update.purge_file_transfer_grace_period {
        let d = parse_iso8601(grace).ok_or(ErrorCode::InvalidGracePeriod)?;
        if d > Duration::hours(24) {
            return Err(ErrorCode::GracePeriodTooLong.into());
        }
        row.purge_grace_period = Some(d);
    }
    if let Some(p) = update.purge_file_transfer_after_all_recipients_confirmed {
        row.purge_after_all_confirmed = Some(p);
    }
    if let Some(code) = &update.external_service_code_legacy {
        row.external_service_code_legacy = Some(code.clone());
    }
    if let Some(edition) = update.external_service_edition_code_legacy {
        row.external_service_edition_code_legacy = Some(edition);
    }
    if let Some(party) = &update.required_party {
        row.required_party = if party.trim().is_empty() {
            None
        } else {
            Some(parse_org(party).ok_or_else(|| {
                ApiError::field(
                    "RequiredParty",
                    format!("'{party}' is not an organization number."),
                )
            })?)
        };
    }
    if let Some(shim) = update.use_manifest_file_shim {
        if shim {
            let has_code = row
                .external_service_code_legacy
                .as_deref()
                .is_some_and(|c| !c.is_empty());
            let has_edition = row
                .external_service_edition_code_legacy
                .is_some_and(|e| e != 0);
            if !(has_code && has_edition) {
                return Err(ErrorCode::ManifestShimNeedsServiceCode.into());
            }
        }
        row.use_manifest_file_shim = Some(shim);
    }
    Ok(())
}

/// Model validation of the body: a manifest shim switched on in this body needs valid legacy codes here.
fn validate_update(update: &ResourceUpdate) -> Result<(), ApiError> {
    if update.use_manifest_file_shim == Some(true) {
        let mut errors = std::collections::BTreeMap::new();
        if update
            .external_service_code_legacy
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            errors.insert(
                "ExternalServiceCodeLegacy".to_string(),
                vec![
                    "ExternalServiceCodeLegacy must be set when UseManifestFileShim is true"
                        .to_string(),
                ],
            );
        }
        if update.external_service_edition_code_legacy == Some(0) {
            errors.insert(
                "ExternalServiceEditionCodeLegacy".to_string(),
                vec![
                    "ExternalServiceEditionCodeLegacy must be set when UseManifestFileShim is true"
                        .to_string(),
                ],
            );
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
    }
    Ok(())
}

/// Registers a resource for Broker (on first call) and updates the fields sent.
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
    let org = caller.org.clone().ok_or(ErrorCode::NoAccess)?;
    let update: ResourceUpdate = json_body(&app, &headers, body).await?;
    validate_update(&update)?;
    let resource_id = strip_resource_urn(&resource_id).to_string();
    let existing = app.store.resource(&resource_id).await?;
    let entry = app.registry.lookup(
        &resource_id,
        existing.as_ref().map(|r| r.service_owner_id.as_str()),
        Some(&org),
    );
    let mut row = match existing {
        Some(row) => {
            if row.service_owner_id != org {
                return Err(ErrorCode::NoAccess.into());
            }
            row
        }
        None => {
            let entry = entry.as_ref().ok_or(ErrorCode::ResourceNotRegistered)?;
            if entry.owner != org {
                return Err(ErrorCode::NoAccess.into());
            }
            if app.store.service_owner(&entry.owner).await?.is_none() {
                return Err(ErrorCode::ResourceOwnerNotConfigured.into());
            }
            ResourceRow {
                id: resource_id.clone(),
                service_owner_id: entry.owner.clone(),
                ..Default::default()
            }
        }
    };
    let approved = entry
        .as_ref()
        .is_some_and(|e| e.approved_for_disabled_virus_scan);
    apply_update(&app, &mut row, &update, approved)?;
    if !app.store.save_resource(row, app.clock.now()).await? {
        // Another owner configured it between our read and our write.
        return Err(ErrorCode::NoAccess.into());
    }
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
    let row = app
        .store
        .resource(strip_resource_urn(&resource_id))
        .await?
        .ok_or(ErrorCode::ResourceNotConfigured)?;
    if caller.org.as_deref() != Some(row.service_owner_id.as_str()) {
        return Err(ErrorCode::NoAccess.into());
    }
    Ok(Json(ResourceConfiguration {
        max_file_transfer_size: row.max_file_transfer_size,
        file_transfer_time_to_live: format_timespan(row.time_to_live()),
        purge_file_transfer_after_all_recipients_confirmed: row.purge_after_confirmed(),
        purge_file_transfer_grace_period: format_timespan(row.grace_period()),
        use_manifest_file_shim: row.use_manifest_file_shim.unwrap_or(false),
        external_service_code_legacy: row.external_service_code_legacy,
        external_service_edition_code_legacy: row.external_service_edition_code_legacy,
        required_party: row.required_party,
    }))
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
    Ok(Json(
        app.store
            .events_after(params.after.unwrap_or(0), limit)
            .await?,
    ))
}

/// 200 when the database and the storage answer.
#[utoipa::path(get, path = "/health", tag = "Health", responses((status = 200, body = String), (status = 400, body = String)))]
pub async fn health(State(app): State<App>) -> (StatusCode, &'static str) {
    let db = app.store.health().await;
    let storage = app.blobs.check().await;
    match (db, storage) {
        (Ok(()), Ok(())) => (StatusCode::OK, "Environment properly configured"),
        (db, storage) => {
            tracing::warn!(db = ?db.err(), storage = ?storage.err(), "health check failed");
            (
                StatusCode::BAD_REQUEST,
                "Environment not properly configured",
            )
        }
    }
}
