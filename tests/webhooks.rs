//! Event subscriptions and webhook delivery, checked with a real receiver that verifies every
//! signature with `standardwebhooks` and parses every body with the CloudEvents SDK: who gets which
//! event, an outage across a broker restart, a dead endpoint beside a live one, dead letters and
//! redelivery, secret rotation, and who may subscribe to what.

use crate::common::*;
use crate::support::*;
use crate::webhook_receiver::{Receiver, VALIDATION};
use broker_protocol::client::BrokerClient;
use broker_protocol::events::OutboxEntry;
use broker_protocol::resource::ResourceUpdate;
use broker_protocol::subscriptions::{DeliveryState, Subscription, SubscriptionRequest};
use broker_protocol::FileTransferStatus;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use uuid::Uuid;

const SUBSCRIBE: &str = "altinn:events.subscribe";

/// Quick retries, so outages of a second or two are crossed within a test.
fn events_config(dir: &std::path::Path) -> broker::config::Config {
    let mut config = test_config(dir);
    config.events.retry_base_ms = 100;
    config.events.retry_max_secs = 1;
    config.events.poll_ms = 100;
    config.events.timeout_ms = 2_000;
    config
}

async fn fixture(config: impl FnOnce(&mut broker::config::Config)) -> (Fixture, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = events_config(dir.path());
    config(&mut c);
    (Fixture::on(TestServer::start_with(c).await).await, dir)
}

fn request(endpoint: String) -> SubscriptionRequest {
    SubscriptionRequest {
        end_point: Some(endpoint),
        resource_filter: Some(format!("urn:altinn:resource:{RESOURCE}")),
        ..Default::default()
    }
}

/// Subscribes `client` with the endpoint `name` of `receiver`, and waits until it is validated.
async fn subscribe(client: &BrokerClient, receiver: &mut Receiver, name: &str) -> Subscription {
    let created = client
        .create_subscription(&request(receiver.url(name)))
        .await
        .unwrap();
    receiver
        .set_secrets(
            name,
            &[created.secret.as_deref().expect("a secret on creation")],
        )
        .await;
    wait_validated(client, created.id).await;
    created
}

async fn wait_validated(client: &BrokerClient, id: i64) {
    for _ in 0..400 {
        if client.subscription(id).await.unwrap().validated {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("subscription {id} was not validated within 10 s");
}

fn digits(org: &str) -> &str {
    org.rsplit(':').next().unwrap()
}

/// The outbox entries of the given transfers.
async fn outbox_of(f: &Fixture, ids: &[Uuid]) -> Vec<OutboxEntry> {
    let ids: BTreeSet<String> = ids.iter().map(|i| i.to_string()).collect();
    f.maintenance
        .events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| ids.contains(&e.event.resourceinstance))
        .collect()
}

/// The entries addressed to `org` (their subject), in order.
fn addressed_to<'a>(outbox: &'a [OutboxEntry], org: &str) -> Vec<&'a OutboxEntry> {
    outbox
        .iter()
        .filter(|e| e.event.subject.ends_with(digits(org)))
        .collect()
}

fn ids_of(entries: &[&OutboxEntry]) -> Vec<String> {
    entries.iter().map(|e| e.event.id.to_string()).collect()
}

/// Every record is what a subscriber can trust: signed by its secret, a structured CloudEvent whose
/// `webhook-id` is the event id, and whose fields are those of the outbox event.
fn assert_signed_and_faithful(records: &[Value], outbox: &HashMap<String, &OutboxEntry>) {
    for r in records {
        assert!(
            r["parse_error"].is_null(),
            "a body the CloudEvents SDK refused: {r}"
        );
        assert!(
            !r["verified_with"].as_array().unwrap().is_empty(),
            "a signature that did not verify: {r}"
        );
        assert_eq!(
            r["content_type"], "application/json",
            "sent as Altinn Events sends it"
        );
        let id = r["webhook_id"].as_str().unwrap();
        assert_eq!(r["event"]["id"], id, "webhook-id is the event id");
        let Some(e) = outbox.get(id) else {
            panic!("an event that is not in the outbox: {r}")
        };
        let e = &e.event;
        assert_eq!(r["event"]["type"], e.type_);
        assert_eq!(r["event"]["subject"], e.subject);
        assert_eq!(
            r["event"]["alternativesubject"],
            format!("/organisation/{}", digits(&e.subject))
        );
        assert_eq!(
            r["event"]["resource"],
            format!("urn:altinn:resource:{RESOURCE}")
        );
        assert_eq!(r["event"]["resourceinstance"], e.resourceinstance);
        assert_eq!(r["data"]["Role"], format!("{:?}", e.data.role));
    }
}

