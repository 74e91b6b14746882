//! Token validation and caller identity (spec 0.3), with tokens signed by the server's development key
//! but carrying hand-made claims: the lifetime (exp and nbf, no clock skew), and which claim names the
//! caller's organisation (system user, then `urn:altinn:orgNumber`, then `consumer`).

use crate::common::*;
use broker::auth::dev_issuer::{key_path, DevIssuer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// Signs `claims` with the server's development key (ES256, with its kid).
fn sign(server: &TestServer, claims: &Value) -> String {
    let pem = std::fs::read(key_path(&server.data_dir)).unwrap();
    let key = EncodingKey::from_ec_pem(&pem).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(DevIssuer::load(&server.data_dir, "broker-dev").unwrap().kid);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn overview_status(server: &TestServer, id: Uuid, token: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(server.api(&format!("/filetransfer/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_hand_signed_token_with_ordinary_claims_is_accepted() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let token = sign(
        &f.server,
        &json!({"iss": "broker-dev", "scope": READ, "urn:altinn:orgNumber": "222222222", "exp": now() + 600}),
    );
    assert_eq!(
        overview_status(&f.server, id, &token).await.0,
        200,
        "the signing helper itself works"
    );
}

#[tokio::test]
async fn a_token_that_is_not_yet_valid_is_401() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let token = sign(
        &f.server,
        &json!({"iss": "broker-dev", "scope": READ, "urn:altinn:orgNumber": "222222222", "nbf": now() + 3600, "exp": now() + 7200}),
    );
    let (status, body) = overview_status(&f.server, id, &token).await;
    assert_eq!(
        status, 401,
        "a token whose nbf lies an hour ahead must be refused; body {body:?}"
    );
}

#[tokio::test]
async fn a_token_just_past_its_expiry_is_401_as_there_is_no_clock_skew() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let token = sign(
        &f.server,
        &json!({"iss": "broker-dev", "scope": READ, "urn:altinn:orgNumber": "222222222", "exp": now() - 2}),
    );
    assert_eq!(overview_status(&f.server, id, &token).await.0, 401);
}

#[tokio::test]
async fn a_token_without_expiry_or_issuer_is_401() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let no_exp = sign(
        &f.server,
        &json!({"iss": "broker-dev", "scope": READ, "urn:altinn:orgNumber": "222222222"}),
    );
    assert_eq!(
        overview_status(&f.server, id, &no_exp).await.0,
        401,
        "no exp"
    );
    let no_iss = sign(
        &f.server,
        &json!({"scope": READ, "urn:altinn:orgNumber": "222222222", "exp": now() + 600}),
    );
    assert_eq!(
        overview_status(&f.server, id, &no_iss).await.0,
        401,
        "no iss"
    );
}

#[tokio::test]
async fn a_tampered_payload_is_401() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let token = f.server.token(THIRD_PARTY, READ);
    let parts: Vec<&str> = token.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["urn:altinn:orgNumber"] = json!("222222222");
    claims["consumer"]["ID"] = json!(RECIPIENT);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    assert_eq!(overview_status(&f.server, id, &forged).await.0, 401);
}

#[tokio::test]
async fn the_system_user_org_wins_over_org_number_and_consumer() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let token = sign(
        &f.server,
        &json!({
            "iss": "broker-dev", "scope": READ, "exp": now() + 600,
            "consumer": {"authority": "iso6523-actorid-upis", "ID": THIRD_PARTY},
            "urn:altinn:orgNumber": "444444444",
            "authorization_details": [{"type": "urn:altinn:systemuser",
                "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": RECIPIENT}}]
        }),
    );
    assert_eq!(
        overview_status(&f.server, id, &token).await.0,
        200,
        "acts as the system user's org (the recipient)"
    );
    let response = reqwest::Client::new()
        .get(f.server.api(&format!("/filetransfer/{id}/download")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["code"], "BRO-00007",
        "not yet published, but the caller is a recipient"
    );
}

#[tokio::test]
async fn without_a_system_user_the_org_number_then_the_consumer_names_the_caller() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let org_number_wins = sign(
        &f.server,
        &json!({"iss": "broker-dev", "scope": READ, "exp": now() + 600, "urn:altinn:orgNumber": "222222222",
                "consumer": {"authority": "iso6523-actorid-upis", "ID": THIRD_PARTY}}),
    );
    assert_eq!(
        overview_status(&f.server, id, &org_number_wins).await.0,
        200
    );
    let consumer_only = sign(
        &f.server,
        &json!({"iss": "broker-dev", "scope": READ, "exp": now() + 600, "consumer": {"authority": "iso6523-actorid-upis", "ID": RECIPIENT}}),
    );
    assert_eq!(overview_status(&f.server, id, &consumer_only).await.0, 200);
    let third = sign(
        &f.server,
        &json!({"iss": "broker-dev", "scope": READ, "exp": now() + 600, "consumer": {"authority": "iso6523-actorid-upis", "ID": THIRD_PARTY}}),
    );
    assert_eq!(overview_status(&f.server, id, &third).await.0, 401);
}

#[tokio::test]
async fn a_caller_without_an_organisation_gets_400_bro_07001_as_service_owner_and_401_elsewhere() {
    let f = Fixture::new().await;
    let nobody = sign(
        &f.server,
        &json!({"iss": "broker-dev", "scope": format!("{SO_SCOPE} {WRITE} {READ}"), "exp": now() + 600}),
    );
    let http = reqwest::Client::new();
    let post = http
        .post(f.server.api("/serviceowner"))
        .bearer_auth(&nobody)
        .json(&json!({"name": "Nobody"}))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 400);
    assert_eq!(post.json::<Value>().await.unwrap()["code"], "BRO-07001");
    let get = http
        .get(f.server.api("/serviceowner"))
        .bearer_auth(&nobody)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 400);
    assert_eq!(get.json::<Value>().await.unwrap()["code"], "BRO-07001");

    let init = http
        .request(Method::POST, f.server.api("/filetransfer"))
        .bearer_auth(&nobody)
        .json(&f.initialize_body(&[RECIPIENT]))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status().as_u16(), 401);
    assert_eq!(init.json::<Value>().await.unwrap()["code"], "BRO-00006");
    let search = http
        .get(
            f.server
                .api(&format!("/filetransfer?resourceId={RESOURCE}")),
        )
        .bearer_auth(&nobody)
        .send()
        .await
        .unwrap();
    assert_eq!(search.status().as_u16(), 401);
    assert_eq!(search.json::<Value>().await.unwrap()["code"], "BRO-00006");
}
