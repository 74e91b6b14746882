//! End-user notifications: contact points, e-mail to a real SMTP server (aiosmtpd), SMS to a local
//! HTTP gateway, both surviving a broker restart between the event and the send, and nobody told of
//! another organisation's transfer.

use crate::common::*;
use crate::smtp_sink::{OwnedPort, Security, SmtpSink};
use crate::support::*;
use broker_protocol::client::BrokerClient;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SMS_TOKEN: &str = "sms-gateway-token";

/// An SMS gateway: records each POST (its authorization and JSON body) and answers `status`.
#[derive(Clone)]
pub(crate) struct Gateway {
    url: String,
    received: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    status: Arc<Mutex<u16>>,
}

impl Gateway {
    async fn start() -> Gateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = Gateway {
            url: format!("http://{}/sms", listener.local_addr().unwrap()),
            received: Arc::default(),
            status: Arc::new(Mutex::new(200)),
        };
        let state = gateway.clone();
        let app = axum::Router::new().route(
            "/sms",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let state = state.clone();
                    async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let status = *state.status.lock().unwrap();
                        if status == 200 {
                            let json = serde_json::from_slice(&body).unwrap_or_default();
                            state.received.lock().unwrap().push((auth, json));
                        }
                        axum::http::StatusCode::from_u16(status).unwrap()
                    }
                },
            ),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        gateway
    }

    fn answer(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }

    async fn wait_for(&self, n: usize) -> Vec<(String, serde_json::Value)> {
        for _ in 0..400 {
            let got = self.received.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} texts did not arrive");
    }
}

pub(crate) fn notifying(
    dir: &Path,
    smtp_port: u16,
    gateway: Option<&Gateway>,
) -> broker::config::Config {
    let mut config = test_config(dir);
    config.notify.smtp = Some(broker::config::SmtpConfig {
        host: "127.0.0.1".into(),
        port: smtp_port,
        tls: broker::config::SmtpTls::None,
        from: "Broker <broker@example.no>".into(),
        username: None,
        password: None,
        timeout_secs: 5,
        ca_file: None,
    });
    config.notify.sms = gateway.map(|g| broker::config::SmsConfig {
        url: g.url.clone(),
        body_template: broker::config::DEFAULT_SMS_TEMPLATE.into(),
        token: Some(SMS_TOKEN.into()),
        timeout_ms: 5_000,
    });
    config.events.retry_base_ms = 100;
    config.events.retry_max_secs = 1;
    config
}

