//! Scanning on the in-memory scanner with the broker's clock moved by the test: the verdicts, a
//! scanner that is away, windows, refusals, and a scan that outlives a restart.

use crate::memory::{EICAR, EICAR_SIGNATURE};
use crate::ports::jobs::{JobKey, JobKind, Jobs};
use crate::ports::{BlobStore, MetadataStore, Outbox};
use crate::test_support::{setup_scanned, Setup, RECIPIENT};
use crate::{Error, LargeFiles, ScanSettings};
use broker_protocol::{ErrorCode, FileTransferStatus};
use chrono::Duration;
use uuid::Uuid;

async fn status(s: &Setup, id: Uuid) -> (FileTransferStatus, Option<String>) {
    let view = s.store.transfer(id).await.unwrap().unwrap();
    (view.status, view.status_text)
}

/// The transfer's event types (their last segment) and subjects, in order.
async fn events(s: &Setup, id: Uuid) -> Vec<(String, String)> {
    let all = s.store.events_after(0, 10_000).await.unwrap();
    all.into_iter()
        .filter(|e| e.event.resourceinstance == id.to_string())
        .map(|e| {
            let kind = e.event.type_.rsplit('.').next().unwrap_or_default();
            (kind.to_string(), e.event.subject)
        })
        .collect()
}

/// Runs what is due and waits for the scans it started.
async fn run_jobs(s: &Setup) {
    s.broker.run_due_jobs().await.unwrap();
    s.broker.scans_idle().await;
}

fn windows(window: u64, overlap: u64) -> ScanSettings {
    ScanSettings {
        window_bytes: window,
        overlap_bytes: overlap,
        ..Default::default()
    }
}

fn clean_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn a_scanned_upload_waits_in_upload_processing_and_a_clean_verdict_publishes_it() {
    let s = setup_scanned(Default::default()).await;
    let id = s.publish(b"clean content").await;
    let view = s.store.transfer(id).await.unwrap().unwrap();
    assert!(view.use_virus_scan);
    assert_eq!(view.status, FileTransferStatus::UploadProcessing);
    let download = s.broker.open_download(&s.recipient(), id).await;
    assert!(download.is_err(), "nothing is downloadable before the scan");
    run_jobs(&s).await;
    assert_eq!(status(&s, id).await, (FileTransferStatus::Published, None));
    let kinds: Vec<String> = events(&s, id).await.into_iter().map(|e| e.0).collect();
    let processing = kinds.iter().position(|k| k == "uploadprocessing").unwrap();
    let published = kinds.iter().position(|k| k == "published").unwrap();
    assert!(processing < published, "{kinds:?}");
    assert_eq!(s.scanner.as_ref().unwrap().scans(), 1);
    let scan = JobKey::new(JobKind::Scan, id.to_string());
    assert_eq!(
        s.store.jobs().get(&scan).await.unwrap(),
        None,
        "the scan is done"
    );
}

#[tokio::test]
async fn malware_fails_the_transfer_with_the_spec_text_and_purges_its_bytes_at_once() {
    let s = setup_scanned(Default::default()).await;
    let mut content = clean_bytes(10_000);
    content.extend_from_slice(EICAR);
    let id = s.publish(&content).await;
    run_jobs(&s).await;
    let (state, text) = status(&s, id).await;
    assert_eq!(state, FileTransferStatus::Failed);
    assert_eq!(
        text.as_deref(),
        Some(
            format!(
                r#"Malware scan failed: Malicious. Extra details: {{"malwareNamesFound":["{EICAR_SIGNATURE}"]}}"#
            )
            .as_str()
        )
    );
    let events = events(&s, id).await;
    assert!(events.iter().any(|(k, _)| k == "uploadfailed"));
    assert!(events
        .iter()
        .any(|(k, to)| k == "fileneverconfirmeddownloaded" && to.ends_with(&RECIPIENT[5..])));
    assert!(!events.iter().any(|(k, _)| k == "published"));
    assert!(!s.blobs.holds(id), "the bytes are gone");
    assert!(s.broker.open_download(&s.recipient(), id).await.is_err());
}

#[tokio::test]
async fn a_scanner_that_is_away_leaves_the_transfer_unpublished_and_retried_until_it_answers() {
    let s = setup_scanned(Default::default()).await;
    let scanner = s.scanner.clone().unwrap();
    scanner.set_unreachable(true);
    let id = s.publish(b"waits for the scanner").await;
    let scan = JobKey::new(JobKind::Scan, id.to_string());
    let mut waits = vec![];
    for _ in 0..8 {
        run_jobs(&s).await;
        assert_eq!(status(&s, id).await.0, FileTransferStatus::UploadProcessing);
        let (due, attempts) = s.store.jobs().get(&scan).await.unwrap().unwrap();
        waits.push((due - crate::ports::Clock::now(s.clock.as_ref())).num_seconds());
        assert!(attempts > 0);
        s.clock.advance(Duration::seconds(30));
    }
    assert_eq!(
        waits,
        vec![1, 2, 4, 8, 16, 30, 30, 30],
        "backoff capped at 30 s"
    );
    assert!(s.broker.stuck_alerts() == 0);
    s.clock.advance(Duration::minutes(11));
    run_jobs(&s).await;
    assert!(
        s.broker.stuck_alerts() >= 1,
        "15 min without a scan raise the alert"
    );
    assert_eq!(status(&s, id).await.0, FileTransferStatus::UploadProcessing);
    scanner.set_unreachable(false);
    s.clock.advance(Duration::seconds(30));
    run_jobs(&s).await;
    assert_eq!(status(&s, id).await.0, FileTransferStatus::Published);
}

