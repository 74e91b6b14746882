//! The event outbox (spec 3): which events a lifecycle produces, in which order, to whom, with what
//! CloudEvent fields, the deterministic ids of `published`, and paging.

use crate::common::*;
use crate::support::*;
use broker_protocol::events::{EventRole, OutboxEntry};
use broker_protocol::FileTransferStatus;
use reqwest::Method;
use sha2::Digest;
use std::collections::BTreeSet;
use uuid::Uuid;

fn subject(org: &str) -> String {
    format!(
        "urn:altinn:organization:identifier-no:{}",
        org.rsplit(':').next().unwrap()
    )
}

/// (subject, role) pairs of a slice of entries, as a set (the order within a group is not specified).
fn audience(entries: &[OutboxEntry]) -> BTreeSet<(String, String)> {
    entries
        .iter()
        .map(|e| (e.event.subject.clone(), format!("{:?}", e.event.data.role)))
        .collect()
}

fn set(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(org, role)| (subject(org), role.to_string()))
        .collect()
}

/// The `published` event id Altinn computes: the first 16 bytes of
/// SHA-256("published:{id}:{Sender|Recipient}:{party}") read as a .NET GUID.
fn expected_published_id(id: Uuid, role: &str, party: &str) -> Uuid {
    let digest = sha2::Sha256::digest(format!("published:{id}:{role}:{party}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes_le(bytes)
}

#[tokio::test]
async fn a_two_recipient_lifecycle_emits_every_event_in_order_to_the_right_parties() {
    let f = Fixture::new().await;
    let id = f
        .publish(&[RECIPIENT, RECIPIENT_2], &payload(3_000, 51))
        .await;
    for r in [&f.recipient, &f.recipient_2] {
        r.download(id, None).await.unwrap().bytes().await.unwrap();
        r.confirm_download(id).await.unwrap();
    }
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::AllConfirmedDownloaded
    );

    let events = events_of(&f.maintenance, id).await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e.event.type_.strip_prefix("no.altinn.broker.").unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "filetransferinitialized",
            "published",
            "published",
            "published",
            "downloadconfirmed",
            "downloadconfirmed",
            "downloadconfirmed",
            "downloadconfirmed",
            "allconfirmeddownloaded",
        ]
    );
    assert_eq!(audience(&events[0..1]), set(&[(SENDER, "Sender")]));
    assert_eq!(
        audience(&events[1..4]),
        set(&[
            (SENDER, "Sender"),
            (RECIPIENT, "Recipient"),
            (RECIPIENT_2, "Recipient")
        ])
    );
    assert_eq!(
        audience(&events[4..6]),
        set(&[(RECIPIENT, "Recipient"), (SENDER, "Sender")])
    );
    assert_eq!(
        audience(&events[6..8]),
        set(&[(RECIPIENT_2, "Recipient"), (SENDER, "Sender")])
    );
    assert_eq!(audience(&events[8..9]), set(&[(SENDER, "Sender")]));

    for e in &events {
        let ev = &e.event;
        assert_eq!(ev.specversion, "1.0");
        assert_eq!(ev.resource, "urn:altinn:resource:test-resource");
        assert_eq!(ev.resourceinstance, id.to_string());
        assert!(
            ev.source.ends_with("/broker/api/v1/filetransfer"),
            "{}",
            ev.source
        );
        let digits = ev
            .subject
            .strip_prefix("urn:altinn:organization:identifier-no:")
            .unwrap();
        assert!(
            digits.len() == 9 && digits.bytes().all(|b| b.is_ascii_digit()),
            "{}",
            ev.subject
        );
    }
    assert!(
        events.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "sequence numbers increase"
    );
    assert!(
        events
            .windows(2)
            .all(|w| w[0].event.time <= w[1].event.time),
        "times do not go back"
    );
    let ids: BTreeSet<Uuid> = events.iter().map(|e| e.event.id).collect();
    assert_eq!(ids.len(), events.len(), "every event has its own id");
}

