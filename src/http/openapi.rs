//! The OpenAPI description served at `/openapi.json`: generated from the handlers' annotations, then
//! completed here with what every endpoint shares: the error responses of the one error table (their
//! `application/problem+json` bodies, the empty-bodied 401/403 of a missing token or scope), the
//! links a client follows from a new transfer's id to its other operations, and the routes served
//! under a second path (the legacy tus part URL, the subscriptions under Altinn Events' base path).

use super::{admin, download, notifications, statistics, subscriptions, transfers, tus, upload};
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::{Content, OpenApi as Document, RefOr};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Broker", description = "A managed file-transfer broker speaking the Altinn 3 Broker v1 API."),
    paths(
        transfers::initialize, transfers::overview, transfers::details, transfers::search, transfers::confirm_download,
        upload::upload, upload::initialize_and_upload, download::download,
        admin::create_service_owner, admin::service_owner, admin::configure_resource, admin::resource,
        admin::events, admin::health, super::metrics::metrics,
        subscriptions::create, subscriptions::list, subscriptions::get, subscriptions::delete,
        subscriptions::deliveries, subscriptions::redeliver, subscriptions::rotate_secret,
        statistics::monthly, statistics::generate_daily_summary, statistics::download_daily_summary,
        notifications::create, notifications::list, notifications::delete, notifications::deliveries,
        tus::options, tus::create, tus::head, tus::patch, tus::terminate,
        tus::head_part, tus::patch_part, tus::terminate_part,
        super::openapi_json,
    ),
    components(schemas(broker_protocol::events::CloudEvent, broker_protocol::events::EventData, broker_protocol::events::EventRole, tus::TusResumable)),
    modifiers(&BearerScheme, &ErrorResponses, &TransferLinks, &Aliases),
)]
pub struct ApiDoc;

/// The document as served. utoipa 5 writes a link's `operationId` as `operation_id`; it is renamed here
/// so clients and testers follow the links.
pub fn document() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for item in paths.values_mut().filter_map(|i| i.as_object_mut()) {
            for operation in item.values_mut() {
                let Some(responses) = operation
                    .get_mut("responses")
                    .and_then(|r| r.as_object_mut())
                else {
                    continue;
                };
                for response in responses.values_mut() {
                    let Some(links) = response.get_mut("links").and_then(|l| l.as_object_mut())
                    else {
                        continue;
                    };
                    for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                        if let Some(id) = link.remove("operation_id") {
                            link.insert("operationId".into(), id);
                        }
                    }
                }
            }
        }
    }
    doc
}

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut Document) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        // The daily summary's operator key (`statistics.api_key`).
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

const PROBLEM: &str = "application/problem+json";

fn problem(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM,
            Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "ProblemDetails",
            )))),
        )
        .build()
        .into()
}

/// Whether a documented body is a ProblemDetails.
fn is_problem(content: &Content) -> bool {
    matches!(&content.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/ProblemDetails"))
}

/// The endpoints behind the operator's `X-API-Key` rather than a token: they document their own
/// refusals (a JSON `error`, as the original answers).
fn keyed(path: &str) -> bool {
    path.ends_with("-daily-summary")
}

/// Every operation's error responses, as `http::error` renders them.
struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut Document) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let api = path.starts_with("/broker/api/v1/") && !keyed(path);
            let has_id = path.contains('{');
            let operations = [
                (&mut item.get, false),
                (&mut item.put, true),
                (&mut item.post, true),
                (&mut item.patch, true),
                (&mut item.delete, false),
            ];
            for (operation, takes_body) in operations {
                let Some(operation) = operation.as_mut() else {
                    continue;
                };
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else {
                        continue;
                    };
                    if status.starts_with('4') || status.starts_with('5') {
                        let json = response.content.get("application/json");
                        if json.is_some_and(is_problem) {
                            if let Some(content) = response.content.shift_remove("application/json")
                            {
                                response.content.insert(PROBLEM.into(), content);
                            }
                        }
                    }
                }
                if api {
                    complete(operation, takes_body, has_id, path);
                }
            }
            // HEAD answers have no body; OPTIONS answers what the server speaks.
            for operation in [&mut item.head, &mut item.options].into_iter().flatten() {
                if api {
                    complete_bodiless(operation);
                }
            }
        }
    }
}

/// The refusals any API operation may answer, described without a body: HEAD's never has one.
fn complete_bodiless(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    for (status, text) in [
        (
            "401",
            "No valid bearer token, or no access to the transfer.",
        ),
        ("403", "The token lacks the endpoint's scope, or a refusal."),
        ("500", "An unexpected error."),
        ("503", "Shutting down (`BRO-09006`) or too busy: retry."),
    ] {
        responses
            .entry(status.to_string())
            .or_insert_with(|| Response::new(text).into());
    }
}