pub(crate) async fn add_contact_point(
    client: &BrokerClient,
    body: serde_json::Value,
) -> reqwest::Response {
    client
        .request(reqwest::Method::POST, "/notifications/contactpoints")
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub(crate) async fn contact_point(client: &BrokerClient, body: serde_json::Value) -> i64 {
    let response = add_contact_point(client, body).await;
    assert_eq!(response.status(), 201);
    response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn an_email_tells_the_recipient_of_a_new_file_and_nobody_else_hears_of_it() {
    let temp = tempfile::tempdir().unwrap();
    let port = OwnedPort::new();
    let sink = SmtpSink::start(&port, &temp.path().join("mail.jsonl"), Security::Plain);
    let server = TestServer::start_with(notifying(&temp.path().join("b"), port.port, None)).await;
    let f = Fixture::on(server).await;
    let published = "no.altinn.broker.published";
    contact_point(
        &f.recipient,
        serde_json::json!({"emailAddress": "post@recipient.example.no", "typeFilter": published}),
    )
    .await;
    contact_point(
        &f.third_party,
        serde_json::json!({"emailAddress": "post@third.example.no"}),
    )
    .await;
    let id = f.publish(&[RECIPIENT], &payload(2_000, 3)).await;
    wait_for_status(
        &f.sender,
        id,
        broker_protocol::FileTransferStatus::Published,
        Duration::from_secs(30),
    )
    .await;

    let mail = &sink.wait_for(1).await[0];
    assert_eq!(
        mail["rcpt_tos"],
        serde_json::json!(["post@recipient.example.no"])
    );
    assert_eq!(mail["to"], "post@recipient.example.no");
    assert_eq!(mail["mail_from"], "broker@example.no");
    assert!(
        mail["tls"].is_null(),
        "tls = none sends in plain text: {mail}"
    );
    assert_eq!(
        mail["subject"],
        format!("New file from {SENDER}: report.pdf")
    );
    let body = mail["body"].as_str().unwrap();
    let link = format!("{}/broker/api/v1/filetransfer/{id}", f.server.url);
    assert!(body.contains(&link), "no link {link} in {body}");
    assert!(body.contains(&format!("Resource: {RESOURCE}")), "{body}");
    assert!(body.contains("File: report.pdf"), "{body}");

    // The third party is no party to the transfer: after the recipient's mail, still nothing for it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.messages().len(), 1, "{:?}", sink.messages());
}

#[tokio::test]
async fn email_and_sms_survive_a_restart_between_the_event_and_the_send() {
    let temp = tempfile::tempdir().unwrap();
    // The port is the test's from here on: refused until the SMTP server is handed it.
    let port = OwnedPort::new();
    let gateway = Gateway::start().await;
    gateway.answer(503);
    let config = notifying(&temp.path().join("b"), port.port, Some(&gateway));
    let f = Fixture::on(TestServer::start_with(config.clone()).await).await;
    let published = "no.altinn.broker.published";
    let mail = contact_point(
        &f.recipient,
        serde_json::json!({"emailAddress": "post@recipient.example.no", "typeFilter": published}),
    )
    .await;
    contact_point(
        &f.recipient,
        serde_json::json!({"mobileNumber": "+4799999999", "typeFilter": published,
            "resourceFilter": format!("urn:altinn:resource:{RESOURCE}")}),
    )
    .await;
    let id = f.publish(&[RECIPIENT], &payload(1_000, 4)).await;

    // Neither the SMTP server (not started) nor the gateway (503) takes the first attempts.
    let failed = async {
        for _ in 0..400 {
            let deliveries: serde_json::Value = f
                .recipient
                .request(
                    reqwest::Method::GET,
                    &format!("/notifications/contactpoints/{mail}/deliveries"),
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if deliveries[0]["attempts"].as_u64().unwrap_or(0) >= 1 {
                return deliveries[0].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no attempt was recorded");
    }
    .await;
    assert_eq!(failed["state"], "Pending", "{failed}");
    assert!(failed["lastError"].is_string(), "{failed}");

    let Fixture { server, .. } = f;
    let sink_out = temp.path().join("mail.jsonl");
    let server = server
        .restart_after_with(config, async {
            gateway.answer(200);
        })
        .await;
    let sink = SmtpSink::start(&port, &sink_out, Security::Plain);
    let f = Fixture::clients(server);

    let mail_got = &sink.wait_for(1).await[0];
    assert_eq!(mail_got["to"], "post@recipient.example.no");
    let texts = gateway.wait_for(1).await;
    let (auth, body) = &texts[0];
    assert_eq!(auth, &format!("Bearer {SMS_TOKEN}"));
    assert_eq!(body["to"], "+4799999999");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("report.pdf") && message.contains(SENDER),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}/broker/api/v1/filetransfer/{id}", f.server.url)),
        "{message} (the broker is at {})",
        f.server.url
    );
    // Past a retry interval, still one of each: a delivered message is not sent again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(gateway.received.lock().unwrap().len(), 1, "one text");
    assert_eq!(sink.messages().len(), 1, "one e-mail");
}

#[tokio::test]
async fn contact_points_are_refused_unless_valid_configured_and_the_callers_own() {
    let temp = tempfile::tempdir().unwrap();
    let port = OwnedPort::new();
    let server = TestServer::start_with(notifying(temp.path(), port.port, None)).await;
    let f = Fixture::on(server).await;
    for (body, code) in [
        (serde_json::json!({}), "BRO-09017"),
        (
            serde_json::json!({"emailAddress": "a@example.no", "mobileNumber": "+4799999999"}),
            "BRO-09017",
        ),
        (
            serde_json::json!({"emailAddress": "not an address"}),
            "BRO-09017",
        ),
        (
            serde_json::json!({"emailAddress": "a@example.no\r\nBcc: b@example.no"}),
            "BRO-09017",
        ),
        (serde_json::json!({"mobileNumber": "12"}), "BRO-09017"),
        // No SMS gateway is configured on this broker.
        (
            serde_json::json!({"mobileNumber": "+4799999999"}),
            "BRO-09016",
        ),
        (
            serde_json::json!({"emailAddress": "a@example.no", "resourceFilter": "never-configured"}),
            "BRO-00025",
        ),
    ] {
        expect_problem_response(add_contact_point(&f.recipient, body).await, 400, Some(code)).await;
    }
    let bad_type = add_contact_point(
        &f.recipient,
        serde_json::json!({"emailAddress": "a@example.no", "typeFilter": "no.such.type"}),
    )
    .await;
    assert_eq!(bad_type.status(), 400);

    let id = contact_point(
        &f.recipient,
        serde_json::json!({"emailAddress": "a@example.no"}),
    )
    .await;
    let list = |client: &BrokerClient| {
        let request = client.request(reqwest::Method::GET, "/notifications/contactpoints");
        async move {
            let listed: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            listed
        }
    };
    let listed = list(&f.recipient).await;
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["contactPoints"][0]["emailAddress"], "a@example.no");
    assert_eq!(
        list(&f.recipient_2).await["count"],
        0,
        "another organisation sees none of them"
    );
    let path = format!("/notifications/contactpoints/{id}");
    let delete = |client: &BrokerClient| client.request(reqwest::Method::DELETE, &path).send();
    let missing = expect_problem_response(
        delete(&f.recipient_2).await.unwrap(),
        404,
        Some("BRO-09020"),
    )
    .await;
    assert_eq!(
        missing["detail"], "The contact point was not found.",
        "{missing}"
    );
    let subscriber = f.server.client(RECIPIENT, "altinn:events.subscribe");
    let as_subscription = subscriber
        .request(reqwest::Method::GET, &format!("/subscriptions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(as_subscription.status(), 404, "not a webhook subscription");

    let write_only = f.server.client(RECIPIENT, WRITE);
    let refused = add_contact_point(
        &write_only,
        serde_json::json!({"emailAddress": "a@example.no"}),
    );
    assert_eq!(refused.await.status(), 403);
    let anonymous = f.server.anonymous();
    let refused = add_contact_point(
        &anonymous,
        serde_json::json!({"emailAddress": "a@example.no"}),
    );
    assert_eq!(refused.await.status(), 401);

    assert_eq!(delete(&f.recipient).await.unwrap().status(), 200);
    expect_problem_response(delete(&f.recipient).await.unwrap(), 404, Some("BRO-09020")).await;

    // An organisation has at most 20.
    for i in 0..20 {
        let body = serde_json::json!({"emailAddress": format!("p{i}@example.no")});
        contact_point(&f.recipient_2, body).await;
    }
    let one_more = serde_json::json!({"emailAddress": "p20@example.no"});
    expect_problem_response(
        add_contact_point(&f.recipient_2, one_more).await,
        400,
        Some("BRO-09018"),
    )
    .await;
}