#[tokio::test]
async fn each_of_the_eight_event_types_reaches_exactly_the_subscribers_it_is_addressed_to() {
    let (f, _dir) = fixture(|_| {}).await;
    let update = ResourceUpdate {
        file_transfer_time_to_live: Some("PT6S".into()),
        purge_file_transfer_grace_period: Some("PT1S".into()),
        ..Default::default()
    };
    f.owner.configure_resource(RESOURCE, &update).await.unwrap();
    let mut receiver = Receiver::start().await;
    let scoped = |org: &str, scopes: &str| f.server.client(org, scopes);
    let parties = [
        ("sender", SENDER, scoped(SENDER, SUBSCRIBE)),
        ("recipient", RECIPIENT, scoped(RECIPIENT, SUBSCRIBE)),
        ("recipient2", RECIPIENT_2, scoped(RECIPIENT_2, SUBSCRIBE)),
        ("third", THIRD_PARTY, scoped(THIRD_PARTY, SUBSCRIBE)),
        (
            "owner",
            SERVICE_OWNER,
            scoped(SERVICE_OWNER, &format!("{SO_SCOPE} {SUBSCRIBE}")),
        ),
    ];
    for (name, _, client) in &parties {
        subscribe(client, &mut receiver, name).await;
    }

    // Every recipient confirms A; only the first confirms B, which then expires; C fails its MD5.
    let a = f
        .publish(&[RECIPIENT, RECIPIENT_2], b"confirmed by all")
        .await;
    let b = f
        .publish(&[RECIPIENT, RECIPIENT_2], b"confirmed by one")
        .await;
    for (r, ids) in [(&f.recipient, vec![a, b]), (&f.recipient_2, vec![a])] {
        for id in ids {
            r.download(id, None).await.unwrap().bytes().await.unwrap();
            r.confirm_download(id).await.unwrap();
        }
    }
    let mut body = f.initialize_body(&[RECIPIENT]);
    body.checksum = Some(md5_hex(b"what was promised"));
    let c = f.sender.initialize(&body).await.unwrap();
    crate::tus::create(&f, c, 11).await;
    crate::tus::patch(&f, c, 0, b"what came  ").await;
    for id in [a, b] {
        wait_for_status(
            &f.sender,
            id,
            FileTransferStatus::Purged,
            Duration::from_secs(30),
        )
        .await;
    }
    // The failed transfer (its `uploadfailed` is among the eight types checked below) is purged at
    // its expiration too, maybe before A and B are; its events complete the set.
    wait_for_status(
        &f.sender,
        c,
        FileTransferStatus::Purged,
        Duration::from_secs(30),
    )
    .await;

    let outbox = outbox_of(&f, &[a, b, c]).await;
    let types: BTreeSet<&str> = outbox.iter().map(|e| e.event.type_.as_str()).collect();
    assert_eq!(
        types.len(),
        8,
        "the lifecycles emit all eight event types: {types:?}"
    );
    let by_id: HashMap<String, &OutboxEntry> =
        outbox.iter().map(|e| (e.event.id.to_string(), e)).collect();
    for (name, org, _) in &parties {
        let expected: Vec<&OutboxEntry> = outbox
            .iter()
            .filter(|e| *name == "owner" || e.event.subject.ends_with(digits(org)))
            .collect();
        let expected = ids_of(&expected);
        receiver
            .wait_for(name, &expected, Duration::from_secs(30))
            .await;
        let records = receiver.events_for(name);
        assert_signed_and_faithful(&records, &by_id);
        let got: BTreeSet<String> = records
            .iter()
            .map(|r| r["webhook_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            got,
            expected.into_iter().collect(),
            "{name} got exactly its events"
        );
        let first = receiver
            .records()
            .into_iter()
            .find(|r| r["name"] == *name)
            .unwrap();
        assert_eq!(
            first["event"]["type"], VALIDATION,
            "{name}'s endpoint was validated first"
        );
    }
    assert!(
        receiver.events_for("third").is_empty(),
        "nothing reaches another organisation"
    );
    let owner_types: BTreeSet<String> = receiver
        .events_for("owner")
        .iter()
        .map(|r| r["event"]["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(owner_types.len(), 8, "the service owner sees every type");
}

#[tokio::test]
async fn an_outage_across_a_broker_restart_loses_nothing_and_keeps_each_transfer_in_order() {
    let (f, dir) = fixture(|_| {}).await;
    let mut receiver = Receiver::start().await;
    let subscriber = f.server.client(SENDER, SUBSCRIBE);
    let sub = subscribe(&subscriber, &mut receiver, "s").await;
    receiver.answer("s", 503).await;
    let mut ids = vec![];
    for i in 0..3 {
        ids.push(f.publish(&[RECIPIENT], &payload(1000, i)).await);
    }
    history_until(&subscriber, sub.id, "the receiver's 503 recorded", |h| {
        h.iter().any(|d| d.last_status == Some(503))
    })
    .await;
    receiver.stop().await;
    let Fixture { server, .. } = f;
    let server = server.restart_with(events_config(dir.path())).await;
    let restarted = chrono::Utc::now();
    let f = Fixture::clients(server);
    let subscriber = f.server.client(SENDER, SUBSCRIBE);
    // The restarted broker meets the outage too: an attempt that got no answer (refused).
    history_until(
        &subscriber,
        sub.id,
        "an unanswered attempt after the restart",
        |h| {
            h.iter().any(|d| {
                d.last_attempt.is_some_and(|at| at > restarted)
                    && d.last_status.is_none()
                    && d.last_error.is_some()
            })
        },
    )
    .await;
    receiver.restart().await;

    let outbox = outbox_of(&f, &ids).await;
    let mine = addressed_to(&outbox, SENDER);
    receiver
        .wait_for("s", &ids_of(&mine), Duration::from_secs(40))
        .await;
    let records = receiver.events_for("s");
    assert!(
        records.iter().any(|r| r["answered"] == 503),
        "the outage was seen"
    );
    let by_id: HashMap<String, &OutboxEntry> =
        outbox.iter().map(|e| (e.event.id.to_string(), e)).collect();
    assert_signed_and_faithful(&records, &by_id);
    // Each transfer's events arrive in order: an event is first sent only after the one before it
    // (of the same transfer) was answered 2xx.
    for id in &ids {
        let events: Vec<&&OutboxEntry> = mine
            .iter()
            .filter(|e| e.event.resourceinstance == id.to_string())
            .collect();
        for pair in events.windows(2) {
            let accepted = records
                .iter()
                .position(|r| {
                    r["webhook_id"] == pair[0].event.id.to_string() && r["answered"] == 200
                })
                .unwrap();
            let first_sent = records
                .iter()
                .position(|r| r["webhook_id"] == pair[1].event.id.to_string())
                .unwrap();
            assert!(
                accepted < first_sent,
                "{} went before {} was delivered",
                pair[1].event.type_,
                pair[0].event.type_
            );
        }
    }
    let history = settled_history(&subscriber, sub.id).await;
    assert_eq!(history.len(), mine.len());
    assert!(history.iter().all(|d| d.state == DeliveryState::Delivered));
    assert!(
        history.iter().any(|d| d.attempts > 1),
        "retries are in the history"
    );
}

/// A p99 of `values` (nearest rank).
fn p99(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[((values.len() as f64 * 0.99).ceil() as usize).saturating_sub(1)]
}

#[tokio::test]
async fn a_dead_endpoint_backs_off_without_delaying_a_live_one() {
    // Timed (the live endpoint's p99 lag): alone on the cores.
    let _alone = cpu_exclusive().await;
    let (f, _dir) = fixture(|_| {}).await;
    let mut receiver = Receiver::start().await;
    let live = f.server.client(SENDER, SUBSCRIBE);
    let owner = f
        .server
        .client(SERVICE_OWNER, &format!("{SO_SCOPE} {SUBSCRIBE}"));
    subscribe(&live, &mut receiver, "live").await;
    let dead = subscribe(&owner, &mut receiver, "dead").await;
    receiver.answer("dead", 0).await;
    let mut ids = vec![];
    for i in 0..20 {
        ids.push(f.publish(&[RECIPIENT], &payload(500, 100 + i)).await);
    }
    let outbox = outbox_of(&f, &ids).await;
    let mine = addressed_to(&outbox, SENDER);
    receiver
        .wait_for("live", &ids_of(&mine), Duration::from_secs(20))
        .await;
    let lags: Vec<f64> = receiver
        .events_for("live")
        .iter()
        .map(|r| {
            let sent = chrono::DateTime::parse_from_rfc3339(&outbox_time(&outbox, r)).unwrap();
            r["received"].as_f64().unwrap() - sent.timestamp_micros() as f64 / 1e6
        })
        .collect();
    let worst = p99(lags);
    assert!(worst < 1.0, "the live endpoint's p99 lag is {worst:.3} s");
    // Its attempts time out (2 s here) and are rescheduled, never delivered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let history = owner.deliveries(dead.id).await.unwrap();
        assert!(!history.is_empty());
        assert!(
            history.iter().all(|d| d.state == DeliveryState::Pending),
            "nothing reached the dead endpoint"
        );
        let backing_off = history
            .iter()
            .find(|d| d.attempts >= 1 && d.next_attempt.is_some());
        if let Some(d) = backing_off {
            assert!(d.last_status.is_none() && d.last_error.is_some(), "{d:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt timed out: {history:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn outbox_time(outbox: &[OutboxEntry], record: &Value) -> String {
    let id = record["webhook_id"].as_str().unwrap();
    let e = outbox
        .iter()
        .find(|e| e.event.id.to_string() == id)
        .unwrap();
    broker_protocol::time::format(&e.event.time)
}

#[tokio::test]
async fn a_dead_lettered_delivery_is_sent_again_on_redeliver() {
    let (f, _dir) = fixture(|c| c.events.retry_for_secs = 0).await;
    let mut receiver = Receiver::start().await;
    let subscriber = f.server.client(SENDER, SUBSCRIBE);
    let sub = subscribe(&subscriber, &mut receiver, "s").await;
    receiver.answer("s", 500).await;
    let id = f.initialize(&[RECIPIENT]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let history = subscriber.deliveries(sub.id).await.unwrap();
        if history
            .iter()
            .any(|d| d.state == DeliveryState::DeadLettered)
        {
            assert_eq!(history[0].last_status, Some(500));
            assert!(history[0].next_attempt.is_none());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not dead-lettered: {history:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.answer("s", 200).await;
    assert_eq!(subscriber.redeliver(sub.id).await.unwrap(), 1);
    wait_for_first_event(&f, &receiver, "s", id).await;
    // The broker records the 2xx just after the receiver sent it.
    let history = settled_history(&subscriber, sub.id).await;
    assert_eq!(history[0].state, DeliveryState::Delivered);
}

/// Waits (up to 10 s) until `name` accepted the first event of transfer `id`.
async fn wait_for_first_event(f: &Fixture, receiver: &Receiver, name: &str, id: Uuid) {
    let events = outbox_of(f, &[id]).await;
    let first = events[0].event.id.to_string();
    receiver
        .wait_for(name, &[first], Duration::from_secs(10))
        .await;
}

/// Polls a subscription's delivery history (up to 20 s) until `done` holds; returns it.
async fn history_until(
    client: &BrokerClient,
    id: i64,
    what: &str,
    done: impl Fn(&[broker_protocol::subscriptions::Delivery]) -> bool,
) -> Vec<broker_protocol::subscriptions::Delivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let history = client.deliveries(id).await.unwrap();
        if done(&history) {
            return history;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 20 s: {what}; the history: {history:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many times the broker asked `name`'s endpoint to validate.
fn validations_of(receiver: &Receiver, name: &str) -> usize {
    receiver
        .records()
        .iter()
        .filter(|r| r["name"] == name && r["event"]["type"] == VALIDATION)
        .count()
}

/// A subscription's delivery history once no delivery is pending (up to 10 s).
async fn settled_history(
    client: &BrokerClient,
    id: i64,
) -> Vec<broker_protocol::subscriptions::Delivery> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let history = client.deliveries(id).await.unwrap();
        let pending = history.iter().any(|d| d.state == DeliveryState::Pending);
        if !pending || tokio::time::Instant::now() > deadline {
            return history;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn after_a_secret_rotation_deliveries_carry_both_signatures() {
    let (f, _dir) = fixture(|_| {}).await;
    let mut receiver = Receiver::start().await;
    let subscriber = f.server.client(SENDER, SUBSCRIBE);
    let sub = subscribe(&subscriber, &mut receiver, "s").await;
    let old = sub.secret.unwrap();
    let rotated = subscriber.rotate_secret(sub.id).await.unwrap();
    let new = rotated.secret.unwrap();
    assert_ne!(old, new);
    assert!(
        subscriber
            .subscription(sub.id)
            .await
            .unwrap()
            .secret
            .is_none(),
        "a secret is shown only once"
    );
    receiver.set_secrets("s", &[&new]).await;
    let id = f.initialize(&[RECIPIENT]).await;
    wait_for_first_event(&f, &receiver, "s", id).await;
    let record = receiver.events_for("s").pop().unwrap();
    assert_eq!(record["signatures"].as_array().unwrap().len(), 2);
    assert_eq!(record["verified_with"][0], new);
}

#[tokio::test]
async fn subscriptions_naming_another_organisation_are_forbidden_and_others_are_invisible() {
    let (f, _dir) = fixture(|_| {}).await;
    let subscriber = f.server.client(RECIPIENT, SUBSCRIBE);
    let endpoint = "http://127.0.0.1:9/hook".to_string();
    for other in [
        SubscriptionRequest {
            subject_filter: Some(format!(
                "urn:altinn:organization:identifier-no:{}",
                digits(SENDER)
            )),
            ..request(endpoint.clone())
        },
        SubscriptionRequest {
            alternative_subject_filter: Some(format!("/organisation/{}", digits(SENDER))),
            ..request(endpoint.clone())
        },
    ] {
        expect_problem(
            subscriber.create_subscription(&other).await,
            403,
            "BRO-09014",
        );
    }
    // The resource's owner without the service-owner scope is an ordinary party.
    let owner_as_party = f.server.client(SERVICE_OWNER, SUBSCRIBE);
    let all_subjects = SubscriptionRequest {
        subject_filter: Some(format!(
            "urn:altinn:organization:identifier-no:{}",
            digits(SENDER)
        )),
        ..request(endpoint.clone())
    };
    expect_problem(
        owner_as_party.create_subscription(&all_subjects).await,
        403,
        "BRO-09014",
    );
    let owner = f
        .server
        .client(SERVICE_OWNER, &format!("{SO_SCOPE} {SUBSCRIBE}"));
    owner.create_subscription(&all_subjects).await.unwrap();

    let mine = subscriber
        .create_subscription(&request(endpoint.clone()))
        .await
        .unwrap();
    assert_eq!(
        mine.consumer,
        format!("/organisation/{}", digits(RECIPIENT))
    );
    assert_eq!(
        mine.subject_filter.as_deref(),
        Some(
            format!(
                "urn:altinn:organization:identifier-no:{}",
                digits(RECIPIENT)
            )
            .as_str()
        ),
        "the subject filter defaults to the caller"
    );
    let stranger = f.server.client(THIRD_PARTY, SUBSCRIBE);
    expect_problem(stranger.subscription(mine.id).await, 404, "BRO-09013");
    expect_problem(
        stranger.delete_subscription(mine.id).await,
        404,
        "BRO-09013",
    );
    expect_problem(stranger.deliveries(mine.id).await, 404, "BRO-09013");
    assert_eq!(stranger.subscriptions().await.unwrap().count, 0);
    assert_eq!(subscriber.subscriptions().await.unwrap().count, 1);
    let without_scope = f.server.client(RECIPIENT, READ);
    let refused = without_scope.subscriptions().await.unwrap_err();
    assert_eq!(refused.status(), Some(403));
    assert_eq!(
        f.server
            .anonymous()
            .subscriptions()
            .await
            .unwrap_err()
            .status(),
        Some(401)
    );

    let missing_resource = SubscriptionRequest {
        resource_filter: None,
        ..request(endpoint.clone())
    };
    expect_validation(subscriber.create_subscription(&missing_resource).await);
    let bad_type = SubscriptionRequest {
        type_filter: Some("no.altinn.broker.nonsense".into()),
        ..request(endpoint.clone())
    };
    expect_validation(subscriber.create_subscription(&bad_type).await);
    let unknown = SubscriptionRequest {
        resource_filter: Some("urn:altinn:resource:not-configured".into()),
        ..request(endpoint.clone())
    };
    expect_problem(
        subscriber.create_subscription(&unknown).await,
        400,
        "BRO-00025",
    );
    subscriber.delete_subscription(mine.id).await.unwrap();
    assert_eq!(subscriber.subscriptions().await.unwrap().count, 0);
}

#[tokio::test]
async fn in_production_endpoints_on_loopback_or_private_addresses_are_refused() {
    let (f, _dir) =
        fixture(|c| c.registry.environment = broker::config::Environment::Production).await;
    let subscriber = f.server.client(RECIPIENT, SUBSCRIBE);
    for endpoint in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.0.0.7/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "ftp://example.com/hook",
        "not a url",
    ] {
        expect_problem(
            subscriber
                .create_subscription(&request(endpoint.into()))
                .await,
            400,
            "BRO-09015",
        );
    }
    assert_eq!(subscriber.subscriptions().await.unwrap().count, 0);
}

#[tokio::test]
async fn the_altinn_events_path_serves_the_same_subscriptions() {
    let (f, _dir) = fixture(|_| {}).await;
    let token = f.server.token(RECIPIENT, SUBSCRIBE);
    let http = reqwest::Client::new();
    let (_, _, created) = create_on(
        &f,
        "/events/api/v1",
        &token,
        serde_json::json!({
            "endPoint": "http://127.0.0.1:9/hook",
            "resourceFilter": format!("urn:altinn:resource:{RESOURCE}"),
            "typeFilter": "no.altinn.broker.published",
        }),
    )
    .await;
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let listed: Value = http
        .get(format!("{}/broker/api/v1/subscriptions", f.server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["count"], 1);
    let one = &listed["subscriptions"][0];
    assert_eq!(one["id"], created["id"]);
    for field in [
        "endPoint",
        "resourceFilter",
        "typeFilter",
        "consumer",
        "createdBy",
        "created",
        "validated",
    ] {
        assert!(!one[field].is_null(), "{field} is present");
    }
    assert!(one["secret"].is_null(), "the secret is not listed");
}

/// A publisher standing in for Altinn Events: records each POST's path, bearer token and body.
async fn publisher() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(String, String, Value)>>>,
) {
    use axum::extract::{Request, State};
    type Log = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Value)>>>;
    async fn record(State(log): State<Log>, request: Request) -> axum::http::StatusCode {
        let path = request.uri().path().to_string();
        let auth = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = axum::body::to_bytes(request.into_body(), 1 << 20)
            .await
            .unwrap();
        log.lock()
            .unwrap()
            .push((path, auth, serde_json::from_slice(&body).unwrap()));
        axum::http::StatusCode::OK
    }
    let log: Log = Default::default();
    let app = axum::Router::new().fallback(record).with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, log)
}

#[tokio::test]
async fn with_forwarding_configured_every_event_is_published_to_the_events_api_with_the_token() {
    let (url, log) = publisher().await;
    let (f, _dir) = fixture(|c| {
        c.events.forward_url = Some(url.clone());
        c.events.forward_token = Some("publisher-token".into());
    })
    .await;
    let id = f.publish(&[RECIPIENT], b"forwarded").await;
    let outbox = outbox_of(&f, &[id]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while log.lock().unwrap().len() < outbox.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every event was forwarded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = log.lock().unwrap().clone();
    let forwarded: BTreeSet<String> = log
        .iter()
        .map(|(_, _, e)| e["id"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = outbox.iter().map(|e| e.event.id.to_string()).collect();
    assert_eq!(forwarded, expected);
    for (path, auth, event) in &log {
        assert_eq!(path, "/events/api/v1/events");
        assert_eq!(auth, "Bearer publisher-token");
        assert_eq!(event["specversion"], "1.0");
    }
}

#[tokio::test]
async fn events_committed_before_the_endpoint_validates_wait_for_it_and_then_arrive() {
    let (f, _dir) = fixture(|_| {}).await;
    let mut receiver = Receiver::start().await;
    receiver.answer("late", 503).await;
    let subscriber = f.server.client(SENDER, SUBSCRIBE);
    let created = subscriber
        .create_subscription(&request(receiver.url("late")))
        .await
        .unwrap();
    receiver
        .set_secrets("late", &[created.secret.as_deref().unwrap()])
        .await;
    let id = f.publish(&[RECIPIENT], b"held").await;
    let outbox = outbox_of(&f, &[id]).await;
    let mine = addressed_to(&outbox, SENDER);
    // The transfer's events reach the subscription and wait there...
    history_until(&subscriber, created.id, "the events routed", |h| {
        h.len() == mine.len()
    })
    .await;
    // ...while the endpoint is asked to validate twice more: its worker went round with them
    // pending, and sent none of them.
    let asked = validations_of(&receiver, "late");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while validations_of(&receiver, "late") < asked + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "validation was not retried"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        receiver.events_for("late").is_empty(),
        "nothing is sent before the endpoint validates"
    );
    let held = subscriber.deliveries(created.id).await.unwrap();
    assert!(
        held.iter()
            .all(|d| d.state == DeliveryState::Pending && d.attempts == 0),
        "{held:?}"
    );
    assert!(!subscriber.subscription(created.id).await.unwrap().validated);
    receiver.answer("late", 200).await;
    wait_validated(&subscriber, created.id).await;
    receiver
        .wait_for("late", &ids_of(&mine), Duration::from_secs(10))
        .await;
}

#[tokio::test]
async fn a_redirecting_endpoint_is_not_followed_and_its_delivery_is_retried() {
    let (f, _dir) = fixture(|_| {}).await;
    let mut receiver = Receiver::start().await;
    let subscriber = f.server.client(SENDER, SUBSCRIBE);
    let sub = subscribe(&subscriber, &mut receiver, "moved").await;
    receiver
        .set_secrets("moved-redirected", &[sub.secret.as_deref().unwrap()])
        .await;
    receiver.answer("moved", 307).await;
    f.initialize(&[RECIPIENT]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let history = subscriber.deliveries(sub.id).await.unwrap();
        if history.iter().any(|d| d.attempts >= 2) {
            assert_eq!(history[0].last_status, Some(307));
            assert_eq!(
                history[0].state,
                DeliveryState::Pending,
                "a redirect is not a delivery"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not retried: {history:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        receiver
            .records()
            .iter()
            .all(|r| r["name"] != "moved-redirected"),
        "the redirect was followed"
    );
}

/// Creates a subscription through the API at `base` (Altinn Events' `/events/api/v1` or Broker's
/// `/broker/api/v1`) with `body`; the status, `Location` and body.
async fn create_on(f: &Fixture, base: &str, token: &str, body: Value) -> (u16, String, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{base}/subscriptions", f.server.url))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location, response.json().await.unwrap())
}

fn assert_no_null_fields(subscription: &Value) {
    for (field, value) in subscription.as_object().unwrap() {
        assert!(!value.is_null(), "{field} is sent as null: {subscription}");
    }
}

#[tokio::test]
async fn a_subscriber_written_from_altinns_documentation_gets_json_it_can_parse_and_altinns_shapes()
{
    let (f, _dir) = fixture(|_| {}).await;
    let mut receiver = Receiver::start().await;
    // Like Express's express.json(): a body of any other media type is not read (415 here).
    receiver.accept_only("plain", "application/json").await;
    let token = f.server.token(RECIPIENT, SUBSCRIBE);
    let (status, location, created) = create_on(
        &f,
        "/events/api/v1",
        &token,
        serde_json::json!({
            "endPoint": receiver.url("plain"),
            "resourceFilter": format!("urn:altinn:resource:{RESOURCE}"),
            "includeSubunits": true,
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        location,
        format!("/events/api/v1/subscriptions/{id}"),
        "named under the path the client used"
    );
    assert_eq!(created["includeSubunits"], true);
    assert!(created.get("sourceFilter").is_none() && created.get("typeFilter").is_none());
    assert_no_null_fields(&created);
    receiver
        .set_secrets("plain", &[created["secret"].as_str().unwrap()])
        .await;
    let subscriber = f.server.client(RECIPIENT, SUBSCRIBE);
    wait_validated(&subscriber, id).await;
    let read: Value = reqwest::Client::new()
        .get(format!("{}/events/api/v1/subscriptions/{id}", f.server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["includeSubunits"], true);
    assert_eq!(read["validated"], true);
    assert_no_null_fields(&read);

    // (Asked before the receiver knew the secret, it answered 401 until it did.)
    let validation = receiver
        .records()
        .into_iter()
        .find(|r| r["name"] == "plain" && r["event"]["type"] == VALIDATION && r["answered"] == 200)
        .expect("the validation event was taken");
    assert_eq!(validation["content_type"], "application/json");
    assert!(
        validation["event"]["source"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/events/api/v1/subscriptions/{id}")),
        "the validation event's source names the path the client used: {validation}"
    );

    let transfer = f.publish(&[RECIPIENT], b"for a plain JSON receiver").await;
    let outbox = outbox_of(&f, &[transfer]).await;
    let mine = addressed_to(&outbox, RECIPIENT);
    receiver
        .wait_for("plain", &ids_of(&mine), Duration::from_secs(10))
        .await;
    let by_id: HashMap<String, &OutboxEntry> =
        mine.iter().map(|e| (e.event.id.to_string(), *e)).collect();
    assert_signed_and_faithful(&receiver.events_for("plain"), &by_id);

    // Altinn Events takes a resource filter only as a URN.
    let (status, _, problem) = create_on(
        &f,
        "/events/api/v1",
        &token,
        serde_json::json!({"endPoint": receiver.url("bare"), "resourceFilter": RESOURCE}),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    let message = problem["errors"]["resourceFilter"][0].as_str().unwrap();
    assert!(message.contains("must be a valid urn"), "{problem}");
    // Through Broker's own path the subscription is named there.
    let (status, location, created) = create_on(
        &f,
        "/broker/api/v1",
        &token,
        serde_json::json!({
            "endPoint": receiver.url("own"),
            "resourceFilter": format!("urn:altinn:resource:{RESOURCE}"),
        }),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        location,
        format!("/broker/api/v1/subscriptions/{}", created["id"])
    );
    assert_eq!(created["includeSubunits"], false, "false unless asked for");
}

#[tokio::test]
async fn the_cloudevents_media_type_is_sent_when_configured() {
    let (f, _dir) = fixture(|c| {
        c.events.webhook_content_type = broker::config::WebhookContentType::CloudEvents
    })
    .await;
    let mut receiver = Receiver::start().await;
    receiver
        .accept_only("structured", "application/cloudevents+json")
        .await;
    let subscriber = f.server.client(SENDER, SUBSCRIBE);
    subscribe(&subscriber, &mut receiver, "structured").await;
    let transfer = f.publish(&[RECIPIENT], b"structured").await;
    let outbox = outbox_of(&f, &[transfer]).await;
    let mine = addressed_to(&outbox, SENDER);
    receiver
        .wait_for("structured", &ids_of(&mine), Duration::from_secs(10))
        .await;
    assert!(receiver
        .records()
        .iter()
        .filter(|r| r["name"] == "structured")
        .all(|r| r["content_type"] == "application/cloudevents+json"));
}
