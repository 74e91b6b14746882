//! Cross-cutting HTTP conventions of spec 0: security headers on every response, the Accept check
//! (406 text/plain, before authentication) and the ProblemDetails shape.

use crate::common::*;
use crate::support::*;
use reqwest::Method;
use uuid::Uuid;

const NOT_ACCEPTABLE: &str =
    "This endpoint does not support the requested Accept header. Supported Accept headers are: application/json, */*.";

#[track_caller]
fn assert_security_headers(what: &str, response: &reqwest::Response) {
    assert_eq!(
        header(response, "x-content-type-options"),
        "nosniff",
        "{what}: {:?}",
        response.headers()
    );
    assert_eq!(
        header(response, "cache-control"),
        "no-store",
        "{what}: {:?}",
        response.headers()
    );
}

#[tokio::test]
async fn every_kind_of_response_carries_the_security_headers() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT], b"secret").await;
    let url = &f.server.url;
    let plain = reqwest::Client::new();
    let cases = [
        (
            "overview 200",
            f.sender
                .request(Method::GET, &format!("/filetransfer/{id}"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "download 200",
            f.recipient
                .request(Method::GET, &format!("/filetransfer/{id}/download"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "download 206",
            f.recipient
                .request(Method::GET, &format!("/filetransfer/{id}/download"))
                .header("range", "bytes=0-1")
                .send()
                .await
                .unwrap(),
        ),
        (
            "404 problem",
            f.sender
                .request(Method::GET, &format!("/filetransfer/{}", Uuid::new_v4()))
                .send()
                .await
                .unwrap(),
        ),
        (
            "401 no token",
            f.server
                .anonymous()
                .request(Method::GET, &format!("/filetransfer/{id}"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "403 no scope",
            f.owner
                .request(Method::GET, &format!("/filetransfer/{id}"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "406 accept",
            f.sender
                .request(Method::GET, &format!("/filetransfer/{id}"))
                .header("accept", "text/html")
                .send()
                .await
                .unwrap(),
        ),
        (
            "confirm 400",
            f.recipient
                .request(Method::POST, &format!("/filetransfer/{id}/confirmdownload"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "health",
            plain.get(format!("{url}/health")).send().await.unwrap(),
        ),
        (
            "openapi",
            plain
                .get(format!("{url}/openapi.json"))
                .send()
                .await
                .unwrap(),
        ),
        (
            "unknown route",
            plain
                .get(format!("{url}/broker/api/v1/nothing-here"))
                .send()
                .await
                .unwrap(),
        ),
    ];
    for (what, response) in &cases {
        assert_security_headers(what, response);
    }
}

#[tokio::test]
async fn accept_text_html_on_a_json_endpoint_is_406_with_a_plain_text_message() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    for path in [
        format!("/filetransfer/{id}"),
        format!("/filetransfer/{id}/details"),
        format!("/filetransfer?resourceId={RESOURCE}"),
    ] {
        let response = f
            .sender
            .request(Method::GET, &path)
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 406, "{path}");
        assert!(
            header(&response, "content-type").starts_with("text/plain"),
            "{path}"
        );
        assert_eq!(response.text().await.unwrap(), NOT_ACCEPTABLE, "{path}");
    }
    let response = f
        .sender
        .request(Method::POST, "/filetransfer")
        .header("accept", "text/html")
        .json(&f.initialize_body(&[RECIPIENT]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 406, "initialize");
}

#[tokio::test]
async fn a_media_range_wildcard_other_than_star_star_is_not_accepted() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let response = f
        .sender
        .request(Method::GET, &format!("/filetransfer/{id}"))
        .header("accept", "application/*")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 406);
    assert_eq!(response.text().await.unwrap(), NOT_ACCEPTABLE);
}

#[tokio::test]
async fn acceptable_accept_headers_pass() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT], b"abc").await;
    for accept in [
        "*/*",
        "application/json",
        "APPLICATION/JSON",
        "application/json; charset=utf-8",
        "text/html, application/json;q=0.5",
        "text/html, */*",
    ] {
        let response = f
            .sender
            .request(Method::GET, &format!("/filetransfer/{id}"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "Accept: {accept}");
    }
    for accept in ["*/*", "application/octet-stream"] {
        let response = f
            .recipient
            .request(Method::GET, &format!("/filetransfer/{id}/download"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status().as_u16(),
            200,
            "download with Accept: {accept}"
        );
    }
}

#[tokio::test]
async fn the_accept_check_runs_before_authentication() {
    let f = Fixture::new().await;
    let response = f
        .server
        .anonymous()
        .request(Method::GET, &format!("/filetransfer/{}", Uuid::new_v4()))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 406);
}

#[tokio::test]
async fn an_application_error_is_a_problem_details_with_type_title_detail_code_and_trace_id() {
    let f = Fixture::new().await;
    let response = f
        .sender
        .request(Method::GET, &format!("/filetransfer/{}", Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    let body = expect_problem_response(response, 404, Some("BRO-00001")).await;
    assert_eq!(
        body["type"],
        "https://tools.ietf.org/html/rfc9110#section-15.5.5"
    );
    assert_eq!(body["title"], "Not Found");
    assert_eq!(body["detail"], "The requested file transfer was not found");
    let trace = body["traceId"].as_str().expect("traceId");
    let parts: Vec<&str> = trace.split('-').collect();
    assert_eq!(parts.len(), 4, "{trace}");
    assert_eq!(
        (parts[0], parts[1].len(), parts[2].len(), parts[3]),
        ("00", 32, 16, "01"),
        "{trace}"
    );
}

#[tokio::test]
async fn problem_type_title_and_detail_follow_the_status_and_the_catalogue() {
    let f = Fixture::new().await;
    let published = f.publish(&[RECIPIENT], b"abc").await;
    let initialized = f.initialize(&[RECIPIENT]).await;
    // (what, request, status, code, RFC 9110 section, title, detail verbatim from spec 0.2)
    let cases = [
        (
            "confirm before download",
            f.recipient.request(Method::POST, &format!("/filetransfer/{published}/confirmdownload")),
            400, "BRO-00019", "15.5.1", "Bad Request",
            "Cannot confirm before the files have been downloaded",
        ),
        (
            "third party overview",
            f.third_party.request(Method::GET, &format!("/filetransfer/{published}")),
            401, "BRO-00006", "15.5.2", "Unauthorized",
            "You must use a bearer token that represents a system user with access to the resource in the Resource Rights Registry",
        ),
        (
            "download before publish",
            f.recipient.request(Method::GET, &format!("/filetransfer/{initialized}/download")),
            403, "BRO-00007", "15.5.4", "Forbidden",
            "The requested file transfer's file is not ready for download. See file transfer status.",
        ),
        (
            "upload after publish",
            f.sender
                .request(Method::POST, &format!("/filetransfer/{published}/upload"))
                .header("content-type", "application/octet-stream")
                .body("again"),
            409, "BRO-00004", "15.5.10", "Conflict",
            "A file transfer has already been, or attempted to be, created. Create a new file transfer resource to try again.",
        ),
        (
            "range past the end",
            f.recipient.request(Method::GET, &format!("/filetransfer/{published}/download")).header("range", "bytes=3-"),
            416, "BRO-00029", "15.5.17", "Range Not Satisfiable",
            "The requested byte range is not satisfiable.",
        ),
        (
            "resource never configured",
            f.owner.request(Method::GET, "/resource/nothing-here"),
            400, "BRO-00025", "15.5.1", "Bad Request",
            "The resource has not been configured.",
        ),
        (
            "service owner twice",
            f.owner.request(Method::POST, "/serviceowner").json(&serde_json::json!({"name": "x"})),
            409, "BRO-07002", "15.5.10", "Conflict",
            "Service owner already exists",
        ),
    ];
    for (what, request, status, code, section, title, detail) in cases {
        let body = expect_problem_response(request.send().await.unwrap(), status, Some(code)).await;
        assert_eq!(
            body["type"],
            format!("https://tools.ietf.org/html/rfc9110#section-{section}"),
            "{what}"
        );
        assert_eq!(body["title"], title, "{what}");
        assert_eq!(body["detail"], detail, "{what}");
    }
}
