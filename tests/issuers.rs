//! Tokens from configured issuers: a PEM public key (RS256), a JWKS file, and a JWKS URL that is
//! refetched when a token names an unknown key id.

use crate::common::*;
use broker::config::IssuerConfig;
use broker_protocol::client::BrokerClient;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const ISSUER: &str = "https://issuer.test/";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn rs256_token(issuer: &str, kid: Option<&str>) -> String {
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-test-key.pem")).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_string);
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "iss": issuer, "exp": now + 600, "iat": now, "scope": SO_SCOPE,
        "consumer": {"authority": "iso6523-actorid-upis", "ID": SERVICE_OWNER},
    });
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

async fn server_with(issuer: IssuerConfig) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.auth.issuers = vec![issuer];
    (TestServer::start_with(config).await, dir)
}

fn issuer() -> IssuerConfig {
    IssuerConfig {
        issuer: ISSUER.into(),
        public_key_file: None,
        jwks_file: None,
        jwks_url: None,
    }
}

#[tokio::test]
async fn an_rs256_token_from_an_issuer_with_a_public_key_file_is_accepted() {
    let (server, _dir) = server_with(IssuerConfig {
        public_key_file: Some(fixture("rsa-test-public.pem")),
        ..issuer()
    })
    .await;
    let owner = BrokerClient::new(&server.url).with_token(rs256_token(ISSUER, None));
    owner.create_service_owner("RSA owner").await.unwrap();
    let other_issuer =
        BrokerClient::new(&server.url).with_token(rs256_token("https://elsewhere.test/", None));
    assert_eq!(
        other_issuer.service_owner().await.unwrap_err().status(),
        Some(401)
    );
}

#[tokio::test]
async fn a_jwks_file_issuer_verifies_tokens_by_key_id() {
    let (server, _dir) = server_with(IssuerConfig {
        jwks_file: Some(fixture("rsa-jwks.json")),
        ..issuer()
    })
    .await;
    let owner = BrokerClient::new(&server.url).with_token(rs256_token(ISSUER, Some("test-rsa-1")));
    owner.create_service_owner("JWKS owner").await.unwrap();
    let unknown_kid =
        BrokerClient::new(&server.url).with_token(rs256_token(ISSUER, Some("not-there")));
    assert_eq!(
        unknown_kid.service_owner().await.unwrap_err().status(),
        Some(401)
    );
}

#[tokio::test]
async fn a_jwks_url_is_refetched_when_a_token_names_an_unknown_key_id() {
    let published = Arc::new(Mutex::new(serde_json::json!({"keys": []})));
    let served = published.clone();
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let served = served.clone();
            async move { axum::Json(served.lock().unwrap().clone()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (server, _dir) = server_with(IssuerConfig {
        jwks_url: Some(url),
        ..issuer()
    })
    .await;
    // The issuer rotates: its JWKS now holds the key the token names.
    *published.lock().unwrap() =
        serde_json::from_str(&std::fs::read_to_string(fixture("rsa-jwks.json")).unwrap()).unwrap();
    let owner = BrokerClient::new(&server.url).with_token(rs256_token(ISSUER, Some("test-rsa-1")));
    owner.create_service_owner("Rotated owner").await.unwrap();
}
