//! Durable jobs by time travel: the broker's clock is moved by the test (no sleeping), jobs run when
//! the test asks the runtime to run what is due, and a restart is a new broker on the same stores.

use crate::ports::{MetadataStore, Outbox};
use crate::test_support::{setup, setup_resource, Setup, RECIPIENT};
use broker_protocol::FileTransferStatus;
use chrono::Duration;
use uuid::Uuid;

async fn status(s: &Setup, id: Uuid) -> FileTransferStatus {
    s.store.transfer(id).await.unwrap().unwrap().status
}

/// The transfer's events as (type suffix, subject).
async fn events(s: &Setup, id: Uuid) -> Vec<(String, String)> {
    let all = s.store.events_after(0, 10_000).await.unwrap();
    all.into_iter()
        .filter(|e| e.event.resourceinstance == id.to_string())
        .map(|e| {
            let short = e
                .event
                .type_
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_string();
            (short, e.event.subject)
        })
        .collect()
}

fn count(events: &[(String, String)], kind: &str) -> usize {
    events.iter().filter(|(t, _)| t == kind).count()
}

async fn confirm_all(s: &Setup, id: Uuid) {
    let recipient = s.recipient();
    let download = s.broker.open_download(&recipient, id).await.unwrap();
    s.broker
        .read_download(&download, 0, download.size, false, true)
        .await
        .unwrap();
    s.broker.confirm_download(&recipient, id).await.unwrap();
    assert_eq!(
        status(s, id).await,
        FileTransferStatus::AllConfirmedDownloaded
    );
}

#[tokio::test]
async fn a_transfer_is_purged_at_its_expiration_time_and_not_before() {
    let s = setup_resource(|r| r.file_transfer_time_to_live = Some(Duration::hours(6))).await;
    let id = s.publish(b"expires in six hours").await;
    s.clock.advance(Duration::hours(6) - Duration::seconds(1));
    assert_eq!(s.broker.run_due_jobs().await.unwrap(), 0, "not due yet");
    assert_eq!(status(&s, id).await, FileTransferStatus::Published);
    s.clock.advance(Duration::seconds(1));
    assert_eq!(s.broker.run_due_jobs().await.unwrap(), 1);
    assert_eq!(status(&s, id).await, FileTransferStatus::Purged);
    assert!(!s.blobs.holds(id), "the bytes are deleted");
    let events = events(&s, id).await;
    assert_eq!(count(&events, "filepurged"), 1, "{events:?}");
    let never: Vec<_> = events
        .iter()
        .filter(|(t, _)| t == "fileneverconfirmeddownloaded")
        .map(|(_, subject)| subject.clone())
        .collect();
    assert_eq!(
        never.len(),
        2,
        "the recipient and the sender are told: {events:?}"
    );
    assert!(
        never.iter().any(|s| s.ends_with(&RECIPIENT[5..])),
        "{never:?}"
    );
    assert_eq!(
        s.broker.run_due_jobs().await.unwrap(),
        0,
        "the job ran once"
    );
}

#[tokio::test]
async fn a_transfer_every_recipient_confirmed_is_purged_after_the_grace_period() {
    let s = setup_resource(|r| {
        r.purge_after_all_confirmed = Some(true);
        r.purge_grace_period = Some(Duration::hours(2));
    })
    .await;
    let id = s.publish(b"confirmed soon").await;
    confirm_all(&s, id).await;
    s.clock.advance(Duration::hours(2) - Duration::seconds(1));
    s.broker.run_due_jobs().await.unwrap();
    assert_eq!(
        status(&s, id).await,
        FileTransferStatus::AllConfirmedDownloaded
    );
    s.clock.advance(Duration::seconds(1));
    assert_eq!(s.broker.run_due_jobs().await.unwrap(), 1);
    assert_eq!(status(&s, id).await, FileTransferStatus::Purged);
    assert!(!s.blobs.holds(id));
    // The expiry job still runs at the expiration time, and finds nothing to do.
    s.clock.advance(Duration::days(31));
    assert_eq!(s.broker.run_due_jobs().await.unwrap(), 1);
    let events = events(&s, id).await;
    assert_eq!(count(&events, "filepurged"), 1, "{events:?}");
    assert_eq!(
        count(&events, "fileneverconfirmeddownloaded"),
        0,
        "{events:?}"
    );
}

#[tokio::test]
async fn the_expiry_leaves_a_confirmed_transfer_to_its_grace_purge() {
    let s = setup_resource(|r| {
        r.file_transfer_time_to_live = Some(Duration::hours(1));
        r.purge_after_all_confirmed = Some(true);
        r.purge_grace_period = Some(Duration::hours(3));
    })
    .await;
    let id = s.publish(b"confirmed before it expires").await;
    confirm_all(&s, id).await;
    s.clock.advance(Duration::hours(1));
    assert_eq!(
        s.broker.run_due_jobs().await.unwrap(),
        1,
        "the expiry job ran"
    );
    assert_eq!(
        status(&s, id).await,
        FileTransferStatus::AllConfirmedDownloaded
    );
    s.clock.advance(Duration::hours(2));
    assert_eq!(
        s.broker.run_due_jobs().await.unwrap(),
        1,
        "the grace job ran"
    );
    assert_eq!(status(&s, id).await, FileTransferStatus::Purged);
}

#[tokio::test]
async fn a_purge_scheduled_before_a_restart_runs_once_after_it() {
    let s = setup().await;
    let id = s.publish(b"outlives the broker").await;
    let restarted = s.restart();
    drop(s);
    restarted.clock.advance(Duration::days(30));
    assert_eq!(restarted.broker.run_due_jobs().await.unwrap(), 1);
    assert_eq!(status(&restarted, id).await, FileTransferStatus::Purged);
    assert_eq!(restarted.broker.run_due_jobs().await.unwrap(), 0);
    assert_eq!(count(&events(&restarted, id).await, "filepurged"), 1);
}

#[tokio::test]
async fn a_job_claimed_by_a_broker_that_died_is_run_by_another_once_its_lease_ends() {
    use crate::ports::Jobs;
    let s = setup().await;
    let id = s.publish(b"claimed, then abandoned").await;
    s.clock.advance(Duration::days(30));
    // Another node claims the job and dies without completing it.
    let now = crate::ports::Clock::now(s.clock.as_ref());
    let claimed = s
        .store
        .claim_due("dead-node", now, now + Duration::minutes(5), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        s.broker.run_due_jobs().await.unwrap(),
        0,
        "held by its claimer"
    );
    s.clock.advance(Duration::minutes(5));
    assert_eq!(s.broker.run_due_jobs().await.unwrap(), 1, "taken over");
    assert_eq!(status(&s, id).await, FileTransferStatus::Purged);
}
