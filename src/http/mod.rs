//! The HTTP surface: routes, the cross-cutting middleware of spec 0 (security headers, the Accept
//! check), and the OpenAPI description generated from the handlers.

pub mod admin;
pub mod app;
pub mod body;
pub mod client_address;
pub mod connections;
pub mod download;
pub mod error;
pub mod form;
pub mod metrics;
pub mod notifications;
pub mod openapi;
pub mod rate_limit;
pub mod statistics;
pub mod subscriptions;
pub mod transfers;
pub mod tus;
pub mod upload;

use app::App;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// The JSON endpoints' request bodies are small; uploads are streamed and unlimited.
const JSON_BODY_LIMIT: usize = 16 << 20;

/// ASP.NET's Accept check: when the request names media types, one must be a produced type or `*/*`.
fn accepts(request: &Request, produced: &str) -> bool {
    let values: Vec<&str> = request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return true;
    }
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .any(|t| t == produced || t == "*/*")
}

async fn accept_json(request: Request, next: Next) -> Response {
    check_accept(request, next, "application/json").await
}

async fn accept_octet_stream(request: Request, next: Next) -> Response {
    check_accept(request, next, "application/octet-stream").await
}

async fn accept_csv(request: Request, next: Next) -> Response {
    check_accept(request, next, "text/csv").await
}

async fn check_accept(request: Request, next: Next, produced: &'static str) -> Response {
    if accepts(&request, produced) {
        return next.run(request).await;
    }
    error::ApiError::NotAcceptable(produced).into_response()
}

/// Makes the request path available to error rendering (`instance` of a 500).
async fn remember_path(request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    error::REQUEST_PATH.scope(path, next.run(request)).await
}

/// CORS for browser clients (tus-js-client in a page): preflights are answered without a token, and the
/// tus, range and download headers are exposed to scripts.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let names = |list: &[&'static str]| {
        list.iter()
            .map(|h| HeaderName::from_static(h))
            .collect::<Vec<_>>()
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::HEAD,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers(names(&[
                "authorization",
                "content-type",
                "range",
                "if-range",
                "idempotency-key",
                "tus-resumable",
                "upload-length",
                "upload-offset",
                "upload-metadata",
                "upload-defer-length",
                "upload-concat",
                "upload-checksum",
                "x-http-method-override",
                "x-requested-with",
            ]))
            .expose_headers(names(&[
                "location",
                "upload-offset",
                "upload-length",
                "upload-expires",
                "upload-concat",
                "upload-defer-length",
                "tus-resumable",
                "tus-version",
                "tus-extension",
                "tus-max-size",
                "tus-checksum-algorithm",
                "content-disposition",
                "content-range",
                "accept-ranges",
                "etag",
            ]))
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

pub fn router(app: App) -> Router {
    let cors = cors(&app.config.server.cors_allowed_origins);
    let api = "/broker/api/v1";
    let json_routes = Router::new()
        .route(
            &format!("{api}/filetransfer"),
            post(transfers::initialize).get(transfers::search),
        )
        .route(
            &format!("{api}/filetransfer/{{id}}"),
            get(transfers::overview),
        )
        .route(
            &format!("{api}/filetransfer/{{id}}/details"),
            get(transfers::details),
        )
        .route(
            &format!("{api}/filetransfer/{{id}}/confirmdownload"),
            post(transfers::confirm_download),
        )
        .route(
            &format!("{api}/serviceowner"),
            post(admin::create_service_owner).get(admin::service_owner),
        )
        .route(
            &format!("{api}/resource/{{id}}"),
            get(admin::resource).put(admin::configure_resource),
        )
        .route(&format!("{api}/maintenance/events"), get(admin::events))
        .route(
            &format!("{api}/notifications/contactpoints"),
            post(notifications::create).get(notifications::list),
        )
        .route(
            &format!("{api}/notifications/contactpoints/{{id}}"),
            axum::routing::delete(notifications::delete),
        )
        .route(
            &format!("{api}/notifications/contactpoints/{{id}}/deliveries"),
            get(notifications::deliveries),
        )
        .route(
            &format!("{api}/statistics/generate-daily-summary"),
            post(statistics::generate_daily_summary),
        )
        .merge(subscription_routes(api))
        .merge(subscription_routes("/events/api/v1"))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .merge(
            Router::new()
                .route(
                    &format!("{api}/filetransfer/{{id}}/upload"),
                    post(upload::upload),
                )
                .route(
                    &format!("{api}/filetransfer/upload"),
                    post(upload::initialize_and_upload),
                )
                .layer(DefaultBodyLimit::disable()),
        )
        .route_layer(middleware::from_fn(accept_json));
    let download_routes = Router::new()
        .route(
            &format!("{api}/filetransfer/{{id}}/download"),
            get(download::download),
        )
        .route(
            &format!("{api}/statistics/generate-and-download-daily-summary"),
            post(statistics::download_daily_summary),
        )
        .route_layer(middleware::from_fn(accept_octet_stream));
    let csv_routes = Router::new()
        .route(
            &format!("{api}/statistics/monthly"),
            get(statistics::monthly),
        )
        .route_layer(middleware::from_fn(accept_csv));
    let tus_routes = Router::new()
        .route(
            &format!("{api}/filetransfer/upload/tus/{{id}}"),
            axum::routing::options(tus::options)
                .post(tus::create)
                .head(tus::head)
                .patch(tus::patch)
                .delete(tus::terminate),
        )
        .route(
            &format!("{api}/filetransfer/upload/tus/{{id}}/partial/{{part}}"),
            axum::routing::head(tus::head_part)
                .patch(tus::patch_part)
                .delete(tus::terminate_part),
        )
        // The legacy form of a part's URL (spec 4.1), served as `/partial/{part}`.
        .route(
            &format!("{api}/filetransfer/upload/tus/{{id}}/{{part}}"),
            axum::routing::head(tus::head_part)
                .patch(tus::patch_part)
                .delete(tus::terminate_part),
        );
    Router::new()
        .merge(json_routes)
        .merge(download_routes)
        .merge(csv_routes)
        .merge(tus_routes)
        .route("/health", get(admin::health))
        .route("/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics::metrics))
        .layer(middleware::from_fn(metrics::observe))
        .with_state(app)
        .layer(middleware::from_fn(remember_path))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(TraceLayer::new_for_http())
        .layer(tower::util::option_layer(cors))
}

/// The subscription API under `base`.
fn subscription_routes(base: &str) -> Router<App> {
    use axum::routing::delete;
    Router::new()
        .route(
            &format!("{base}/subscriptions"),
            post(subscriptions::create).get(subscriptions::list),
        )
        .route(
            &format!("{base}/subscriptions/{{id}}"),
            get(subscriptions::get).merge(delete(subscriptions::delete)),
        )
        .route(
            &format!("{base}/subscriptions/{{id}}/deliveries"),
            get(subscriptions::deliveries),
        )
        .route(
            &format!("{base}/subscriptions/{{id}}/redeliver"),
            post(subscriptions::redeliver),
        )
        .route(
            &format!("{base}/subscriptions/{{id}}/secret"),
            post(subscriptions::rotate_secret),
        )
}

/// This description.
#[utoipa::path(get, path = "/openapi.json", tag = "Health", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3 description of every endpoint", body = Object)))]
async fn openapi_json() -> Json<serde_json::Value> {
    Json(openapi::document())
}
