//! The second hardening round's findings (issue 23), each as a user meets it: SSRF through IPv6
//! forms of internal addresses, caps that hold under concurrent creation, resource ids that cannot
//! carry formulas or line breaks, the limits on tokens, and `/metrics` from IPv4-mapped loopback.
//! (The fan-out under 1,500 subscriptions is tests/hardening_fanout.rs; the daily summary's trusted
//! proxies are in tests/statistics.rs.)

use crate::common::*;
use crate::support::*;
use broker_protocol::subscriptions::SubscriptionRequest;
use reqwest::Method;
use uuid::Uuid;

const SUBSCRIBE: &str = "altinn:events.subscribe";

fn subscription(end_point: &str) -> SubscriptionRequest {
    SubscriptionRequest {
        end_point: Some(end_point.into()),
        resource_filter: Some(format!("urn:altinn:resource:{RESOURCE}")),
        ..Default::default()
    }
}

async fn fixture_with(edit: impl FnOnce(&mut broker::config::Config)) -> Fixture {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut config = test_config(&dir);
    edit(&mut config);
    Fixture::on(TestServer::start_with(config).await).await
}

#[tokio::test]
async fn in_production_ipv6_addresses_that_carry_an_internal_ipv4_address_are_refused() {
    let f =
        fixture_with(|c| c.registry.environment = broker::config::Environment::Production).await;
    let subscriber = f.server.client(RECIPIENT, SUBSCRIBE);
    for endpoint in [
        "http://[64:ff9b::a9fe:a9fe]/",   // NAT64 of 169.254.169.254
        "http://[64:ff9b::a00:1]/",       // NAT64 of 10.0.0.1
        "http://[64:ff9b:1::a9fe:a9fe]/", // NAT64 local use
        "http://[2002:a9fe:a9fe::]/",     // 6to4
        "http://[::a9fe:a9fe]/",          // IPv4-compatible
        "http://[::ffff:0:a9fe:a9fe]/",   // SIIT
        "http://[::ffff:a9fe:a9fe]/",     // IPv4-mapped
        "http://[64:ff9b::7f00:1]/",
        "http://[::127.0.0.1]/",
        "http://[2002:7f00:1::]/",
        "http://[::ffff:0:7f00:1]/",
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", // Teredo to 127.0.0.1
    ] {
        let refused = subscriber
            .create_subscription(&subscription(endpoint))
            .await;
        expect_problem(refused, 400, "BRO-09015");
    }
    assert_eq!(
        subscriber.subscriptions().await.unwrap().count,
        0,
        "nothing was stored"
    );
}

#[tokio::test]
async fn an_endpoint_longer_than_two_kilobytes_is_refused_and_one_just_under_is_not() {
    let f = fixture_with(|_| {}).await;
    let subscriber = f.server.client(RECIPIENT, SUBSCRIBE);
    let base = "http://127.0.0.1:9/";
    let fits = format!("{base}{}", "a".repeat(2048 - base.len()));
    subscriber
        .create_subscription(&subscription(&fits))
        .await
        .unwrap();
    let too_long = format!("{fits}a");
    let problem = expect_validation(
        subscriber
            .create_subscription(&subscription(&too_long))
            .await,
    );
    assert!(names_field(&problem, "endPoint"), "{problem:?}");
    let huge = format!("{base}{}", "a".repeat(100_000));
    expect_validation(subscriber.create_subscription(&subscription(&huge)).await);
    assert_eq!(subscriber.subscriptions().await.unwrap().count, 1);
}

#[tokio::test]
async fn concurrent_creations_never_pass_the_subscription_cap() {
    let f = fixture_with(|c| c.events.max_subscriptions_per_org = 5).await;
    let subscriber = f.server.client(RECIPIENT, SUBSCRIBE);
    let request = subscription("http://127.0.0.1:9/hook");
    let outcomes =
        futures::future::join_all((0..40).map(|_| subscriber.create_subscription(&request))).await;
    let created = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(created, 5, "exactly the cap was created");
    for refused in outcomes.into_iter().filter(|o| o.is_err()) {
        expect_problem(refused, 400, "BRO-09019");
    }
    assert_eq!(subscriber.subscriptions().await.unwrap().count, 5);
    // Another organisation has a cap of its own.
    f.server
        .client(RECIPIENT_2, SUBSCRIBE)
        .create_subscription(&request)
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_creations_never_pass_the_contact_point_cap() {
    let f = fixture_with(|c| {
        // A channel must be configured to create contact points; nothing is sent in this test.
        c.notify.smtp = Some(
            serde_json::from_value(
                serde_json::json!({"host": "127.0.0.1", "port": 9, "tls": "none"}),
            )
            .unwrap(),
        );
    })
    .await;
    let outcomes = futures::future::join_all((0..60).map(|i| {
        f.recipient
            .request(Method::POST, "/notifications/contactpoints")
            .json(&serde_json::json!({"emailAddress": format!("p{i}@example.no")}))
            .send()
    }))
    .await;
    let mut created = 0;
    for response in outcomes {
        let response = response.unwrap();
        if response.status() == 201 {
            created += 1;
        } else {
            expect_problem_response(response, 400, Some("BRO-09018")).await;
        }
    }
    assert_eq!(created, 20, "exactly the cap (20) was created");
    let listed: serde_json::Value = f
        .recipient
        .request(Method::GET, "/notifications/contactpoints")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["count"], 20);
}

