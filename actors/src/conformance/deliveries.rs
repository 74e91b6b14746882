//! The delivery rules of the outbox port and the subscriptions port: routing that records each
//! (subscription, event) once, claims that take only each transfer's first pending delivery, leases,
//! outcomes that acknowledge, reschedule or dead-letter, redelivery, and removal with the
//! subscription. Acknowledging never removes an outbox event.

use super::{new_transfer, resource, t0, OWNER};
use crate::ports::outbox::{Attempt, AttemptOutcome, ClaimedDelivery, Outbox};
use crate::ports::subscriptions::{NewSubscription, Subscriptions};
use crate::ports::MetadataStore;
use broker_protocol::events::{CloudEvent, EventRole, EventType};
use broker_protocol::subscriptions::DeliveryState;
use chrono::Duration;

fn subscription(consumer: &str) -> NewSubscription {
    NewSubscription {
        end_point: "http://127.0.0.1:1/hook".into(),
        source_filter: None,
        resource_filter: "d".into(),
        subject_filter: None,
        alternative_subject_filter: None,
        type_filter: None,
        consumer: consumer.into(),
        created_by: consumer.into(),
        created: t0(),
        secret: "whsec_first".into(),
        include_subunits: false,
        api: crate::ports::subscriptions::SubscriptionApi::Broker,
    }
}

fn attempt(outcome: AttemptOutcome, status: Option<u16>) -> Attempt {
    Attempt {
        at: t0(),
        status,
        latency_ms: 3,
        error: status.is_none().then(|| "connection refused".to_string()),
        outcome,
    }
}

fn seqs(claimed: &[ClaimedDelivery]) -> Vec<i64> {
    claimed.iter().map(|c| c.sequence).collect()
}

