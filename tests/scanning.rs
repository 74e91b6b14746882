//! Malware scanning end to end (spec 1.3, 4.5, 7.1): the broker configured with a real clamd (started
//! here, see `clamd.rs`), uploads over HTTP by every path, verdicts seen through the public API.

use crate::clamd::{random, Clamd, EICAR, SIGNATURE};
use crate::common::*;
use crate::support::*;
use crate::tus::{create, create_partial, finish, patch, patch_url};
use broker::config::{Config, LargeFileScan, ScanKind};
use broker_protocol::FileTransferStatus;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// A broker scanning with the clamd at `address` (`tcp:…` or `unix:…`), its config adjusted by
/// `adjust`.
async fn scanning_broker(
    address: String,
    adjust: impl FnOnce(&mut Config),
) -> (Fixture, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.scan.kind = ScanKind::Clamd;
    config.scan.address = Some(address);
    adjust(&mut config);
    (Fixture::on(TestServer::start_with(config).await).await, dir)
}

/// The broker's address of a clamd on TCP.
fn tcp(clamd: &Clamd) -> String {
    format!("tcp:127.0.0.1:{}", clamd.port)
}

/// Waits for the verdict: the transfer leaves UploadProcessing (and is never published meanwhile).
async fn verdict(
    f: &Fixture,
    id: Uuid,
    within: Duration,
) -> broker_protocol::transfer::FileTransferOverview {
    let deadline = Instant::now() + within;
    loop {
        let overview = f.sender.overview(id).await.unwrap();
        let status = overview.summary.file_transfer_status;
        if status != FileTransferStatus::UploadProcessing
            && status != FileTransferStatus::UploadStarted
        {
            return overview;
        }
        assert!(
            Instant::now() < deadline,
            "no verdict for {id} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_failed_as_malware(f: &Fixture, id: Uuid) {
    let overview = verdict(f, id, Duration::from_secs(60)).await;
    let s = &overview.summary;
    assert_eq!(s.file_transfer_status, FileTransferStatus::Failed);
    assert!(s.use_virus_scan);
    assert_eq!(
        s.file_transfer_status_text,
        format!(
            r#"Malware scan failed: Malicious. Extra details: {{"malwareNamesFound":["{SIGNATURE}"]}}"#
        )
    );
    let events = events_of(&f.maintenance, id).await;
    let of = |kind: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.event.type_.ends_with(kind))
            .map(|e| e.event.subject.clone())
            .collect()
    };
    assert_eq!(of(".uploadfailed").len(), 1);
    assert!(of(".published").is_empty(), "never published");
    let never = of(".fileneverconfirmeddownloaded");
    assert!(
        never
            .iter()
            .any(|s| s.ends_with(&RECIPIENT[RECIPIENT.len() - 9..])),
        "the recipient is told: {never:?}"
    );
    let refused = f.recipient.download(id, None).await.unwrap_err();
    assert_eq!(refused.code(), Some("BRO-00007"));
}

/// `len` random bytes with EICAR written at `at`.
fn infected(len: usize, at: usize) -> Vec<u8> {
    let mut bytes = random(len, 77);
    bytes[at..at + EICAR.len()].copy_from_slice(EICAR);
    bytes
}

