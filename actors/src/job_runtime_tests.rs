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

/// A published transfer has no stuck check left to run: the publish cancelled it, so a day on (where
/// the upload's check was due) nothing wakes for it.
async fn no_stuck_check_is_left(s: &Setup, id: Uuid) {
    use crate::ports::jobs::{JobKey, JobKind, Jobs};
    let key = JobKey::new(JobKind::StuckCheck, id.to_string());
    assert_eq!(s.store.jobs().get(&key).await.unwrap(), None);
    s.clock.advance(Duration::days(1));
    assert_eq!(s.broker.run_due_jobs().await.unwrap(), 0, "nothing was due");
    assert_eq!(status(s, id).await, FileTransferStatus::Published);
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
async fn a_transfer_every_recipient_confirmed_is_purged_after_the_grace_period_across_a_restart() {
    let s = setup_resource(|r| {
        r.purge_after_all_confirmed = Some(true);
        r.purge_grace_period = Some(Duration::hours(2));
    })
    .await;
    let id = s.publish(b"confirmed soon").await;
    confirm_all(&s, id).await;
    // The broker restarts between the confirmation and the purge's time.
    let restarted = s.restart();
    drop(s);
    let s = restarted;
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
    // The purge took the transfer's other jobs with it: nothing wakes at its expiry.
    s.clock.advance(Duration::days(31));
    assert_eq!(s.broker.run_due_jobs().await.unwrap(), 0);
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
    let s = restarted;
    no_stuck_check_is_left(&s, id).await;
    s.clock.advance(Duration::days(29));
    assert_eq!(s.broker.run_due_jobs().await.unwrap(), 1);
    assert_eq!(status(&s, id).await, FileTransferStatus::Purged);
    let restarted = s;
    assert_eq!(restarted.broker.run_due_jobs().await.unwrap(), 0);
    assert_eq!(count(&events(&restarted, id).await, "filepurged"), 1);
}

#[tokio::test]
async fn a_job_claimed_by_a_broker_that_died_is_run_by_another_once_its_lease_ends() {
    use crate::ports::Jobs;
    let s = setup().await;
    let id = s.publish(b"claimed, then abandoned").await;
    no_stuck_check_is_left(&s, id).await;
    s.clock.advance(Duration::days(29));
    // Another node claims the job and dies without completing it.
    let now = crate::ports::Clock::now(s.clock.as_ref());
    let claimed = s
        .store
        .jobs()
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

/// A resumable upload begun and left after `sent` of its `length` bytes: the transfer is UploadStarted.
async fn abandon_upload(s: &Setup, length: usize, sent: &[u8]) -> Uuid {
    let id = s.initialize(None).await;
    s.upload_part_of(id, length, sent).await;
    assert_eq!(status(s, id).await, FileTransferStatus::UploadStarted);
    id
}

#[tokio::test]
async fn an_upload_abandoned_in_upload_started_fails_as_stuck_after_a_day() {
    let s = setup().await;
    let id = abandon_upload(&s, 1000, &[7; 400]).await;
    s.clock.advance(Duration::hours(24) - Duration::seconds(1));
    s.broker.run_due_jobs().await.unwrap();
    assert_eq!(status(&s, id).await, FileTransferStatus::UploadStarted);
    s.clock.advance(Duration::seconds(1));
    assert_eq!(s.broker.run_due_jobs().await.unwrap(), 1);
    let view = s.store.transfer(id).await.unwrap().unwrap();
    assert_eq!(view.status, FileTransferStatus::Failed);
    assert_eq!(view.status_text.as_deref(), Some(crate::state::STUCK_TEXT));
    assert_eq!(count(&events(&s, id).await, "uploadfailed"), 1);
    assert!(!s.blobs.holds(id), "the partial bytes are removed");
    use crate::ports::jobs::{JobKey, JobKind, Jobs};
    let check = JobKey::new(JobKind::StuckCheck, id.to_string());
    assert_eq!(
        s.store.jobs().get(&check).await.unwrap(),
        None,
        "the check ran once and is done"
    );
}

#[tokio::test]
async fn an_upload_still_sending_within_the_last_hour_is_not_stuck_until_it_goes_quiet() {
    let s = setup().await;
    let id = abandon_upload(&s, 1000, &[7; 400]).await;
    s.clock.advance(Duration::hours(23) + Duration::minutes(30));
    let more = s
        .broker
        .tus_patch(
            &s.sender,
            id,
            None,
            400,
            crate::test_support::patch(&[8; 100]),
        )
        .await
        .unwrap();
    assert_eq!(more, 500);
    s.clock.advance(Duration::minutes(30));
    assert_eq!(s.broker.run_due_jobs().await.unwrap(), 1, "the check ran");
    assert_eq!(
        status(&s, id).await,
        FileTransferStatus::UploadStarted,
        "active half an hour ago"
    );
    s.clock.advance(Duration::minutes(30));
    assert_eq!(
        s.broker.run_due_jobs().await.unwrap(),
        1,
        "looked again an hour after the last PATCH"
    );
    assert_eq!(status(&s, id).await, FileTransferStatus::Failed);
}

#[tokio::test]
async fn a_stuck_check_scheduled_before_a_restart_fails_the_upload_once_after_it() {
    let s = setup().await;
    let id = abandon_upload(&s, 1000, &[7; 10]).await;
    let restarted = s.restart();
    drop(s);
    restarted.clock.advance(Duration::hours(25));
    restarted.broker.run_due_jobs().await.unwrap();
    assert_eq!(status(&restarted, id).await, FileTransferStatus::Failed);
    assert_eq!(count(&events(&restarted, id).await, "uploadfailed"), 1);
}

#[tokio::test]
async fn a_transfer_left_in_upload_processing_with_no_check_running_raises_an_alert_every_quarter_across_a_restart(
) {
    use crate::ports::metadata::TransferChange;
    use crate::ports::{JobKey, JobKind};
    let s = setup().await;
    let id = s.initialize(None).await;
    let now = crate::ports::Clock::now(s.clock.as_ref());
    // What a check lost without a trace leaves: UploadProcessing, the stuck check scheduled.
    for (from, to, jobs) in [
        (
            FileTransferStatus::Initialized,
            FileTransferStatus::UploadStarted,
            vec![],
        ),
        (
            FileTransferStatus::UploadStarted,
            FileTransferStatus::UploadProcessing,
            vec![(
                JobKey::new(JobKind::StuckCheck, id.to_string()),
                now + crate::state::STUCK_UPLOAD_PROCESSING,
            )],
        ),
    ] {
        let change = TransferChange {
            new_status: Some((to, None)),
            jobs,
            ..TransferChange::new(id, from, 0, now)
        };
        crate::conformance::commit_current(&*s.store, change)
            .await
            .unwrap();
    }
    // The broker restarts before the check is due.
    let restarted = s.restart();
    drop(s);
    let s = restarted;
    s.clock.advance(Duration::minutes(15));
    s.broker.run_due_jobs().await.unwrap();
    assert_eq!(s.broker.stuck_alerts(), 1);
    assert_eq!(
        status(&s, id).await,
        FileTransferStatus::UploadProcessing,
        "never failed for it"
    );
    s.clock.advance(Duration::minutes(15));
    s.broker.run_due_jobs().await.unwrap();
    assert_eq!(s.broker.stuck_alerts(), 2, "again while it stays stuck");
}

#[tokio::test]
async fn an_untouched_resumable_upload_expires_by_the_sweep_job_and_the_sweep_survives_a_restart() {
    use crate::ports::{JobKey, JobKind, Jobs, UploadSessions};
    let s = setup().await;
    s.broker.ensure_tus_sweep().await.unwrap();
    let id = abandon_upload(&s, 1000, &[7; 300]).await;
    let restarted = s.restart();
    drop(s);
    let s = restarted;
    // The test broker's uploads expire after an hour; the sweep runs every minute.
    s.clock.advance(Duration::minutes(59));
    s.broker.run_due_jobs().await.unwrap();
    assert!(
        UploadSessions::get(s.store.as_ref(), id, "")
            .await
            .unwrap()
            .is_some(),
        "not expired yet"
    );
    s.clock.advance(Duration::minutes(2));
    s.broker.run_due_jobs().await.unwrap();
    assert!(
        UploadSessions::get(s.store.as_ref(), id, "")
            .await
            .unwrap()
            .is_none(),
        "the expired upload is removed"
    );
    assert!(!s.blobs.holds(id), "with its bytes");
    assert_eq!(
        status(&s, id).await,
        FileTransferStatus::UploadStarted,
        "a new upload may start"
    );
    let sweep = JobKey::new(JobKind::TusExpiry, "sweep");
    let scheduled = s.store.jobs().get(&sweep).await.unwrap();
    let (next, _) = scheduled.expect("the sweep is scheduled again");
    assert!(next > crate::ports::Clock::now(s.clock.as_ref()));
}

#[tokio::test]
async fn the_runtime_is_woken_by_a_job_due_before_its_next_look_and_only_by_such_a_job() {
    use crate::supervisor::JobWakeup;
    use std::sync::Arc;
    let wakeup = JobWakeup::new(Arc::new(crate::local_signals::LocalSignals::default()));
    let now = chrono::Utc::now();
    let short = std::time::Duration::from_millis(50);
    let woken = wakeup.awake();
    wakeup.sleeping_until(now + Duration::seconds(30));
    tokio::pin!(woken);
    wakeup.scheduled(now + Duration::days(30)).await;
    assert!(
        tokio::time::timeout(short, woken.as_mut()).await.is_err(),
        "a purge in 30 days does not wake it"
    );
    wakeup.scheduled(now + Duration::seconds(5)).await;
    tokio::time::timeout(std::time::Duration::from_secs(5), woken)
        .await
        .expect("a job due in 5 s wakes it");
    // While it looks for due jobs, any schedule wakes it: the look may have missed the new job.
    let woken = wakeup.awake();
    wakeup.scheduled(now + Duration::days(30)).await;
    wakeup.sleeping_until(now + Duration::seconds(30));
    tokio::time::timeout(std::time::Duration::from_secs(5), woken)
        .await
        .expect("a job scheduled during the look is not missed");
}

#[tokio::test]
async fn the_statistics_rebuilds_run_on_their_days_and_schedule_their_next_run() {
    use crate::ports::{JobKey, JobKind, Jobs};
    use chrono::{Datelike, Timelike};
    let s = setup().await;
    s.broker.ensure_statistics_jobs().await.unwrap();
    let weekly = JobKey::new(JobKind::StatisticsWeekly, "current-month");
    let last = JobKey::new(JobKind::StatisticsFinal, "previous-month");
    let due = |key: JobKey| {
        let jobs = s.store.jobs();
        async move { jobs.get(&key).await.unwrap().expect("scheduled").0 }
    };
    let started = crate::ports::Clock::now(s.clock.as_ref());
    assert_eq!(
        due(weekly.clone()).await,
        started,
        "the first weekly rebuild runs at once"
    );
    s.broker.run_due_jobs().await.unwrap();
    let first = due(weekly.clone()).await;
    assert_eq!(
        (first.weekday(), first.hour(), first.minute()),
        (chrono::Weekday::Mon, 3, 0)
    );
    let final_run = due(last.clone()).await;
    assert_eq!((final_run.day(), final_run.hour()), (2, 4));
    s.broker.ensure_statistics_jobs().await.unwrap();
    assert_eq!(
        due(weekly.clone()).await,
        first,
        "ensuring again keeps the time"
    );

    let now = crate::ports::Clock::now(s.clock.as_ref());
    s.clock.advance(first - now);
    s.broker.run_due_jobs().await.unwrap();
    assert_eq!(due(weekly.clone()).await, first + Duration::days(7));

    // The final rebuild may have fallen due before the first weekly one.
    if final_run > first {
        let now = crate::ports::Clock::now(s.clock.as_ref());
        s.clock.advance(final_run - now + Duration::minutes(1));
        s.broker.run_due_jobs().await.unwrap();
    }
    let next = due(last).await;
    assert!(
        next > final_run && next.day() == 2 && next.hour() == 4,
        "next {next}"
    );
}