/// Runs every delivery rule against a fresh store that is all three ports.
pub async fn deliveries_suite(
    metadata: &dyn MetadataStore,
    outbox: &dyn Outbox,
    subscriptions: &dyn Subscriptions,
) {
    resource(metadata, "d").await;
    let first = subscriptions
        .create_subscription(subscription("/organisation/1"), 10)
        .await
        .unwrap()
        .expect("under the cap");
    let second_spec = NewSubscription {
        include_subunits: true,
        api: crate::ports::subscriptions::SubscriptionApi::Events,
        ..subscription("/organisation/2")
    };
    let second = subscriptions
        .create_subscription(second_spec.clone(), 10)
        .await
        .unwrap()
        .expect("under the cap");
    assert!(!first.validated, "a new subscription is not validated");
    assert_ne!(first.id, second.id);
    let stored = subscriptions
        .subscription(second.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.spec, second_spec,
        "a subscription reads back as it was created (includeSubunits and its API too)"
    );

    // Transfer x has three events, y one.
    let event = |id, t| CloudEvent::new(t, id, "d", OWNER, EventRole::Sender, "test", t0());
    let x = new_transfer("d", t0());
    let y = new_transfer("d", t0());
    let (xi, yi) = (x.id, y.id);
    let x_events = vec![
        event(xi, EventType::FileTransferInitialized),
        event(xi, EventType::UploadProcessing),
        event(xi, EventType::Published),
    ];
    metadata.create_transfer(x, x_events, vec![]).await.unwrap();
    metadata
        .create_transfer(
            y,
            vec![event(yi, EventType::FileTransferInitialized)],
            vec![],
        )
        .await
        .unwrap();
    let unrouted = outbox.unrouted_events(100).await.unwrap();
    assert_eq!(unrouted.len(), 4, "every new event waits to be routed");
    let all: Vec<i64> = unrouted.iter().map(|e| e.sequence).collect();
    let (x1, x2, x3, y1) = (all[0], all[1], all[2], all[3]);
    let routes = vec![
        (x1, vec![first.id]),
        (x2, vec![first.id]),
        (x3, vec![first.id]),
        (y1, vec![first.id, second.id]),
    ];
    outbox.route_events(&routes, t0()).await.unwrap();
    assert!(
        outbox.unrouted_events(100).await.unwrap().is_empty(),
        "routed events are marked"
    );
    assert_eq!(
        outbox.due_subscriptions(None, t0()).await.unwrap(),
        vec![first.id, second.id],
        "both have a delivery due"
    );
    assert!(
        outbox
            .due_subscriptions(None, t0() - Duration::seconds(1))
            .await
            .unwrap()
            .is_empty(),
        "nothing is due before its time"
    );
    assert!(
        outbox
            .due_subscriptions(Some(t0()), t0() + Duration::seconds(5))
            .await
            .unwrap()
            .is_empty(),
        "only what came due after `since` is named"
    );

    let now = t0() + Duration::seconds(1);
    let lease = now + Duration::seconds(60);
    let claimed = outbox
        .claim_deliveries(first.id, "a", now, lease, 10)
        .await
        .unwrap();
    assert_eq!(
        seqs(&claimed),
        vec![x1, y1],
        "only each transfer's first pending delivery is claimed"
    );
    assert_eq!(claimed[0].event.resourceinstance, xi.to_string());
    assert_eq!(claimed[0].attempts, 0);
    assert!(
        outbox
            .claim_deliveries(first.id, "b", now, lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "a held delivery is not claimed again"
    );
    // Routing again changes nothing of what was recorded.
    outbox.route_events(&routes, t0()).await.unwrap();
    assert!(outbox
        .claim_deliveries(first.id, "b", now, lease, 10)
        .await
        .unwrap()
        .is_empty());

    let delivered = attempt(AttemptOutcome::Delivered, Some(204));
    assert!(
        !outbox
            .record_attempt(&claimed[0], "b", &delivered)
            .await
            .unwrap(),
        "only the holder records"
    );
    assert!(outbox
        .record_attempt(&claimed[0], "a", &delivered)
        .await
        .unwrap());
    assert!(
        !outbox
            .record_attempt(&claimed[0], "a", &delivered)
            .await
            .unwrap(),
        "an outcome is recorded once"
    );
    let next = outbox
        .claim_deliveries(first.id, "a", now, lease, 10)
        .await
        .unwrap();
    assert_eq!(
        seqs(&next),
        vec![x2],
        "the transfer's next delivery follows its acknowledgement"
    );

    // x2 fails and is retried later; x3 waits behind it.
    let later = now + Duration::seconds(10);
    let refused = attempt(AttemptOutcome::RetryAt(later), None);
    assert!(outbox
        .record_attempt(&next[0], "a", &refused)
        .await
        .unwrap());
    assert!(outbox
        .claim_deliveries(first.id, "a", now, lease, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        outbox.next_delivery_due(first.id).await.unwrap(),
        Some(later.min(lease))
    );
    assert_eq!(
        outbox.due_subscriptions(Some(now), later).await.unwrap(),
        vec![first.id],
        "a retry comes due"
    );
    let retried = outbox
        .claim_deliveries(first.id, "a", later, later + Duration::seconds(60), 10)
        .await
        .unwrap();
    assert_eq!(seqs(&retried), vec![x2]);
    assert_eq!(retried[0].attempts, 1, "the failed attempt counts");
    assert_eq!(retried[0].first_attempt, Some(t0()));

    // The lease on y1 ran out: another claimer takes it.
    let after_lease = lease + Duration::seconds(1);
    let taken = outbox
        .claim_deliveries(
            first.id,
            "b",
            after_lease,
            after_lease + Duration::seconds(60),
            10,
        )
        .await
        .unwrap();
    assert!(
        seqs(&taken).contains(&y1),
        "an expired lease frees its delivery"
    );
    let y_claim = taken.iter().find(|c| c.sequence == y1).unwrap();
    let dead = attempt(AttemptOutcome::DeadLettered, Some(500));
    assert!(outbox.record_attempt(y_claim, "b", &dead).await.unwrap());

    let history = outbox.deliveries(first.id, 0, 100).await.unwrap();
    let state = |seq| history.iter().find(|d| d.sequence == seq).unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(state(x1).state, DeliveryState::Delivered);
    assert_eq!(state(x1).last_status, Some(204));
    assert_eq!(state(x1).next_attempt, None);
    assert_eq!(state(x2).state, DeliveryState::Pending);
    assert_eq!(state(y1).state, DeliveryState::DeadLettered);
    assert_eq!(state(y1).attempts, 1);
    assert_eq!(
        outbox.deliveries(first.id, x2, 100).await.unwrap().len(),
        2,
        "paged by sequence"
    );
    let backlog = outbox.delivery_backlog().await.unwrap();
    assert_eq!((backlog.unrouted, backlog.dead_lettered), (0, 1));

    let redo = t0() + Duration::hours(1);
    assert_eq!(outbox.redeliver(first.id, redo).await.unwrap(), 1);
    let again = outbox
        .claim_deliveries(first.id, "c", redo, redo + Duration::seconds(60), 10)
        .await
        .unwrap();
    let y_again = again
        .iter()
        .find(|c| c.sequence == y1)
        .expect("a redelivered delivery is claimable");
    assert_eq!(
        (y_again.attempts, y_again.first_attempt),
        (0, None),
        "its retry period starts afresh"
    );

    assert_eq!(
        outbox.events_after(0, 100).await.unwrap().len(),
        4,
        "acknowledging keeps the events"
    );

    // Subscriptions.
    assert_eq!(
        subscriptions
            .subscriptions_of("/organisation/1")
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(subscriptions.all_subscriptions().await.unwrap().len(), 2);
    subscriptions.mark_validated(first.id).await.unwrap();
    let until = t0() + Duration::hours(24);
    assert!(subscriptions
        .rotate_secret(first.id, "whsec_second", until)
        .await
        .unwrap());
    let rotated = subscriptions.subscription(first.id).await.unwrap().unwrap();
    assert!(rotated.validated);
    assert_eq!(
        rotated.signing_secrets(t0()),
        vec!["whsec_second", "whsec_first"]
    );
    assert_eq!(
        rotated.signing_secrets(until),
        vec!["whsec_second"],
        "the old secret stops at the overlap's end"
    );
    assert_eq!(rotated.spec.created, t0());

    assert!(subscriptions.delete_subscription(first.id).await.unwrap());
    assert!(!subscriptions.delete_subscription(first.id).await.unwrap());
    assert!(subscriptions
        .subscription(first.id)
        .await
        .unwrap()
        .is_none());
    assert!(
        outbox
            .deliveries(first.id, 0, 100)
            .await
            .unwrap()
            .is_empty(),
        "its deliveries go with it"
    );
    assert_eq!(
        outbox.deliveries(second.id, 0, 100).await.unwrap().len(),
        1,
        "another's stay"
    );

    caps_hold_under_concurrent_creation(subscriptions).await;
    an_event_for_many_subscriptions_is_recorded_once_for_each(metadata, outbox, subscriptions)
        .await;
}

/// Routing one event to many subscriptions (a store may write them in one statement) records one
/// delivery for each of them and for nobody else.
async fn an_event_for_many_subscriptions_is_recorded_once_for_each(
    metadata: &dyn MetadataStore,
    outbox: &dyn Outbox,
    subscriptions: &dyn Subscriptions,
) {
    let mut many = vec![];
    for i in 0..40 {
        let row = subscriptions
            .create_subscription(subscription(&format!("/organisation/many-{i}")), 1)
            .await
            .unwrap()
            .unwrap();
        many.push(row.id);
    }
    let transfer = new_transfer("d", t0());
    let id = transfer.id;
    let event = CloudEvent::new(
        EventType::Published,
        id,
        "d",
        OWNER,
        EventRole::Sender,
        "test",
        t0(),
    );
    metadata
        .create_transfer(transfer, vec![event], vec![])
        .await
        .unwrap();
    let unrouted = outbox.unrouted_events(100).await.unwrap();
    let seq = unrouted
        .iter()
        .find(|e| e.event.resourceinstance == id.to_string())
        .unwrap()
        .sequence;
    let chosen: Vec<i64> = many.iter().copied().step_by(2).collect();
    outbox
        .route_events(&[(seq, chosen.clone())], t0())
        .await
        .unwrap();
    outbox
        .route_events(&[(seq, chosen.clone())], t0())
        .await
        .unwrap();
    for sub in many {
        let recorded = outbox.deliveries(sub, 0, 100).await.unwrap();
        let expected = usize::from(chosen.contains(&sub));
        assert_eq!(recorded.len(), expected, "subscription {sub}");
    }
}

/// However many creations race, a consumer never holds more than the cap of one kind, and the two
/// kinds (webhooks, contact points) are counted apart.
async fn caps_hold_under_concurrent_creation(subscriptions: &dyn Subscriptions) {
    let consumer = "/organisation/racing";
    let contact_point = |i: usize| NewSubscription {
        end_point: format!("mailto:p{i}@example.no"),
        ..subscription(consumer)
    };
    let created = futures::future::join_all((0..60).map(|i| async move {
        let webhook = subscriptions.create_subscription(subscription(consumer), 20);
        let contact = subscriptions.create_subscription(contact_point(i), 5);
        let (webhook, contact) = futures::join!(webhook, contact);
        (webhook.unwrap().is_some(), contact.unwrap().is_some())
    }))
    .await;
    let webhooks = created.iter().filter(|(w, _)| *w).count();
    let contacts = created.iter().filter(|(_, c)| *c).count();
    assert_eq!(
        (webhooks, contacts),
        (20, 5),
        "exactly the caps were created"
    );
    let held = subscriptions.subscriptions_of(consumer).await.unwrap();
    assert_eq!(held.len(), 25);
    assert!(
        subscriptions
            .create_subscription(subscription(consumer), 20)
            .await
            .unwrap()
            .is_none(),
        "at the cap nothing more is stored"
    );
    assert!(
        subscriptions
            .create_subscription(subscription("/organisation/other"), 20)
            .await
            .unwrap()
            .is_some(),
        "another consumer has its own count"
    );
}