#[tokio::test]
async fn eicar_alone_fails_the_transfer_tells_everyone_and_is_never_downloadable() {
    let clamd = Clamd::start(100 << 20).unwrap();
    let (f, _dir) = scanning_broker(tcp(&clamd), |_| {}).await;
    let id = f.initialize(&[RECIPIENT]).await;
    f.sender.upload(id, EICAR.to_vec()).await.unwrap();
    // The scan may already be over: whenever the recipient asks, the file is not theirs to take.
    let early = f.recipient.download(id, None).await.unwrap_err();
    assert_eq!(
        (early.status(), early.code()),
        (Some(403), Some("BRO-00007"))
    );
    // The end state: Failed as malware, no published event, a download refused.
    assert_failed_as_malware(&f, id).await;
    let types = event_types_of(&f.maintenance, id).await;
    assert!(types.contains(&"uploadprocessing".to_string()), "{types:?}");
    // And in between: the status went through UploadProcessing to Failed, never through Published.
    let history: Vec<FileTransferStatus> = f
        .sender
        .details(id)
        .await
        .unwrap()
        .file_transfer_status_history
        .iter()
        .map(|e| e.file_transfer_status)
        .collect();
    let processing = history
        .iter()
        .position(|s| *s == FileTransferStatus::UploadProcessing);
    let failed = history
        .iter()
        .position(|s| *s == FileTransferStatus::Failed);
    assert!(
        processing.is_some() && failed.is_some() && processing < failed,
        "{history:?}"
    );
    assert!(
        !history.contains(&FileTransferStatus::Published),
        "{history:?}"
    );
}

#[tokio::test]
async fn eicar_embedded_at_100_mib_into_a_200_mib_file_is_found() {
    let _alone = cpu_exclusive().await;
    let clamd = Clamd::start(100 << 20).unwrap();
    let (f, _dir) = scanning_broker(tcp(&clamd), |_| {}).await;
    let id = f.initialize(&[RECIPIENT]).await;
    f.sender
        .upload(id, infected(200 << 20, 100 << 20))
        .await
        .unwrap();
    assert_failed_as_malware(&f, id).await;
}

#[tokio::test]
async fn eicar_across_the_boundary_of_two_small_windows_is_found_in_their_overlap() {
    let clamd = Clamd::start(100 << 20).unwrap();
    let (f, _dir) = scanning_broker(tcp(&clamd), |c| {
        c.scan.window_bytes = 1 << 20;
        c.scan.overlap_bytes = 4096;
    })
    .await;
    let id = f.initialize(&[RECIPIENT]).await;
    let boundary = 1 << 20;
    f.sender
        .upload(id, infected(3 << 20, boundary - EICAR.len() / 2))
        .await
        .unwrap();
    assert_failed_as_malware(&f, id).await;
}

#[tokio::test]
async fn a_clean_90_mib_file_is_published_after_its_scan_with_use_virus_scan_true() {
    let _alone = cpu_exclusive().await;
    let clamd = Clamd::start(100 << 20).unwrap();
    let (f, _dir) = scanning_broker(tcp(&clamd), |_| {}).await;
    let content = random(90 << 20, 5);
    let id = f.initialize(&[RECIPIENT]).await;
    f.sender.upload(id, content.clone()).await.unwrap();
    let overview = verdict(&f, id, Duration::from_secs(60)).await;
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    assert!(overview.summary.use_virus_scan);
    f.assert_published(id, &content).await;
}

#[tokio::test]
async fn a_transfer_waiting_for_a_stopped_clamd_publishes_once_it_is_back_and_never_before() {
    // A unix socket in a directory of the test's own: no other process can take the address while
    // no clamd listens there (a TCP port, once freed, could be).
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("clamd.sock");
    let (f, _dir) = scanning_broker(format!("unix:{}", socket.display()), |_| {}).await;
    let content = random(100_000, 9);
    let id = f.initialize(&[RECIPIENT]).await;
    f.sender.upload(id, content.clone()).await.unwrap();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = f
            .sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status;
        assert_eq!(
            status,
            FileTransferStatus::UploadProcessing,
            "waits, neither published nor failed"
        );
    }
    let _back = Clamd::start_at(&socket, 100 << 20).unwrap();
    let overview = verdict(&f, id, Duration::from_secs(45)).await;
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    f.assert_published(id, &content).await;
}

