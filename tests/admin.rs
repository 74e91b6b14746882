//! Service owner (spec 1.11), resource configuration (1.10), the maintenance event outbox, GET
//! /health and GET /openapi.json.

use crate::common::*;
use crate::support::*;
use broker_protocol::resource::ResourceUpdate;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn a_service_owner_is_created_with_200_and_an_empty_body_then_read_back() {
    let server = TestServer::start().await;
    let owner = server.client(SERVICE_OWNER, SO_SCOPE);
    let response = owner
        .request(Method::POST, "/serviceowner")
        .json(&json!({"name": "Digdir", "deletionTime": "P1D"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.bytes().await.unwrap().is_empty());

    let response = owner
        .request(Method::GET, "/serviceowner")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["name"], "Digdir");
    let providers = body["storageProviders"].as_array().unwrap();
    let types: Vec<&str> = providers
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["AltinnAzure", "AltinnAzureWithoutVirusScan"]);
    for p in providers {
        assert!(
            ["NotStarted", "DeployingResources", "Ready"]
                .contains(&p["deploymentStatus"].as_str().unwrap()),
            "{p}"
        );
        assert!(p["deploymentEnvironment"].is_string(), "{p}");
    }
}

#[tokio::test]
async fn a_resource_put_answers_204_and_get_shows_the_defaults_as_timespans() {
    let server = TestServer::start().await;
    let owner = server.client(SERVICE_OWNER, SO_SCOPE);
    owner.create_service_owner("Owner").await.unwrap();
    let response = owner
        .request(Method::PUT, &format!("/resource/{RESOURCE}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        204,
        "an empty body registers the resource"
    );
    assert!(response.bytes().await.unwrap().is_empty());

    let response = owner
        .request(Method::GET, &format!("/resource/{RESOURCE}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["fileTransferTimeToLive"], "30.00:00:00");
    assert_eq!(body["purgeFileTransferGracePeriod"], "02:00:00");
    assert_eq!(body["purgeFileTransferAfterAllRecipientsConfirmed"], true);
    assert_eq!(body["useManifestFileShim"], false);
    let map = body.as_object().unwrap();
    for key in [
        "maxFileTransferSize",
        "externalServiceCodeLegacy",
        "externalServiceEditionCodeLegacy",
        "requiredParty",
    ] {
        assert!(
            map.contains_key(key) && map[key].is_null(),
            "{key} is written as null: {body}"
        );
    }
}

#[tokio::test]
async fn a_resource_update_changes_only_the_fields_sent() {
    let f = Fixture::new().await;
    let update = ResourceUpdate {
        max_file_transfer_size: Some(1_000_000),
        file_transfer_time_to_live: Some("P1DT12H".into()),
        purge_file_transfer_grace_period: Some("PT30M".into()),
        purge_file_transfer_after_all_recipients_confirmed: Some(false),
        external_service_code_legacy: Some("4711".into()),
        external_service_edition_code_legacy: Some(2),
        use_manifest_file_shim: Some(true),
        required_party: None,
    };
    f.owner.configure_resource(RESOURCE, &update).await.unwrap();
    let r = f.owner.resource(RESOURCE).await.unwrap();
    assert_eq!(r.max_file_transfer_size, Some(1_000_000));
    assert_eq!(r.file_transfer_time_to_live, "1.12:00:00");
    assert_eq!(r.purge_file_transfer_grace_period, "00:30:00");
    assert!(!r.purge_file_transfer_after_all_recipients_confirmed);
    assert_eq!(r.external_service_code_legacy.as_deref(), Some("4711"));
    assert_eq!(r.external_service_edition_code_legacy, Some(2));
    assert!(r.use_manifest_file_shim);

    // A body with one field leaves the others alone.
    let response = f
        .owner
        .request(Method::PUT, &format!("/resource/{RESOURCE}"))
        .json(&json!({"fileTransferTimeToLive": "P365D"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let r = f.owner.resource(RESOURCE).await.unwrap();
    assert_eq!(r.file_transfer_time_to_live, "365.00:00:00");
    assert_eq!(r.max_file_transfer_size, Some(1_000_000));
    assert_eq!(r.purge_file_transfer_grace_period, "00:30:00");
    assert!(r.use_manifest_file_shim);
}

#[tokio::test]
async fn the_resource_time_to_live_sets_the_expiration_of_new_transfers() {
    let f = Fixture::new().await;
    let update = ResourceUpdate {
        file_transfer_time_to_live: Some("P2D".into()),
        ..Default::default()
    };
    f.owner.configure_resource(RESOURCE, &update).await.unwrap();
    let id = f.initialize(&[RECIPIENT]).await;
    let s = f.sender.overview(id).await.unwrap().summary;
    assert_eq!(s.expiration_time - s.created, chrono::Duration::days(2));
}

#[tokio::test]
async fn a_resource_can_be_addressed_with_its_urn() {
    let f = Fixture::new().await;
    let update = ResourceUpdate {
        max_file_transfer_size: Some(42),
        ..Default::default()
    };
    f.owner
        .configure_resource(&format!("urn:altinn:resource:{RESOURCE}"), &update)
        .await
        .unwrap();
    assert_eq!(
        f.owner
            .resource(RESOURCE)
            .await
            .unwrap()
            .max_file_transfer_size,
        Some(42)
    );
}

#[tokio::test]
async fn health_answers_200_with_a_text_body_and_no_token() {
    let server = TestServer::start().await;
    let response = reqwest::get(format!("{}/health", server.url))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        header(&response, "content-type").starts_with("text/plain"),
        "{:?}",
        response.headers()
    );
    assert_eq!(
        response.text().await.unwrap(),
        "Environment properly configured"
    );
}

/// The source of the router: every route the broker serves is registered there.
const ROUTER: &str = include_str!("../src/http/mod.rs");
const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

/// `text` from `open` (just past an opening parenthesis) to its matching closing one.
fn inside_parentheses(text: &str) -> &str {
    let mut depth = 1;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' if depth == 1 => return &text[..i],
            ')' => depth -= 1,
            _ => {}
        }
    }
    panic!("unbalanced parentheses in {text:?}")
}

/// A route's path with every parameter written `{}`, to compare the router's `{id}` with the
/// description's `{fileTransferId}`.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '{' => {
                if depth == 0 {
                    out.push_str("{}");
                }
                depth += 1;
            }
            '}' => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The (path shape, method) of every `.route(…)` in the router's source; `{api}` is the API's base
/// and `{base}` each base the subscription routes are merged under.
fn served_routes() -> std::collections::BTreeSet<(String, String)> {
    let api = "/broker/api/v1";
    let bases: Vec<String> = ROUTER
        .match_indices("subscription_routes(")
        .filter(|(i, _)| !ROUTER[..*i].ends_with("fn "))
        .map(|(i, m)| {
            let arg = inside_parentheses(&ROUTER[i + m.len()..]).trim();
            match arg {
                "api" => api.to_string(),
                quoted => quoted.trim_matches('"').to_string(),
            }
        })
        .collect();
    assert_eq!(
        bases,
        vec![api, "/events/api/v1"],
        "the subscription routes' bases"
    );
    let mut routes = std::collections::BTreeSet::new();
    for (i, m) in ROUTER.match_indices(".route(") {
        let call = inside_parentheses(&ROUTER[i + m.len()..]);
        let quoted: Vec<&str> = call.splitn(3, '"').collect();
        assert_eq!(
            quoted.len(),
            3,
            "a route whose path is not a literal: {call}"
        );
        let (path, handlers) = (quoted[1], quoted[2]);
        let paths: Vec<String> = if path.contains("{base}") {
            bases.iter().map(|b| path.replace("{base}", b)).collect()
        } else {
            vec![path.replace("{api}", api)]
        };
        let mut methods = Vec::new();
        for method in METHODS {
            let call = format!("{method}(");
            for (at, _) in handlers.match_indices(&call) {
                let before = handlers[..at].chars().last().unwrap_or(' ');
                if !(before.is_alphanumeric() || before == '_') {
                    methods.push(method);
                }
            }
        }
        assert!(
            !methods.is_empty(),
            "no method found for {path}: {handlers}"
        );
        for path in paths {
            for method in &methods {
                routes.insert((shape(&path), method.to_string()));
            }
        }
    }
    routes
}

#[tokio::test]
async fn openapi_json_describes_every_route_the_router_serves_and_no_other() {
    let server = TestServer::start().await;
    let response = reqwest::get(format!("{}/openapi.json", server.url))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let doc: Value = response.json().await.expect("valid JSON");
    assert!(
        doc["openapi"].as_str().unwrap_or("").starts_with('3'),
        "an OpenAPI 3 document"
    );
    let mut described = std::collections::BTreeSet::new();
    let mut operation_ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            described.insert((shape(path), method.clone()));
            let id = operation["operationId"].as_str().unwrap_or_default();
            assert!(
                operation_ids.insert(id.to_string()),
                "operationId {id:?} of {method} {path} is not unique"
            );
        }
    }
    let served = served_routes();
    // The parse found the routes (a sample of each kind), so the comparison means something.
    for (path, method) in [
        ("/broker/api/v1/filetransfer", "post"),
        ("/broker/api/v1/filetransfer/{}/download", "get"),
        ("/broker/api/v1/filetransfer/upload/tus/{}", "patch"),
        (
            "/broker/api/v1/filetransfer/upload/tus/{}/partial/{}",
            "head",
        ),
        ("/broker/api/v1/statistics/generate-daily-summary", "post"),
        ("/events/api/v1/subscriptions/{}", "delete"),
        ("/health", "get"),
    ] {
        assert!(
            served.contains(&(path.to_string(), method.to_string())),
            "the router's source was not read right: {method} {path} not among {served:?}"
        );
    }
    let undescribed: Vec<_> = served.difference(&described).collect();
    assert!(
        undescribed.is_empty(),
        "served but not described: {undescribed:?}"
    );
    let unserved: Vec<_> = described.difference(&served).collect();
    assert!(
        unserved.is_empty(),
        "described but not served: {unserved:?}"
    );
}

#[tokio::test]
async fn the_event_outbox_pages_with_after_and_limit() {
    let f = Fixture::new().await;
    for _ in 0..3 {
        f.initialize(&[RECIPIENT]).await;
    }
    let all = f.maintenance.events(0, 1000).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|w| w[0].sequence < w[1].sequence));
    let page = f.maintenance.events(all[0].sequence, 1).await.unwrap();
    assert_eq!(page, vec![all[1].clone()]);
    let rest = f.maintenance.events(all[1].sequence, 1000).await.unwrap();
    assert_eq!(rest, vec![all[2].clone()]);
    assert!(f
        .maintenance
        .events(all[2].sequence, 1000)
        .await
        .unwrap()
        .is_empty());
}
