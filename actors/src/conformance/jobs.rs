//! The jobs port's rules: one job per name, claimed only when due and not held, leases that run out,
//! completion that loses no reschedule, retries that count, and the next due time to sleep until.

use super::{new_transfer, resource, t0};
use crate::ports::jobs::{JobKey, JobKind, Jobs};
use crate::ports::MetadataStore;
use chrono::Duration;

/// Runs every rule of the jobs port against `jobs` (a fresh store).
pub async fn jobs_suite(jobs: &dyn Jobs) {
    a_job_is_claimed_only_once_it_is_due(jobs).await;
    a_held_job_is_not_claimed_again_until_its_lease_ends(jobs).await;
    a_renewed_lease_holds_the_job_past_its_first_end(jobs).await;
    scheduling_a_job_again_moves_it_instead_of_adding_one(jobs).await;
    a_reschedule_made_while_the_job_ran_outlives_its_completion(jobs).await;
    a_retried_job_counts_the_attempt_and_waits_for_its_new_time(jobs).await;
    claims_take_the_earliest_jobs_first_up_to_the_limit(jobs).await;
    a_cancelled_job_is_gone(jobs).await;
    assert_eq!(
        jobs.next_due().await.unwrap(),
        None,
        "every job of the suite was completed or cancelled"
    );
}

fn key(kind: JobKind, subject: &str) -> JobKey {
    JobKey::new(kind, subject)
}

async fn a_job_is_claimed_only_once_it_is_due(jobs: &dyn Jobs) {
    let purge = key(JobKind::PurgeExpired, "due");
    let at = t0() + Duration::seconds(5);
    jobs.schedule(&purge, at).await.unwrap();
    assert_eq!(jobs.get(&purge).await.unwrap(), Some((at, 0)));
    assert_eq!(jobs.next_due().await.unwrap(), Some(at));
    let early = jobs
        .claim_due(
            "a",
            at - Duration::milliseconds(1),
            at + Duration::seconds(30),
            10,
        )
        .await
        .unwrap();
    assert!(early.is_empty(), "a job is not claimed before it is due");
    let claimed = jobs
        .claim_due("a", at, at + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "a job is claimed at its due time");
    assert_eq!(claimed[0].key, purge);
    assert_eq!(claimed[0].due_at, at);
    assert!(
        !jobs.complete(&claimed[0], "b").await.unwrap(),
        "only the claimer completes a job"
    );
    assert!(jobs.complete(&claimed[0], "a").await.unwrap());
    assert_eq!(
        jobs.get(&purge).await.unwrap(),
        None,
        "a completed job is gone"
    );
    assert!(
        !jobs.complete(&claimed[0], "a").await.unwrap(),
        "completing twice is refused"
    );
}