#[tokio::test]
async fn published_event_ids_are_derived_from_transfer_role_and_party() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT, RECIPIENT_2], b"deterministic").await;
    let published: Vec<OutboxEntry> = events_of(&f.maintenance, id)
        .await
        .into_iter()
        .filter(|e| e.event.type_ == "no.altinn.broker.published")
        .collect();
    assert_eq!(published.len(), 3);
    for e in &published {
        let (role, party) = match e.event.data.role {
            EventRole::Sender => ("Sender", SENDER),
            EventRole::Recipient => {
                let digits = e.event.subject.rsplit(':').next().unwrap();
                (
                    "Recipient",
                    if RECIPIENT.ends_with(digits) {
                        RECIPIENT
                    } else {
                        RECIPIENT_2
                    },
                )
            }
        };
        assert_eq!(
            e.event.id,
            expected_published_id(id, role, party),
            "{:?}",
            e.event
        );
    }
    let other = f.publish(&[RECIPIENT], b"other").await;
    let other_ids: BTreeSet<Uuid> = events_of(&f.maintenance, other)
        .await
        .iter()
        .map(|e| e.event.id)
        .collect();
    assert!(
        published.iter().all(|e| !other_ids.contains(&e.event.id)),
        "ids differ between transfers"
    );
}

#[tokio::test]
async fn the_outbox_json_uses_lower_case_cloud_event_names_and_a_role_data_key() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT], b"json").await;
    let raw: serde_json::Value = f
        .maintenance
        .request(Method::GET, "/maintenance/events?after=0&limit=1000")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = raw.as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for entry in entries {
        assert!(entry["sequence"].is_i64(), "{entry}");
        let ev = &entry["event"];
        for key in [
            "specversion",
            "id",
            "type",
            "time",
            "resource",
            "resourceinstance",
            "subject",
            "source",
            "data",
        ] {
            assert!(ev.get(key).is_some(), "{key} missing: {ev}");
        }
        assert_eq!(ev["resourceinstance"], id.to_string());
        let role = ev["data"]["Role"]
            .as_str()
            .unwrap_or_else(|| panic!("data.Role: {ev}"));
        assert!(role == "Sender" || role == "Recipient", "{ev}");
        let time = ev["time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    }
}

#[tokio::test]
async fn downloads_and_refused_calls_emit_nothing() {
    let f = Fixture::new().await;
    let id = f.publish(&[RECIPIENT, RECIPIENT_2], b"quiet").await;
    let before = events_of(&f.maintenance, id).await.len();
    f.recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    f.recipient
        .download(id, Some("bytes=0-1"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    expect_problem(f.recipient_2.confirm_download(id).await, 400, "BRO-00019");
    expect_problem(
        f.sender.upload(id, b"again".to_vec()).await,
        409,
        "BRO-00004",
    );
    expect_problem(f.third_party.overview(id).await, 401, "BRO-00006");
    assert_eq!(events_of(&f.maintenance, id).await.len(), before);
}

#[tokio::test]
async fn the_outbox_pages_through_many_transfers_in_sequence_order() {
    let f = Fixture::new().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(f.publish(&[RECIPIENT], &payload(100, i)).await);
    }
    let all = f.maintenance.events(0, 1000).await.unwrap();
    assert_eq!(all.len(), 4 * 3);
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = f.maintenance.events(after, 5).await.unwrap();
        assert!(page.len() <= 5);
        let Some(last) = page.last() else { break };
        after = last.sequence;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let order: Vec<String> = all
        .iter()
        .map(|e| e.event.resourceinstance.clone())
        .collect();
    let mut expected = Vec::new();
    for id in &ids {
        expected.extend(std::iter::repeat_n(id.to_string(), 3));
    }
    assert_eq!(
        order, expected,
        "events of each transfer are contiguous and in creation order"
    );
}