#[tokio::test]
async fn resource_ids_are_letters_digits_dashes_and_underscores() {
    let f = Fixture::new().await;
    for bad in [
        "=HYPERLINK(%22http%2F%2Fevil%22)",
        "@SUM(1+1)",
        "+1+1",
        "a%2Cb%22c%0D%0Ad",
        "has%20space",
        "semi;colon",
    ] {
        let r = f
            .owner
            .request(Method::PUT, &format!("/resource/{bad}"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        expect_problem_response(r, 400, Some("BRO-09021")).await;
    }
    let too_long = "a".repeat(256);
    let r = f
        .owner
        .request(Method::PUT, &format!("/resource/{too_long}"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    expect_problem_response(r, 400, Some("BRO-09021")).await;
    // The positive control: the longest and the prefixed forms are accepted.
    for good in [
        "a".repeat(255),
        "urn:altinn:resource:Mixed-Case_9".to_string(),
    ] {
        f.owner
            .configure_resource(&good, &Default::default())
            .await
            .unwrap();
    }
    f.owner.resource("Mixed-Case_9").await.unwrap();
}

fn token_expired(f: &Fixture, ago: chrono::Duration) -> broker_protocol::client::BrokerClient {
    let token = broker::auth::dev_issuer::DevIssuer::load(&f.server.data_dir, "broker-dev")
        .unwrap()
        .mint(SENDER, WRITE, -ago)
        .unwrap();
    f.server.anonymous().with_token(token)
}

async fn tus_head(client: &broker_protocol::client::BrokerClient, id: Uuid) -> u16 {
    client
        .request(Method::HEAD, &crate::tus::tus_path(id))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn an_expired_token_continues_an_upload_only_within_the_upload_expiry() {
    let f = fixture_with(|c| c.server.tus_upload_expiry_secs = 3_600).await;
    let id = f.initialize(&[RECIPIENT]).await;
    assert_eq!(crate::tus::create(&f, id, 20).await.status(), 201);
    assert_eq!(
        tus_head(&token_expired(&f, chrono::Duration::minutes(59)), id).await,
        200,
        "expired within the upload expiry: still the sender's upload"
    );
    for ago in [chrono::Duration::minutes(61), chrono::Duration::days(365)] {
        let stale = token_expired(&f, ago);
        assert_eq!(tus_head(&stale, id).await, 401, "expired {ago} ago");
        let patch = stale
            .request(Method::PATCH, &crate::tus::tus_path(id))
            .header("tus-resumable", "1.0.0")
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", 0)
            .body(vec![1u8; 20])
            .send()
            .await
            .unwrap();
        assert_eq!(patch.status(), 401, "expired {ago} ago");
    }
    assert_eq!(
        crate::tus::head_offset(&f, id).await,
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn a_token_with_a_critical_header_is_refused_and_a_high_s_twin_is_the_same_token() {
    let f = Fixture::new().await;
    let issuer =
        broker::auth::dev_issuer::DevIssuer::load(&f.server.data_dir, "broker-dev").unwrap();
    let crit = issuer
        .mint_with_header(
            RECIPIENT,
            READ,
            chrono::Duration::hours(1),
            serde_json::json!({"crit": ["urn:example:policy"], "urn:example:policy": 1}),
        )
        .unwrap();
    let refused = f.server.anonymous().with_token(crit).search(&[]).await;
    assert_eq!(refused.unwrap_err().status(), Some(401));
    // The same claims without `crit` (positive control), and its signature's other form.
    let plain = issuer
        .mint_with_header(
            RECIPIENT,
            READ,
            chrono::Duration::hours(1),
            serde_json::json!({}),
        )
        .unwrap();
    let (head, signature) = plain.rsplit_once('.').unwrap();
    let twin = format!("{head}.{}", high_s_twin(signature));
    for token in [plain.clone(), twin] {
        f.server
            .anonymous()
            .with_token(token)
            .search(&[("resourceId", RESOURCE)])
            .await
            .unwrap();
    }
}

/// The signature `(r, n - s)` that verifies wherever `(r, s)` does.
fn high_s_twin(signature: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let raw = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let mut out = raw[..32].to_vec();
    let mut s = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = N[i] as i16 - raw[32 + i] as i16 - borrow;
        borrow = i16::from(d < 0);
        s[i] = d.rem_euclid(256) as u8;
    }
    out.extend_from_slice(&s);
    URL_SAFE_NO_PAD.encode(out)
}

#[tokio::test]
async fn metrics_answer_a_loopback_client_seen_as_an_ipv4_mapped_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // A dual-stack socket bound to the IPv4-mapped loopback address: its IPv4 peers arrive as
    // ::ffff:127.0.0.1, as they do on a broker listening on [::].
    config.server.listen = "[::ffff:127.0.0.1]:0".parse().unwrap();
    let server = TestServer::start_with(config).await;
    let r = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}