async fn a_held_job_is_not_claimed_again_until_its_lease_ends(jobs: &dyn Jobs) {
    let scan = key(JobKind::Scan, "leased");
    jobs.schedule(&scan, t0()).await.unwrap();
    let lease_end = t0() + Duration::seconds(30);
    let first = jobs.claim_due("a", t0(), lease_end, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    let during = jobs
        .claim_due("b", t0() + Duration::seconds(29), lease_end, 10)
        .await
        .unwrap();
    assert!(during.is_empty(), "a held job is not claimed by another");
    assert_eq!(
        jobs.next_due().await.unwrap(),
        Some(lease_end),
        "a held job becomes claimable when its lease ends"
    );
    let taken_over = jobs
        .claim_due("b", lease_end, lease_end + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(taken_over.len(), 1, "a crashed claimer's job is taken over");
    assert!(
        !jobs.complete(&first[0], "a").await.unwrap(),
        "the claimer whose lease ran out can no longer complete the job"
    );
    assert!(jobs.get(&scan).await.unwrap().is_some());
    assert!(jobs.complete(&taken_over[0], "b").await.unwrap());
}

async fn a_renewed_lease_holds_the_job_past_its_first_end(jobs: &dyn Jobs) {
    let scan = key(JobKind::Scan, "renewed");
    jobs.schedule(&scan, t0()).await.unwrap();
    let first_end = t0() + Duration::seconds(30);
    let held = jobs.claim_due("a", t0(), first_end, 10).await.unwrap();
    assert_eq!(held.len(), 1);
    let second_end = first_end + Duration::seconds(30);
    assert!(jobs.renew(&held[0], "a", second_end).await.unwrap());
    assert!(
        !jobs.renew(&held[0], "b", second_end).await.unwrap(),
        "only the holder renews"
    );
    let after_first = jobs
        .claim_due("b", first_end, second_end, 10)
        .await
        .unwrap();
    assert!(after_first.is_empty(), "the renewed lease still holds");
    assert_eq!(jobs.next_due().await.unwrap(), Some(second_end));
    let taken_over = jobs
        .claim_due("b", second_end, second_end + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(taken_over.len(), 1, "a renewal that stops lets the job go");
    assert!(
        !jobs
            .renew(&held[0], "a", second_end + Duration::hours(1))
            .await
            .unwrap(),
        "a claim taken over is not renewed"
    );
    jobs.schedule(&scan, t0()).await.unwrap();
    assert!(
        !jobs
            .renew(&taken_over[0], "b", second_end + Duration::hours(1))
            .await
            .unwrap(),
        "a job moved since the claim is not renewed"
    );
    jobs.cancel(&scan).await.unwrap();
}

async fn scheduling_a_job_again_moves_it_instead_of_adding_one(jobs: &dyn Jobs) {
    let stuck = key(JobKind::StuckCheck, "moved");
    jobs.schedule(&stuck, t0() + Duration::hours(24))
        .await
        .unwrap();
    jobs.schedule(&stuck, t0() + Duration::hours(1))
        .await
        .unwrap();
    let claimed = jobs
        .claim_due(
            "a",
            t0() + Duration::hours(1),
            t0() + Duration::hours(2),
            10,
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "one job per name, at its latest time");
    assert!(jobs.complete(&claimed[0], "a").await.unwrap());
    let later = jobs
        .claim_due(
            "a",
            t0() + Duration::hours(30),
            t0() + Duration::hours(31),
            10,
        )
        .await
        .unwrap();
    assert!(
        later.is_empty(),
        "the job's first time was replaced, not kept"
    );
}

async fn a_reschedule_made_while_the_job_ran_outlives_its_completion(jobs: &dyn Jobs) {
    let purge = key(JobKind::PurgeAfterConfirm, "rescheduled");
    jobs.schedule(&purge, t0()).await.unwrap();
    let claimed = jobs
        .claim_due("a", t0(), t0() + Duration::seconds(30), 10)
        .await
        .unwrap();
    let moved_to = t0() + Duration::days(1);
    jobs.schedule(&purge, moved_to).await.unwrap();
    assert!(
        !jobs.complete(&claimed[0], "a").await.unwrap(),
        "a job moved while it ran is not completed"
    );
    assert_eq!(jobs.get(&purge).await.unwrap(), Some((moved_to, 0)));
    assert_eq!(
        jobs.next_due().await.unwrap(),
        Some(moved_to),
        "the moved job is released at its new time"
    );
    let again = jobs
        .claim_due("c", moved_to, moved_to + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert!(jobs.complete(&again[0], "c").await.unwrap());
}

async fn a_retried_job_counts_the_attempt_and_waits_for_its_new_time(jobs: &dyn Jobs) {
    let scan = key(JobKind::Scan, "retried");
    jobs.schedule(&scan, t0()).await.unwrap();
    let first = jobs
        .claim_due("a", t0(), t0() + Duration::seconds(30), 10)
        .await
        .unwrap();
    let retry_at = t0() + Duration::seconds(2);
    assert!(jobs
        .retry(&first[0], "a", retry_at, "clamd unreachable")
        .await
        .unwrap());
    assert_eq!(jobs.get(&scan).await.unwrap(), Some((retry_at, 1)));
    let early = jobs
        .claim_due(
            "a",
            t0() + Duration::seconds(1),
            t0() + Duration::seconds(30),
            10,
        )
        .await
        .unwrap();
    assert!(
        early.is_empty(),
        "a retried job waits for its new time, lease released or not"
    );
    let second = jobs
        .claim_due("b", retry_at, retry_at + Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(
        second[0].attempts, 1,
        "the claim says how many attempts came before"
    );
    assert!(
        !jobs.retry(&first[0], "a", retry_at, "late").await.unwrap(),
        "a claimer that lost the job cannot retry it"
    );
    assert!(jobs.complete(&second[0], "b").await.unwrap());
}

async fn claims_take_the_earliest_jobs_first_up_to_the_limit(jobs: &dyn Jobs) {
    let keys: Vec<_> = (0..5)
        .map(|i| key(JobKind::TusExpiry, &format!("order-{i}")))
        .collect();
    for (i, k) in keys.iter().enumerate().rev() {
        jobs.schedule(k, t0() + Duration::seconds(i as i64))
            .await
            .unwrap();
    }
    let now = t0() + Duration::seconds(10);
    let lease = now + Duration::seconds(30);
    let first = jobs.claim_due("a", now, lease, 3).await.unwrap();
    let claimed: Vec<_> = first.iter().map(|j| j.key.clone()).collect();
    assert_eq!(
        claimed,
        keys[..3].to_vec(),
        "the earliest due jobs come first"
    );
    let rest = jobs.claim_due("b", now, lease, 10).await.unwrap();
    let claimed: Vec<_> = rest.iter().map(|j| j.key.clone()).collect();
    assert_eq!(
        claimed,
        keys[3..].to_vec(),
        "a job is claimed by one claimer only"
    );
    for job in &first {
        assert!(jobs.complete(job, "a").await.unwrap());
    }
    for job in &rest {
        assert!(jobs.complete(job, "b").await.unwrap());
    }
}

async fn a_cancelled_job_is_gone(jobs: &dyn Jobs) {
    let malware = key(JobKind::StuckCheck, "cancelled");
    jobs.schedule(&malware, t0()).await.unwrap();
    let claimed = jobs
        .claim_due("a", t0(), t0() + Duration::seconds(30), 10)
        .await
        .unwrap();
    jobs.cancel(&malware).await.unwrap();
    jobs.cancel(&malware).await.unwrap();
    assert_eq!(jobs.get(&malware).await.unwrap(), None);
    assert!(!jobs.complete(&claimed[0], "a").await.unwrap());
    let other = key(JobKind::StuckCheck, "kept");
    jobs.schedule(&other, t0()).await.unwrap();
    jobs.cancel(&malware).await.unwrap();
    assert!(
        jobs.get(&other).await.unwrap().is_some(),
        "cancel removes only its job"
    );
    jobs.cancel(&other).await.unwrap();
}

/// Runs the rules of jobs written with transfers against `metadata` and the `jobs` of the same store:
/// a transition's jobs are scheduled in its transaction, and a refused or replayed write schedules
/// nothing.
pub async fn transfer_jobs_suite(metadata: &dyn MetadataStore, jobs: &dyn Jobs) {
    use crate::ports::metadata::{Created, TransferChange};
    use broker_protocol::FileTransferStatus;
    resource(metadata, "j").await;
    let mut new = new_transfer("j", t0());
    new.idempotency = Some(("jobs-key".into(), "print".into()));
    let id = new.id;
    let expiry = key(JobKind::PurgeExpired, &id.to_string());
    let at = t0() + Duration::days(30);
    let created = metadata
        .create_transfer(new.clone(), vec![], vec![(expiry.clone(), at)])
        .await
        .unwrap();
    assert_eq!(created, Created::New(id));
    assert_eq!(
        jobs.get(&expiry).await.unwrap(),
        Some((at, 0)),
        "scheduled with the transfer"
    );
    let mut replay = new.clone();
    replay.id = uuid::Uuid::new_v4();
    let replayed = metadata
        .create_transfer(replay.clone(), vec![], vec![(expiry.clone(), t0())])
        .await
        .unwrap();
    assert_eq!(replayed, Created::Existing(id));
    assert_eq!(
        jobs.get(&expiry).await.unwrap(),
        Some((at, 0)),
        "a replay schedules nothing"
    );
    let grace = key(JobKind::PurgeAfterConfirm, &id.to_string());
    let change = |expected, due| TransferChange {
        new_status: Some((FileTransferStatus::UploadStarted, None)),
        jobs: vec![(grace.clone(), due)],
        ..TransferChange::new(id, expected, 0, t0())
    };
    let refused = change(FileTransferStatus::Published, t0());
    assert!(super::commit_current(metadata, refused).await.is_err());
    assert_eq!(
        jobs.get(&grace).await.unwrap(),
        None,
        "a refused change schedules nothing"
    );
    let due = t0() + Duration::hours(2);
    super::commit_current(metadata, change(FileTransferStatus::Initialized, due))
        .await
        .unwrap();
    assert_eq!(
        jobs.get(&grace).await.unwrap(),
        Some((due, 0)),
        "scheduled with the change"
    );
    let ending = |expected| TransferChange {
        new_status: Some((FileTransferStatus::Failed, None)),
        jobs: vec![],
        cancelled_jobs: vec![expiry.clone(), grace.clone()],
        vendor: None,
        ends_lease: None,
        begins_lease: None,
        ..change(expected, due)
    };
    assert!(
        super::commit_current(metadata, ending(FileTransferStatus::Published))
            .await
            .is_err()
    );
    assert!(
        jobs.get(&grace).await.unwrap().is_some(),
        "a refused change cancels nothing"
    );
    super::commit_current(metadata, ending(FileTransferStatus::UploadStarted))
        .await
        .unwrap();
    assert_eq!(
        jobs.get(&expiry).await.unwrap(),
        None,
        "cancelled with the change"
    );
    assert_eq!(
        jobs.get(&grace).await.unwrap(),
        None,
        "cancelled with the change"
    );
}
