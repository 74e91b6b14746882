//! The authorization matrix of spec 0.3 for every endpoint: the sender, each recipient, a scoped third
//! party (401 `BRO-00006`), a token lacking the endpoint's scope (403, empty body), and tokens that are
//! missing, expired, signed by an unknown key, from an untrusted issuer, `alg: none` or garbage
//! (401, empty body, `WWW-Authenticate: Bearer`). Failures name the endpoint and the caller.

use crate::common::*;
use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use broker::auth::dev_issuer::DevIssuer;
use reqwest::Method;
use uuid::Uuid;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Expect {
    /// A success status.
    Success(u16),
    /// An application error with this status and code.
    Problem(u16, &'static str),
    /// 401, empty body, `WWW-Authenticate: Bearer`.
    Unauthenticated,
    /// 403, empty body.
    Forbidden,
}
pub(crate) use Expect::*;

#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoint {
    Initialize,
    Upload(Uuid),
    Multipart,
    Overview(Uuid),
    Details(Uuid),
    Search,
    Download(Uuid),
    Confirm(Uuid),
    CreateServiceOwner,
    GetServiceOwner,
    PutResource,
    GetResource,
    Events,
}

pub(crate) fn request(
    f: &Fixture,
    endpoint: Endpoint,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    let http = reqwest::Client::new();
    let json_body = |b: reqwest::RequestBuilder, v: serde_json::Value| b.json(&v);
    let (method, path) = match endpoint {
        Endpoint::Initialize => (Method::POST, "/filetransfer".to_string()),
        Endpoint::Upload(id) => (Method::POST, format!("/filetransfer/{id}/upload")),
        Endpoint::Multipart => (Method::POST, "/filetransfer/upload".to_string()),
        Endpoint::Overview(id) => (Method::GET, format!("/filetransfer/{id}")),
        Endpoint::Details(id) => (Method::GET, format!("/filetransfer/{id}/details")),
        Endpoint::Search => (Method::GET, format!("/filetransfer?resourceId={RESOURCE}")),
        Endpoint::Download(id) => (Method::GET, format!("/filetransfer/{id}/download")),
        Endpoint::Confirm(id) => (Method::POST, format!("/filetransfer/{id}/confirmdownload")),
        Endpoint::CreateServiceOwner | Endpoint::GetServiceOwner => {
            let method = if matches!(endpoint, Endpoint::CreateServiceOwner) {
                Method::POST
            } else {
                Method::GET
            };
            (method, "/serviceowner".to_string())
        }
        Endpoint::PutResource => (Method::PUT, format!("/resource/{RESOURCE}")),
        Endpoint::GetResource => (Method::GET, format!("/resource/{RESOURCE}")),
        Endpoint::Events => (Method::GET, "/maintenance/events".to_string()),
    };
    let mut builder = http.request(method, f.server.api(&path));
    if let Some(token) = token {
        builder = builder.bearer_auth(token);
    }
    match endpoint {
        Endpoint::Initialize => builder.json(&f.initialize_body(&[RECIPIENT, RECIPIENT_2])),
        Endpoint::Upload(_) => builder
            .header("content-type", "application/octet-stream")
            .body(b"matrix".to_vec()),
        Endpoint::Multipart => {
            let (content_type, body) = Multipart::new()
                .text("Metadata.FileName", "m.bin")
                .text("Metadata.ResourceId", RESOURCE)
                .text("Metadata.Sender", SENDER)
                .text("Metadata.Recipients", RECIPIENT)
                .text("Metadata.SendersFileTransferReference", "m")
                .file("FileTransfer", "m.bin", b"multipart matrix")
                .finish();
            builder.header("content-type", content_type).body(body)
        }
        Endpoint::CreateServiceOwner => {
            json_body(builder, serde_json::json!({"name": "New owner"}))
        }
        Endpoint::PutResource => {
            json_body(builder, serde_json::json!({"maxFileTransferSize": 1000000}))
        }
        _ => builder,
    }
}

pub(crate) async fn check(response: reqwest::Response, expect: Expect) -> Result<(), String> {
    let status = response.status().as_u16();
    let www = header(&response, "www-authenticate");
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&body).to_string();
    let fail = |what: &str| {
        Err(format!(
            "expected {expect:?}, got {status} ({what}); body {text:?}"
        ))
    };
    match expect {
        Success(s) if status != s => fail("status"),
        Problem(s, _) if status != s => fail("status"),
        Problem(_, code) => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if v["code"] != code {
                return fail("code");
            }
            Ok(())
        }
        Unauthenticated if status != 401 => fail("status"),
        Unauthenticated if www != "Bearer" => fail(&format!("WWW-Authenticate {www:?}")),
        Forbidden if status != 403 => fail("status"),
        Unauthenticated | Forbidden if !body.is_empty() => fail("non-empty body"),
        _ => Ok(()),
    }
}