fn complete(operation: &mut Operation, takes_body: bool, has_id: bool, path: &str) {
    let responses = &mut operation.responses.responses;
    // A missing token or scope gets an empty body (as ASP.NET answers); no access to the resource
    // or transfer gets a ProblemDetails `BRO-00006` (401) or `BRO-00005`/`BRO-00007` (403). One
    // status, two shapes: documented without content.
    for (status, text) in [
        ("401", "No valid bearer token (empty body, `WWW-Authenticate: Bearer`), or no access: ProblemDetails `BRO-00006`."),
        ("403", "The token lacks the endpoint's scope (empty body), or a ProblemDetails refusal."),
    ] {
        responses.insert(status.into(), Response::new(text).into());
    }
    let mut add = |status: &str, response: RefOr<Response>| {
        responses.entry(status.to_string()).or_insert(response);
    };
    add(
        "400",
        problem(
            "Invalid input: a ValidationProblemDetails naming the field, or a `BRO-xxxxx` code.",
        ),
    );
    add(
        "406",
        ResponseBuilder::new()
            .description("The `Accept` header names no media type this endpoint produces.")
            .content(
                "text/plain",
                Content::new(None::<RefOr<utoipa::openapi::schema::Schema>>),
            )
            .build()
            .into(),
    );
    add(
        "500",
        problem("An unexpected error (ProblemDetails, no details)."),
    );
    add(
        "503",
        problem("Shutting down (`BRO-09006`) or too busy: retry."),
    );
    if has_id {
        add(
            "404",
            problem("No such file transfer (`BRO-00001`) or resource."),
        );
    }
    if takes_body {
        add(
            "408",
            problem("The request body arrived too slowly (`BRO-09009`)."),
        );
        add(
            "413",
            problem("The request body is too large (`BRO-09008`)."),
        );
        add(
            "415",
            problem("The request body has the wrong content type."),
        );
    }
    if path.ends_with("/upload") {
        add(
            "409",
            problem("An upload is running or done (`BRO-00004`)."),
        );
        add(
            "507",
            problem("Not enough free storage for the declared size (`BRO-09001`)."),
        );
    }
}

/// Links from a new transfer's id to the operations on it, so a client (or a stateful tester) can
/// follow a transfer's lifecycle.
struct TransferLinks;

impl utoipa::Modify for TransferLinks {
    fn modify(&self, openapi: &mut Document) {
        let targets = [
            ("GetOverview", "overview"),
            ("GetDetails", "details"),
            ("Upload", "upload"),
            ("Download", "download"),
            ("ConfirmDownload", "confirm_download"),
            ("TusCreate", "tus_create"),
            ("TusHead", "tus_head"),
            ("TusPatch", "tus_patch"),
            ("TusTerminate", "tus_terminate"),
        ];
        for (path, create) in [
            ("/broker/api/v1/filetransfer", true),
            ("/broker/api/v1/filetransfer/upload", true),
        ] {
            let Some(item) = openapi.paths.paths.get_mut(path) else {
                continue;
            };
            let Some(operation) = item.post.as_mut().filter(|_| create) else {
                continue;
            };
            let Some(RefOr::T(ok)) = operation.responses.responses.get_mut("200") else {
                continue;
            };
            for (name, operation_id) in targets {
                ok.links.insert(
                    name.to_string(),
                    LinkBuilder::new()
                        .operation_id(operation_id)
                        .parameter("fileTransferId", "$response.body#/fileTransferId")
                        .build()
                        .into(),
                );
            }
        }
    }
}

/// Routes served under a second path, described there too: the legacy form of a tus part's URL
/// (spec 4.1, deprecated) and the subscription API under Altinn Events' base path. Each copy's
/// operations get ids of their own.
struct Aliases;

impl utoipa::Modify for Aliases {
    fn modify(&self, openapi: &mut Document) {
        use utoipa::openapi::Deprecated;
        let tus_part = "/broker/api/v1/filetransfer/upload/tus/{fileTransferId}";
        let mut copies = vec![(
            format!("{tus_part}/partial/{{partId}}"),
            format!("{tus_part}/{{partId}}"),
            "_legacy",
            true,
        )];
        for (path, _) in openapi.paths.paths.iter() {
            if let Some(rest) = path.strip_prefix("/broker/api/v1/subscriptions") {
                copies.push((
                    path.clone(),
                    format!("/events/api/v1/subscriptions{rest}"),
                    "_events",
                    false,
                ));
            }
        }
        for (from, to, suffix, deprecated) in copies {
            let Some(mut item) = openapi.paths.paths.get(&from).cloned() else {
                continue;
            };
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.head,
                &mut item.options,
            ]
            .into_iter()
            .flatten()
            {
                operation.operation_id = operation.operation_id.take().map(|id| id + suffix);
                if deprecated {
                    operation.deprecated = Some(Deprecated::True);
                }
            }
            openapi.paths.paths.insert(to, item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_body_is_documented_as_problem_json_and_401_403_without_content() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let tus = path.contains("/upload/tus/");
            for (method, operation) in item.as_object().unwrap() {
                for (status, response) in operation["responses"].as_object().unwrap() {
                    let content = response.get("content").and_then(|c| c.as_object());
                    let types: Vec<&str> = content
                        .map(|c| c.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let at = format!("{method} {path} {status}");
                    if method == "head" {
                        assert!(content.is_none(), "{at}: a HEAD answer has no body");
                    } else if keyed(path) && (status == "401" || status == "429") {
                        // The daily summary's own refusals: a JSON `error`, as the original's.
                        assert_eq!(types, vec!["application/json"], "{at}");
                    } else if status == "401" || status == "403" {
                        assert!(content.is_none(), "{at}");
                    } else if tus && (status == "412" || status == "460") {
                        // Refusals of the tus protocol itself are plain text, as tus servers answer.
                        assert_eq!(types, vec!["text/plain"], "{at}");
                    } else if status.starts_with('4') && status != "406" && path != "/health" {
                        let mut expected = vec![PROBLEM];
                        if tus && types.contains(&"text/plain") {
                            expected.push("text/plain");
                        }
                        assert_eq!(types, expected, "{at}");
                    }
                }
            }
        }
        let links =
            &doc["paths"]["/broker/api/v1/filetransfer"]["post"]["responses"]["200"]["links"];
        assert_eq!(links["Upload"]["operationId"], "upload");
    }
}