#[tokio::test]
async fn resumable_joined_and_form_uploads_are_each_scanned() {
    let clamd = Clamd::start(100 << 20).unwrap();
    let (f, _dir) = scanning_broker(tcp(&clamd), |_| {}).await;
    // tus, one upload: EICAR in its second PATCH.
    let single = f.initialize(&[RECIPIENT]).await;
    let bytes = infected(300_000, 200_000);
    assert_eq!(create(&f, single, bytes.len() as u64).await.status(), 201);
    assert_eq!(patch(&f, single, 0, &bytes[..150_000]).await.status(), 204);
    assert_eq!(
        patch(&f, single, 150_000, &bytes[150_000..]).await.status(),
        204
    );
    // tus, parts joined: EICAR split across the two parts.
    let joined = f.initialize(&[RECIPIENT]).await;
    let bytes = infected(400_000, 200_000 - 10);
    let (a, b) = bytes.split_at(200_000);
    let first = create_partial(&f, joined, a.len()).await;
    let second = create_partial(&f, joined, b.len()).await;
    assert_eq!(patch_url(&f, &second, 0, b).await.status(), 204);
    assert_eq!(patch_url(&f, &first, 0, a).await.status(), 204);
    assert_eq!(finish(&f, joined, &[&first, &second]).await.status(), 201);
    // multipart form-data: initialize and upload in one request.
    let form = Multipart::new()
        .text("Metadata.FileName", "form.bin")
        .text("Metadata.ResourceId", RESOURCE)
        .text("Metadata.Sender", SENDER)
        .text("Metadata.Recipients", RECIPIENT)
        .text("Metadata.SendersFileTransferReference", "scanned form")
        .file("FileTransfer", "form.bin", &infected(50_000, 100));
    let response = post_multipart(&f.sender, form).await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let form_id: Uuid = body["fileTransferId"].as_str().unwrap().parse().unwrap();
    for id in [single, joined, form_id] {
        assert_failed_as_malware(&f, id).await;
    }
    // And a clean one by tus publishes.
    let clean = f.initialize(&[RECIPIENT]).await;
    let content = random(120_000, 3);
    assert_eq!(create(&f, clean, content.len() as u64).await.status(), 201);
    assert_eq!(patch(&f, clean, 0, &content).await.status(), 204);
    let overview = verdict(&f, clean, Duration::from_secs(60)).await;
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
}

#[tokio::test]
async fn a_broker_refusing_files_larger_than_a_scan_window_says_so_before_reading_them() {
    let clamd = Clamd::start(100 << 20).unwrap();
    let (f, _dir) = scanning_broker(tcp(&clamd), |c| {
        c.scan.window_bytes = 1 << 20;
        c.scan.overlap_bytes = 4096;
        c.scan.large_files = LargeFileScan::Refuse;
    })
    .await;
    let id = f.initialize(&[RECIPIENT]).await;
    let refused = f
        .sender
        .upload(id, vec![0; (1 << 20) + 1])
        .await
        .unwrap_err();
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(400), Some("BRO-09012"))
    );
    let tus = create(&f, id, (1 << 20) + 1).await;
    assert_eq!(tus.status(), 400);
    let problem: serde_json::Value = tus.json().await.unwrap();
    assert_eq!(problem["code"], "BRO-09012");
    // A file within one window goes through.
    let content = random(1 << 20, 8);
    f.sender.upload(id, content.clone()).await.unwrap();
    f.assert_published(id, &content).await;
}

#[tokio::test]
async fn a_sender_may_turn_the_scan_off_outside_production_and_the_overview_says_so() {
    let clamd = Clamd::start(100 << 20).unwrap();
    let (f, _dir) = scanning_broker(tcp(&clamd), |_| {}).await;
    let mut request = f.initialize_body(&[RECIPIENT]);
    request.disable_virus_scan = Some(true);
    let id = f.sender.initialize(&request).await.unwrap();
    f.sender.upload(id, EICAR.to_vec()).await.unwrap();
    let overview = f.sender.overview(id).await.unwrap();
    assert!(!overview.summary.use_virus_scan);
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
}