/// A token with `alg: none` and no signature, carrying otherwise valid claims.
pub(crate) fn alg_none_token(org: &str, scopes: &str) -> String {
    let digits = org.rsplit(':').next().unwrap();
    let now = chrono::Utc::now().timestamp();
    let header = serde_json::json!({"alg": "none", "typ": "JWT"});
    let claims = serde_json::json!({
        "iss": "broker-dev", "scope": scopes, "urn:altinn:orgNumber": digits,
        "consumer": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{digits}")},
        "iat": now, "nbf": now, "exp": now + 3600,
    });
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// Tokens that must all be refused with 401, for the identity of the endpoint's legitimate caller.
pub(crate) fn bad_tokens(
    f: &Fixture,
    org: &str,
    scopes: &str,
) -> Vec<(String, Option<String>, Expect)> {
    let own = DevIssuer::load(&f.server.data_dir, "broker-dev").unwrap();
    let expired = own
        .mint(org, scopes, chrono::Duration::seconds(-120))
        .unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let stranger = DevIssuer::ensure(other_dir.path(), "broker-dev").unwrap();
    let unknown_key = stranger
        .mint(org, scopes, chrono::Duration::hours(1))
        .unwrap();
    let untrusted_issuer = DevIssuer::load(&f.server.data_dir, "someone-else")
        .unwrap()
        .mint(org, scopes, chrono::Duration::hours(1))
        .unwrap();
    vec![
        ("no token".into(), None, Unauthenticated),
        ("an expired token".into(), Some(expired), Unauthenticated),
        (
            "a token signed by an unknown key".into(),
            Some(unknown_key),
            Unauthenticated,
        ),
        (
            "a token from an untrusted issuer".into(),
            Some(untrusted_issuer),
            Unauthenticated,
        ),
        (
            "an alg:none token".into(),
            Some(alg_none_token(org, scopes)),
            Unauthenticated,
        ),
        (
            "a garbage token".into(),
            Some("not.a.jwt".into()),
            Unauthenticated,
        ),
    ]
}

pub(crate) fn caller(
    f: &Fixture,
    label: &str,
    org: &str,
    scopes: &str,
    expect: Expect,
) -> (String, Option<String>, Expect) {
    (label.to_string(), Some(f.server.token(org, scopes)), expect)
}

/// Sends every case in order (the bad tokens first) and reports all mismatches at once.
pub(crate) async fn run(
    f: &Fixture,
    endpoint: Endpoint,
    legit: (&str, &str),
    callers: Vec<(String, Option<String>, Expect)>,
) {
    let mut failures = Vec::new();
    for (label, token, expect) in bad_tokens(f, legit.0, legit.1).into_iter().chain(callers) {
        let response = request(f, endpoint, token.as_deref()).send().await.unwrap();
        if let Err(e) = check(response, expect).await {
            failures.push(format!("{endpoint:?} as {label}: {e}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

pub(crate) const BOTH: &str = "altinn:broker.write altinn:broker.read";

#[tokio::test]
async fn initialize_is_for_the_sender_with_the_write_scope() {
    let f = Fixture::new().await;
    let cases = vec![
        caller(&f, "the recipient (read scope)", RECIPIENT, READ, Forbidden),
        caller(
            &f,
            "the sender with only the read scope",
            SENDER,
            READ,
            Forbidden,
        ),
        caller(&f, "the service owner scope", SENDER, SO_SCOPE, Forbidden),
        caller(
            &f,
            "a scoped third party",
            THIRD_PARTY,
            BOTH,
            Problem(401, "BRO-00006"),
        ),
        caller(
            &f,
            "a recipient with the write scope",
            RECIPIENT,
            BOTH,
            Problem(401, "BRO-00006"),
        ),
        caller(&f, "the sender", SENDER, BOTH, Success(200)),
        caller(
            &f,
            "the sender with only the write scope",
            SENDER,
            WRITE,
            Success(200),
        ),
    ];
    run(&f, Endpoint::Initialize, (SENDER, WRITE), cases).await;
}

#[tokio::test]
async fn upload_is_for_the_transfers_sender_with_the_write_scope() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT, RECIPIENT_2]).await;
    let cases = vec![
        caller(&f, "the recipient (read scope)", RECIPIENT, READ, Forbidden),
        caller(&f, "recipient 2 (read scope)", RECIPIENT_2, READ, Forbidden),
        caller(
            &f,
            "the sender with only the read scope",
            SENDER,
            READ,
            Forbidden,
        ),
        caller(
            &f,
            "a scoped third party",
            THIRD_PARTY,
            BOTH,
            Problem(401, "BRO-00006"),
        ),
        caller(
            &f,
            "a recipient with the write scope",
            RECIPIENT,
            BOTH,
            Problem(401, "BRO-00006"),
        ),
        caller(&f, "the sender", SENDER, WRITE, Success(200)),
    ];
    run(&f, Endpoint::Upload(id), (SENDER, WRITE), cases).await;
}

#[tokio::test]
async fn multipart_upload_is_for_the_sender_with_the_write_scope() {
    let f = Fixture::new().await;
    let cases = vec![
        caller(&f, "the recipient (read scope)", RECIPIENT, READ, Forbidden),
        caller(
            &f,
            "the sender with only the read scope",
            SENDER,
            READ,
            Forbidden,
        ),
        caller(
            &f,
            "a scoped third party",
            THIRD_PARTY,
            BOTH,
            Problem(401, "BRO-00006"),
        ),
        caller(&f, "the sender", SENDER, BOTH, Success(200)),
    ];
    run(&f, Endpoint::Multipart, (SENDER, WRITE), cases).await;
}

fn party_reader_cases(f: &Fixture) -> Vec<(String, Option<String>, Expect)> {
    vec![
        caller(f, "the service owner scope", SENDER, SO_SCOPE, Forbidden),
        caller(
            f,
            "the maintenance scope",
            RECIPIENT,
            MAINTENANCE,
            Forbidden,
        ),
        caller(
            f,
            "a scoped third party",
            THIRD_PARTY,
            BOTH,
            Problem(401, "BRO-00006"),
        ),
        caller(f, "the sender", SENDER, BOTH, Success(200)),
        caller(
            f,
            "the sender with only the write scope",
            SENDER,
            WRITE,
            Success(200),
        ),
        caller(f, "the recipient", RECIPIENT, READ, Success(200)),
        caller(f, "recipient 2", RECIPIENT_2, READ, Success(200)),
        caller(
            f,
            "recipient 2 with only the write scope",
            RECIPIENT_2,
            WRITE,
            Success(200),
        ),
    ]
}

#[tokio::test]
async fn overview_is_for_the_sender_and_every_recipient() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT, RECIPIENT_2], b"x").await;
    let cases = party_reader_cases(&f);
    run(&f, Endpoint::Overview(id), (RECIPIENT, READ), cases).await;
}

