//! Event subscriptions, served where Altinn Events serves them (`/events/api/v1/subscriptions`) and
//! under Broker's own base (`/broker/api/v1/subscriptions`).

use crate::http::app::{json_body, App, Policy};
use crate::http::error::ApiError;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use broker_actors::ports::SubscriptionApi;
use broker_protocol::subscriptions::{
    Delivery, Redelivered, Subscription, SubscriptionList, SubscriptionRequest,
};

/// `after` (default 0) and `limit` (default 100, 1 to 1000) of a deliveries listing.
pub fn deliveries_page(pairs: &[(String, String)]) -> Result<(i64, u32), ApiError> {
    let mut params = DeliveriesParams {
        after: None,
        limit: None,
    };
    for (key, value) in pairs {
        let invalid = || ApiError::field(key, format!("The value '{value}' is not valid."));
        match key.to_ascii_lowercase().as_str() {
            "after" => params.after = Some(value.parse().map_err(|_| invalid())?),
            "limit" => params.limit = Some(value.parse().map_err(|_| invalid())?),
            _ => {}
        }
    }
    Ok((
        params.after.unwrap_or(0),
        params.limit.unwrap_or(100).clamp(1, 1000),
    ))
}

pub fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::field("id", format!("The value '{raw}' is not valid.")))
}

/// Creates a subscription. Its endpoint first gets a `platform.events.validatesubscription` event and
/// must answer 2xx; events are held until then. The answer holds the signing secret, shown only here.
#[utoipa::path(post, path = "/broker/api/v1/subscriptions", tag = "Subscriptions", request_body = SubscriptionRequest,
    responses((status = 201, body = Subscription), (status = 400, body = broker_protocol::ProblemDetails), (status = 401),
        (status = 403, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:events.subscribe"])))]
pub async fn create(
    State(app): State<App>,
    path: MatchedPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = app.authorize(&headers, Policy::Subscriber).await?;
    let request: SubscriptionRequest = json_body(&app, &headers, body).await?;
    // The subscription is named under the API the client called: Altinn Events' or Broker's.
    let api = if path.as_str().starts_with(SubscriptionApi::Events.base()) {
        SubscriptionApi::Events
    } else {
        SubscriptionApi::Broker
    };
    let created = app
        .broker
        .create_subscription(&caller, request, api)
        .await?;
    let location = format!("{}/subscriptions/{}", api.base(), created.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    )
        .into_response())
}

/// The caller's subscriptions.
#[utoipa::path(get, path = "/broker/api/v1/subscriptions", tag = "Subscriptions",
    responses((status = 200, body = SubscriptionList), (status = 401), (status = 403)),
    security(("bearer" = ["altinn:events.subscribe"])))]
pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
) -> Result<Json<SubscriptionList>, ApiError> {
    let caller = app.authorize(&headers, Policy::Subscriber).await?;
    let subscriptions = app.broker.subscriptions(&caller).await?;
    Ok(Json(SubscriptionList {
        count: subscriptions.len(),
        subscriptions,
    }))
}

#[utoipa::path(get, path = "/broker/api/v1/subscriptions/{id}", tag = "Subscriptions", params(("id" = i64, Path)),
    responses((status = 200, body = Subscription), (status = 401), (status = 403), (status = 404, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:events.subscribe"])))]
pub async fn get(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Subscription>, ApiError> {
    let caller = app.authorize(&headers, Policy::Subscriber).await?;
    Ok(Json(
        app.broker.subscription(&caller, parse_id(&id)?).await?,
    ))
}

/// Removes a subscription; its pending deliveries are dropped.
#[utoipa::path(delete, path = "/broker/api/v1/subscriptions/{id}", tag = "Subscriptions", params(("id" = i64, Path)),
    responses((status = 200), (status = 401), (status = 403), (status = 404, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:events.subscribe"])))]
pub async fn delete(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let caller = app.authorize(&headers, Policy::Subscriber).await?;
    app.broker
        .delete_subscription(&caller, parse_id(&id)?)
        .await?;
    Ok(StatusCode::OK)
}

#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesParams {
    /// Deliveries of events with a sequence number above this (default 0).
    after: Option<i64>,
    /// At most this many (default 100, max 1000).
    limit: Option<u32>,
}

/// The subscription's delivery history: each event's attempts, last status and latency, next attempt.
#[utoipa::path(get, path = "/broker/api/v1/subscriptions/{id}/deliveries", tag = "Subscriptions",
    params(("id" = i64, Path), DeliveriesParams),
    responses((status = 200, body = Vec<Delivery>), (status = 400, body = broker_protocol::ProblemDetails), (status = 401), (status = 403), (status = 404, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:events.subscribe"])))]
pub async fn deliveries(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    let caller = app.authorize(&headers, Policy::Subscriber).await?;
    let (after, limit) = deliveries_page(&pairs)?;
    let rows = app
        .broker
        .subscription_deliveries(&caller, parse_id(&id)?, after, limit)
        .await?;
    Ok(Json(rows))
}

/// Queues the subscription's dead-lettered deliveries again, due now.
#[utoipa::path(post, path = "/broker/api/v1/subscriptions/{id}/redeliver", tag = "Subscriptions", params(("id" = i64, Path)),
    responses((status = 200, body = Redelivered), (status = 401), (status = 403), (status = 404, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:events.subscribe"])))]
pub async fn redeliver(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Redelivered>, ApiError> {
    let caller = app.authorize(&headers, Policy::Subscriber).await?;
    let requeued = app.broker.redeliver(&caller, parse_id(&id)?).await?;
    Ok(Json(Redelivered { requeued }))
}

/// Rotates the signing secret: the answer holds the new one; the old one keeps signing beside it
/// (both signatures are sent) for `events.secret_overlap_secs`.
#[utoipa::path(post, path = "/broker/api/v1/subscriptions/{id}/secret", tag = "Subscriptions", params(("id" = i64, Path)),
    responses((status = 200, body = Subscription), (status = 401), (status = 403), (status = 404, body = broker_protocol::ProblemDetails)),
    security(("bearer" = ["altinn:events.subscribe"])))]
pub async fn rotate_secret(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Subscription>, ApiError> {
    let caller = app.authorize(&headers, Policy::Subscriber).await?;
    Ok(Json(
        app.broker
            .rotate_subscription_secret(&caller, parse_id(&id)?)
            .await?,
    ))
}