#[tokio::test]
async fn a_scan_scheduled_before_a_restart_runs_once_after_it() {
    let s = setup_scanned(Default::default()).await;
    let id = s.publish(b"scanned after the restart").await;
    let restarted = s.restart();
    drop(s);
    run_jobs(&restarted).await;
    assert_eq!(
        status(&restarted, id).await.0,
        FileTransferStatus::Published
    );
    run_jobs(&restarted).await;
    assert_eq!(restarted.scanner.as_ref().unwrap().scans(), 1);
}

#[tokio::test]
async fn malware_straddling_two_windows_is_found_in_their_overlap() {
    let window = 1 << 20;
    let s = setup_scanned(windows(window, 4096)).await;
    let mut content = clean_bytes(3 * window as usize);
    let at = window as usize - EICAR.len() / 2;
    content[at..at + EICAR.len()].copy_from_slice(EICAR);
    let id = s.publish(&content).await;
    run_jobs(&s).await;
    assert_eq!(status(&s, id).await.0, FileTransferStatus::Failed);
}

#[tokio::test]
async fn a_clean_file_larger_than_a_window_is_published_and_says_how_it_was_scanned() {
    let window = 1 << 20;
    let s = setup_scanned(windows(window, 4096)).await;
    let id = s.publish(&clean_bytes(2 * window as usize + 5)).await;
    run_jobs(&s).await;
    let (state, text) = status(&s, id).await;
    assert_eq!(state, FileTransferStatus::Published);
    assert_eq!(
        text.as_deref(),
        Some("Malware scan: no threats found in 3 overlapping windows of 1048576 bytes (overlap 4096 bytes)")
    );
    assert_eq!(s.scanner.as_ref().unwrap().scans(), 3);
}

#[tokio::test]
async fn a_broker_that_refuses_large_files_refuses_a_declared_length_over_one_window() {
    let s = setup_scanned(ScanSettings {
        large_files: LargeFiles::Refuse,
        ..windows(1 << 20, 4096)
    })
    .await;
    let id = s.initialize(None).await;
    let body = futures::stream::iter(vec![Ok::<_, String>(bytes::Bytes::from(vec![0; 10]))]);
    let refused = s
        .broker
        .upload(&s.sender, id, Some((1 << 20) + 1), body)
        .await;
    assert!(matches!(
        refused,
        Err(Error::Refused(ErrorCode::FileTooLargeToScan))
    ));
    let tus = s
        .broker
        .tus_create::<futures::stream::Empty<Result<bytes::Bytes, String>>, String>(
            &s.sender,
            id,
            Some((1 << 20) + 1),
            None,
        )
        .await;
    assert!(matches!(
        tus,
        Err(Error::Refused(ErrorCode::FileTooLargeToScan))
    ));
    assert_eq!(status(&s, id).await.0, FileTransferStatus::Initialized);
    let file = crate::ports::ObjectKey::file(id);
    assert!(
        s.blobs.read(&file, 0, 1).await.is_err(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn a_resumable_upload_and_a_joined_one_are_scanned_before_they_publish() {
    let s = setup_scanned(Default::default()).await;
    let single = s.initialize(None).await;
    s.upload_part_of(single, 5, b"hello").await;
    let joined = s.initialize(None).await;
    let mut infected = b"part one ".to_vec();
    infected.extend_from_slice(EICAR);
    let pieces: [&[u8]; 2] = [b"clean first part", &infected];
    let parts = s.create_parts(joined, &pieces).await;
    s.send_parts(joined, parts.iter().zip(pieces)).await;
    s.join_parts(joined, &parts).await;
    // Both are verified in the background, then scanned by the jobs that verification schedules.
    scanned_to(&s, single, FileTransferStatus::Published).await;
    scanned_to(&s, joined, FileTransferStatus::Failed).await;
    assert_eq!(s.scanner.as_ref().unwrap().scans(), 2);
}

async fn scanned_to(s: &Setup, id: Uuid, expected: FileTransferStatus) {
    for _ in 0..500 {
        run_jobs(s).await;
        let now = status(s, id).await.0;
        if now == expected {
            return;
        }
        assert_eq!(
            now,
            FileTransferStatus::UploadProcessing,
            "never published unscanned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the transfer never reached {expected:?}");
}
