//! JSON input and output rules of spec 0 and 1.2: case-insensitive property names, unknown properties
//! ignored, numbers as strings, enums by name or number, URN forms of orgs and resources, validation
//! problems, and `null` written out.

use crate::common::*;
use crate::support::*;
use broker_protocol::client::{BrokerClient, ClientError};
use broker_protocol::FileTransferStatus;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

async fn post_initialize(client: &BrokerClient, body: &Value) -> Result<Uuid, ClientError> {
    let response = client
        .request(Method::POST, "/filetransfer")
        .json(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    if status != 200 {
        return Err(ClientError::Status {
            status,
            problem: serde_json::from_str(&text).ok(),
            body: text,
        });
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    Ok(v["fileTransferId"].as_str().unwrap().parse().unwrap())
}

fn valid_body() -> Value {
    json!({
        "fileName": "report.pdf", "resourceId": RESOURCE, "sendersFileTransferReference": "ref",
        "sender": SENDER, "recipients": [RECIPIENT]
    })
}

#[tokio::test]
async fn pascal_case_and_upper_case_property_names_bind() {
    let f = Fixture::new().await;
    let body = json!({
        "FileName": "Pascal.pdf", "RESOURCEID": RESOURCE, "SendersFileTransferReference": "REF",
        "SENDER": SENDER, "Recipients": [RECIPIENT], "PropertyList": {"MixedKey": "v"}, "Checksum": null
    });
    let id = post_initialize(&f.sender, &body).await.unwrap();
    let s = f.sender.overview(id).await.unwrap().summary;
    assert_eq!(s.file_name, "Pascal.pdf");
    assert_eq!(s.resource_id, RESOURCE);
    assert_eq!(s.senders_file_transfer_reference.as_deref(), Some("REF"));
    assert_eq!(s.recipients[0].recipient, RECIPIENT);
    assert_eq!(
        s.property_list.get("MixedKey").map(String::as_str),
        Some("v"),
        "property keys are kept as sent"
    );
}

#[tokio::test]
async fn unknown_properties_are_ignored() {
    let f = Fixture::new().await;
    let mut body = valid_body();
    body["unknownField"] = json!(17);
    body["nested"] = json!({"deep": [1, 2, 3]});
    let id = post_initialize(&f.sender, &body).await.unwrap();
    assert_eq!(
        f.sender.overview(id).await.unwrap().summary.file_name,
        "report.pdf"
    );
}

#[tokio::test]
async fn numbers_sent_as_strings_are_accepted_on_resource_configuration() {
    let f = Fixture::new().await;
    let response = f
        .owner
        .request(Method::PUT, &format!("/resource/{RESOURCE}"))
        .json(&json!({"maxFileTransferSize": "1112391230", "ExternalServiceCodeLegacy": "4711", "externalServiceEditionCodeLegacy": "2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let raw: Value = f
        .owner
        .request(Method::GET, &format!("/resource/{RESOURCE}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        raw["maxFileTransferSize"],
        json!(1112391230),
        "written back as a number"
    );
    assert_eq!(raw["externalServiceEditionCodeLegacy"], json!(2));
    assert_eq!(raw["externalServiceCodeLegacy"], "4711");

    let response = f
        .owner
        .request(Method::PUT, &format!("/resource/{RESOURCE}"))
        .json(&json!({"maxFileTransferSize": "a lot"}))
        .send()
        .await
        .unwrap();
    expect_problem_response(response, 400, None).await;
}

#[tokio::test]
async fn search_enums_are_accepted_by_name_in_any_case_or_by_number() {
    let f = Fixture::new().await;
    let published = f.publish(&[RECIPIENT], b"p").await;
    f.initialize(&[RECIPIENT]).await;
    for status in ["Published", "published", "PUBLISHED", "3"] {
        let found = f
            .sender
            .search(&[("resourceId", RESOURCE), ("status", status)])
            .await
            .unwrap();
        assert_eq!(found, vec![published], "status={status}");
    }
    let found = f
        .recipient
        .search(&[
            ("resourceId", RESOURCE),
            ("status", "3"),
            ("recipientStatus", "0"),
        ])
        .await
        .unwrap();
    assert_eq!(found, vec![published]);
}

#[tokio::test]
async fn urn_forms_of_sender_recipients_and_resource_are_accepted() {
    let f = Fixture::new().await;
    let body = json!({
        "fileName": "urn.pdf", "resourceId": format!("urn:altinn:resource:{RESOURCE}"), "sendersFileTransferReference": "ref",
        "sender": "urn:altinn:organization:identifier-no:111111111",
        "recipients": ["urn:altinn:organization:identifier-no:222222222", RECIPIENT_2]
    });
    let id = post_initialize(&f.sender, &body).await.unwrap();
    let s = f.sender.overview(id).await.unwrap().summary;
    assert_eq!(s.resource_id, RESOURCE, "the urn prefix is stripped");
    assert_eq!(
        s.sender, "urn:altinn:organization:identifier-no:111111111",
        "the sender is echoed as given"
    );
    let recipients: Vec<&str> = s.recipients.iter().map(|r| r.recipient.as_str()).collect();
    assert_eq!(
        recipients,
        vec![RECIPIENT, RECIPIENT_2],
        "recipients are stored as 0192:NNN"
    );
    f.sender.upload(id, b"urn".to_vec()).await.unwrap();
    assert_eq!(
        &f.recipient
            .download(id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()[..],
        b"urn"
    );
    let events = events_of(&f.maintenance, id).await;
    // initialized (sender), published (sender and both recipients)
    assert_eq!(events.len(), 4, "{events:?}");
    for e in events {
        assert!(
            e.event
                .subject
                .starts_with("urn:altinn:organization:identifier-no:"),
            "{:?}",
            e.event
        );
        assert_eq!(
            e.event.subject.rsplit(':').next().unwrap().len(),
            9,
            "{:?}",
            e.event
        );
        assert_eq!(e.event.resource, format!("urn:altinn:resource:{RESOURCE}"));
    }
}

#[tokio::test]
async fn invalid_fields_give_a_validation_problem_naming_the_field() {
    let f = Fixture::new().await;
    let eleven: serde_json::Map<String, Value> =
        (0..11).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: [(&str, Value, &str); 18] = [
        ("a missing fileName", json!(null), "fileName"),
        ("an empty fileName", json!(""), "fileName"),
        (
            "a 256-character fileName",
            json!("x".repeat(256)),
            "fileName",
        ),
        ("a missing resourceId", json!(null), "resourceId"),
        ("a resourceId with a colon", json!("a:b"), "resourceId"),
        (
            "an empty sendersFileTransferReference",
            json!(""),
            "sendersFileTransferReference",
        ),
        ("a missing sender", json!(null), "sender"),
        (
            "a sender without country code",
            json!("111111111"),
            "sender",
        ),
        ("an 8-digit sender", json!("0192:11111111"), "sender"),
        ("missing recipients", json!(null), "recipients"),
        ("no recipients", json!([]), "recipients"),
        ("a malformed recipient", json!(["0192:2222"]), "recipients"),
        ("a short checksum", json!("abc"), "checksum"),
        (
            "an upper-case checksum",
            json!("D41D8CD98F00B204E9800998ECF8427E"),
            "checksum",
        ),
        (
            "a non-hex checksum",
            json!("z41d8cd98f00b204e9800998ecf8427e"),
            "checksum",
        ),
        ("11 properties", Value::Object(eleven), "propertyList"),
        (
            "a 51-character property key",
            json!({"k".repeat(51): "v"}),
            "propertyList",
        ),
        (
            "a 3001-character property value",
            json!({"k": "v".repeat(3001)}),
            "propertyList",
        ),
    ];
    let mut failures = Vec::new();
    for (what, value, field) in cases {
        let mut body = valid_body();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(field);
        } else {
            body[field] = value;
        }
        match post_initialize(&f.sender, &body).await {
            Err(ClientError::Status {
                status: 400,
                problem: Some(p),
                body,
            }) => {
                if p.code.is_some() || !names_field(&p, field) {
                    failures.push(format!("{what}: {body}"));
                }
            }
            other => failures.push(format!(
                "{what}: expected a 400 validation problem, got {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(
        f.sender
            .search(&[("resourceId", RESOURCE)])
            .await
            .unwrap()
            .is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn the_limits_of_the_fields_themselves_are_accepted() {
    let f = Fixture::new().await;
    let ten: serde_json::Map<String, Value> = (0..10)
        .map(|i| (format!("{i}{}", "k".repeat(49)), json!("v".repeat(3000))))
        .collect();
    let mut body = valid_body();
    body["fileName"] = json!("x".repeat(255));
    body["propertyList"] = Value::Object(ten);
    body["checksum"] = json!("d41d8cd98f00b204e9800998ecf8427e");
    post_initialize(&f.sender, &body).await.unwrap();
}

#[tokio::test]
async fn an_empty_or_blank_checksum_means_no_checksum() {
    let f = Fixture::new().await;
    for checksum in ["", "   "] {
        let mut body = valid_body();
        body["checksum"] = json!(checksum);
        let id = post_initialize(&f.sender, &body).await.unwrap();
        f.sender.upload(id, b"anything".to_vec()).await.unwrap();
        let s = f.sender.overview(id).await.unwrap().summary;
        assert_eq!(
            s.file_transfer_status,
            FileTransferStatus::Published,
            "checksum {checksum:?}"
        );
        assert_eq!(s.checksum.as_deref(), Some(md5_hex(b"anything").as_str()));
    }
}

#[tokio::test]
async fn an_explicit_null_senders_reference_is_accepted_and_written_as_null() {
    let f = Fixture::new().await;
    let mut body = valid_body();
    body["sendersFileTransferReference"] = Value::Null;
    let id = post_initialize(&f.sender, &body).await.unwrap();
    let raw: Value = f
        .sender
        .request(Method::GET, &format!("/filetransfer/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let map = raw.as_object().unwrap();
    for key in ["sendersFileTransferReference", "checksum", "published"] {
        assert!(map.contains_key(key), "{key} is written: {raw}");
        assert!(map[key].is_null(), "{key} is null: {raw}");
    }
    assert_eq!(raw["propertyList"], json!({}));
}

/// Spec 1.2 (inferred from ASP.NET): an omitted `sendersFileTransferReference` defaults to "", which
/// fails its minimum length of 1.
#[tokio::test]
async fn an_omitted_senders_reference_fails_validation_as_in_altinn() {
    let f = Fixture::new().await;
    let mut body = valid_body();
    body.as_object_mut()
        .unwrap()
        .remove("sendersFileTransferReference");
    let p = expect_validation(post_initialize(&f.sender, &body).await);
    assert!(names_field(&p, "sendersFileTransferReference"), "{p:?}");
}

#[tokio::test]
async fn a_malformed_json_body_is_a_400() {
    let f = Fixture::new().await;
    let response = f
        .sender
        .request(Method::POST, "/filetransfer")
        .header("content-type", "application/json")
        .body("{\"fileName\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("code").is_none_or(|c| c.is_null()), "{body}");
}

#[tokio::test]
async fn output_uses_camel_case_names_string_enums_and_offset_timestamps() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT], b"out").await;
    let raw: Value = f
        .recipient
        .request(Method::GET, &format!("/filetransfer/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in [
        "fileTransferId",
        "resourceId",
        "fileName",
        "sendersFileTransferReference",
        "checksum",
        "useVirusScan",
        "fileTransferSize",
        "fileTransferStatus",
        "fileTransferStatusText",
        "fileTransferStatusChanged",
        "created",
        "expirationTime",
        "sender",
        "recipients",
        "propertyList",
        "published",
    ] {
        assert!(raw.get(key).is_some(), "{key} missing: {raw}");
    }
    assert_eq!(raw["fileTransferStatus"], "Published");
    for key in [
        "fileTransferStatusChanged",
        "created",
        "expirationTime",
        "published",
    ] {
        let t = raw[key].as_str().unwrap();
        assert!(t.ends_with("+00:00") && t.contains('T'), "{key}: {t}");
    }
    let r = &raw["recipients"][0];
    assert_eq!(r["currentRecipientFileTransferStatusCode"], "Initialized");
    assert!(r["currentRecipientFileTransferStatusChanged"]
        .as_str()
        .unwrap()
        .ends_with("+00:00"));
}

/// ASP.NET binds query booleans with `bool.Parse`, which ignores case (a .NET client writes `True`).
#[tokio::test]
async fn search_order_ascending_accepts_any_case_like_asp_net() {
    let f = Fixture::new().await;
    let first = f.initialize(&[RECIPIENT]).await;
    let second = f.initialize(&[RECIPIENT]).await;
    for value in ["true", "True", "TRUE"] {
        let found = f
            .sender
            .search(&[("resourceId", RESOURCE), ("orderAscending", value)])
            .await;
        assert_eq!(
            found.map_err(|e| e.to_string()),
            Ok(vec![first, second]),
            "orderAscending={value}"
        );
    }
    for value in ["false", "False"] {
        let found = f
            .sender
            .search(&[("resourceId", RESOURCE), ("orderAscending", value)])
            .await;
        assert_eq!(
            found.ok(),
            Some(vec![second, first]),
            "orderAscending={value}"
        );
    }
}

#[tokio::test]
async fn search_times_accept_the_iso_forms_dotnet_clients_send() {
    let f = Fixture::new().await;
    let first = f.initialize(&[RECIPIENT]).await;
    let second = f.initialize(&[RECIPIENT]).await;
    let created = f.sender.overview(first).await.unwrap().summary.created;
    let plus_one = created.with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap());
    let forms = [
        (
            "an offset of +01:00",
            plus_one.to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
        ),
        (
            "Z",
            created.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ),
        // DateTimeOffset.ToString("o"): seven fractional digits.
        (
            "seven fractional digits",
            format!("{}0+00:00", created.format("%Y-%m-%dT%H:%M:%S%.6f")),
        ),
    ];
    for (what, from) in forms {
        let found = f
            .sender
            .search(&[("resourceId", RESOURCE), ("from", &from)])
            .await;
        assert_eq!(
            found.ok(),
            Some(vec![second]),
            "from in the form with {what}: {from}"
        );
    }
}

#[tokio::test]
async fn a_json_content_type_with_a_charset_is_accepted() {
    let f = Fixture::new().await;
    let response = f
        .sender
        .request(Method::POST, "/filetransfer")
        .header("content-type", "application/json; charset=utf-8")
        .body(valid_body().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
}