#[tokio::test]
async fn details_are_for_the_sender_and_every_recipient() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT, RECIPIENT_2], b"x").await;
    let cases = party_reader_cases(&f);
    run(&f, Endpoint::Details(id), (SENDER, WRITE), cases).await;
}

#[tokio::test]
async fn search_needs_either_scope_and_shows_a_third_party_nothing() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT, RECIPIENT_2], b"x").await;
    let cases = vec![
        caller(&f, "the service owner scope", SENDER, SO_SCOPE, Forbidden),
        caller(&f, "a scoped third party", THIRD_PARTY, BOTH, Success(200)),
        caller(&f, "the sender", SENDER, WRITE, Success(200)),
        caller(&f, "the recipient", RECIPIENT, READ, Success(200)),
        caller(&f, "recipient 2", RECIPIENT_2, READ, Success(200)),
    ];
    run(&f, Endpoint::Search, (RECIPIENT, READ), cases).await;
    assert!(f
        .third_party
        .search(&[("resourceId", RESOURCE)])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        f.recipient_2
            .search(&[("resourceId", RESOURCE)])
            .await
            .unwrap(),
        vec![id]
    );
}

#[tokio::test]
async fn download_is_for_recipients_with_the_read_scope() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT, RECIPIENT_2], b"x").await;
    let cases = vec![
        caller(
            &f,
            "the recipient with only the write scope",
            RECIPIENT,
            WRITE,
            Forbidden,
        ),
        caller(
            &f,
            "the service owner scope",
            RECIPIENT,
            SO_SCOPE,
            Forbidden,
        ),
        caller(
            &f,
            "the sender (both scopes)",
            SENDER,
            BOTH,
            Problem(401, "BRO-00006"),
        ),
        caller(
            &f,
            "a scoped third party",
            THIRD_PARTY,
            BOTH,
            Problem(401, "BRO-00006"),
        ),
        caller(&f, "the recipient", RECIPIENT, READ, Success(200)),
        caller(&f, "recipient 2", RECIPIENT_2, BOTH, Success(200)),
    ];
    run(&f, Endpoint::Download(id), (RECIPIENT, READ), cases).await;
}

#[tokio::test]
async fn confirm_is_for_recipients_with_the_read_scope() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT, RECIPIENT_2], b"x").await;
    f.recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    f.recipient_2
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let cases = vec![
        caller(
            &f,
            "the recipient with only the write scope",
            RECIPIENT,
            WRITE,
            Forbidden,
        ),
        caller(
            &f,
            "the sender (both scopes)",
            SENDER,
            BOTH,
            Problem(401, "BRO-00006"),
        ),
        caller(
            &f,
            "a scoped third party",
            THIRD_PARTY,
            BOTH,
            Problem(401, "BRO-00006"),
        ),
        caller(&f, "the recipient", RECIPIENT, READ, Success(204)),
        caller(&f, "recipient 2", RECIPIENT_2, READ, Success(204)),
    ];
    run(&f, Endpoint::Confirm(id), (RECIPIENT, READ), cases).await;
}
