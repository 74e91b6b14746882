//! Contact points: where an organisation is told of its transfers by e-mail or SMS.

use crate::http::app::{json_body, App, Policy};
use crate::http::error::ApiError;
use crate::http::subscriptions::{deliveries_page, parse_id, DeliveriesParams};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use broker_protocol::notifications::{ContactPoint, ContactPointList, ContactPointRequest};
use broker_protocol::subscriptions::Delivery;

/// Adds a contact point for the caller's organisation: it is told of every event addressed to the
/// organisation (on `resourceFilter`, of `typeFilter`, when given) by e-mail or SMS.
#[utoipa::path(post, path = "/broker/api/v1/notifications/contactpoints", tag = "Notifications", operation_id = "create_contact_point", request_body = ContactPointRequest,
    responses((status = 201, body = ContactPoint), (status = 400, body = broker_protocol::ProblemDetails), (status = 401), (status = 403)),
    security(("bearer" = ["altinn:broker.read"])))]
pub async fn create(
    State(app): State<App>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = app.authorize(&headers, Policy::Recipient).await?;
    let request: ContactPointRequest = json_body(&app, &headers, body).await?;
    let created = app.broker.create_contact_point(&caller, request).await?;
    let location = format!("/broker/api/v1/notifications/contactpoints/{}", created.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    )
        .into_response())
}

/// The caller's contact points.
#[utoipa::path(get, path = "/broker/api/v1/notifications/contactpoints", tag = "Notifications", operation_id = "list_contact_points",
    responses((status = 200, body = ContactPointList), (status = 401), (status = 403)),
    security(("bearer" = ["altinn:broker.read"])))]
pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<Json<ContactPointList>, ApiError> {
    let caller = app.authorize(&headers, Policy::Recipient).await?;
    let contact_points = app.broker.contact_points(&caller).await?;
    Ok(Json(ContactPointList {
        count: contact_points.len(),
        contact_points,
    }))
}

/// Removes one of the caller's contact points; what it had not been sent yet is dropped.
#[utoipa::path(delete, path = "/broker/api/v1/notifications/contactpoints/{id}", tag = "Notifications", operation_id = "delete_contact_point", params(("id" = i64, Path)),
    responses((status = 200), (status = 401), (status = 403), (status = 404, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:broker.read"])))]
pub async fn delete(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let caller = app.authorize(&headers, Policy::Recipient).await?;
    app.broker
        .delete_contact_point(&caller, parse_id(&id)?)
        .await?;
    Ok(StatusCode::OK)
}

/// What was sent to the contact point: each event's state, attempts, last status and error.
#[utoipa::path(get, path = "/broker/api/v1/notifications/contactpoints/{id}/deliveries", tag = "Notifications", operation_id = "contact_point_deliveries",
    params(("id" = i64, Path), DeliveriesParams),
    responses((status = 200, body = Vec<Delivery>), (status = 400, body = broker_protocol::ProblemDetails), (status = 401), (status = 403), (status = 404, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:broker.read"])))]
pub async fn deliveries(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    let caller = app.authorize(&headers, Policy::Recipient).await?;
    let (after, limit) = deliveries_page(&pairs)?;
    let rows = app
        .broker
        .contact_point_deliveries(&caller, parse_id(&id)?, after, limit)
        .await?;
    Ok(Json(rows))
}
