use super::*;
use proptest::prelude::*;

fn file(md5: &str) -> StoredFile {
    StoredFile {
        size: 3,
        md5: md5.into(),
        sha256: "ab".into(),
    }
}

fn state(phase: Phase, recipients: &[&str]) -> TransferState {
    TransferState {
        phase,
        recipients: recipients
            .iter()
            .map(|r| (r.to_string(), RecipientStatus::Initialized))
            .collect(),
        declared_md5: None,
        use_virus_scan: false,
        purge_after_all_confirmed: true,
    }
}

fn emits(outcome: &Outcome) -> Vec<(EventType, Audience)> {
    outcome
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Emit(t, a) => Some((*t, a.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn an_upload_without_scan_publishes_to_sender_and_every_recipient() {
    let s = state(Phase::UploadStarted, &["0192:1", "0192:2"]);
    let out = transition(&s, &Command::CompleteUpload(file("aa"))).unwrap();
    assert_eq!(out.next.phase, Phase::Published(file("aa")));
    assert_eq!(out.reply, Ok(()));
    assert_eq!(
        emits(&out),
        vec![
            (EventType::Published, Audience::Sender),
            (EventType::Published, Audience::Recipient("0192:1".into())),
            (EventType::Published, Audience::Recipient("0192:2".into())),
        ]
    );
}

#[test]
fn the_expiry_purges_a_transfer_unless_its_grace_purge_is_pending() {
    let published = state(Phase::Published(file("aa")), &["0192:1"]);
    let out = transition(&published, &Command::Expire).unwrap();
    assert_eq!(out.next.phase, Phase::Purged);
    assert!(out.effects.contains(&Effect::DeleteBlob));
    let mut confirmed = state(Phase::AllConfirmedDownloaded(file("aa")), &["0192:1"]);
    let kept = transition(&confirmed, &Command::Expire).unwrap();
    assert_eq!(kept.next, confirmed, "the grace job purges it");
    assert!(kept.effects.is_empty());
    confirmed.purge_after_all_confirmed = false;
    let purged = transition(&confirmed, &Command::Expire).unwrap();
    assert_eq!(purged.next.phase, Phase::Purged);
    let failed = state(Phase::Failed, &["0192:1"]);
    assert_eq!(
        transition(&failed, &Command::Expire).unwrap().next.phase,
        Phase::Purged
    );
}

#[test]
fn initialize_schedules_the_purge_at_the_expiration_time() {
    let out = initialize(state(Phase::Initialized, &["0192:1"]));
    assert!(out.effects.contains(&Effect::SchedulePurgeAtExpiry));
    assert_eq!(
        emits(&out),
        vec![(EventType::FileTransferInitialized, Audience::Sender)]
    );
}

#[test]
fn a_clean_scan_publishes_a_file_awaiting_its_scan_to_everyone() {
    let s = state(Phase::UploadProcessing(file("aa")), &["0192:1"]);
    let out = transition(&s, &Command::RecordScan(ScanResult::Clean)).unwrap();
    assert_eq!(out.next.phase, Phase::Published(file("aa")));
    assert_eq!(
        emits(&out),
        vec![
            (EventType::Published, Audience::Sender),
            (EventType::Published, Audience::Recipient("0192:1".into())),
        ]
    );
}

#[test]
fn a_malicious_scan_fails_the_transfer_with_the_signature_and_purges_its_bytes_at_once() {
    let s = state(Phase::UploadProcessing(file("aa")), &["0192:1"]);
    let found = ScanResult::Malicious(vec!["Eicar-Test-Signature".into()]);
    let out = transition(&s, &Command::RecordScan(found)).unwrap();
    assert_eq!(out.next.phase, Phase::Failed);
    let text = "Malware scan failed: Malicious. Extra details: {\"malwareNamesFound\":[\"Eicar-Test-Signature\"]}";
    assert!(out.effects.contains(&Effect::RecordStatus(
        FileTransferStatus::Failed,
        Some(text.into())
    )));
    assert!(out.effects.contains(&Effect::DeleteBlob));
    assert_eq!(
        emits(&out),
        vec![
            (EventType::UploadFailed, Audience::Sender),
            (
                EventType::FileNeverConfirmedDownloaded,
                Audience::Recipient("0192:1".into())
            ),
            (EventType::FileNeverConfirmedDownloaded, Audience::Sender),
        ],
        "the malware purge tells who never got the file, without `filepurged`"
    );
}

#[test]
fn a_scan_verdict_before_the_upload_completed_is_refused_and_a_repeated_one_changes_nothing() {
    let early = state(Phase::UploadStarted, &["0192:1"]);
    let refused = transition(&early, &Command::RecordScan(ScanResult::Clean));
    assert_eq!(refused.unwrap_err(), ErrorCode::NotYetUploadProcessing);
    let published = state(Phase::Published(file("aa")), &["0192:1"]);
    let again = transition(&published, &Command::RecordScan(ScanResult::Clean)).unwrap();
    assert_eq!(again.next, published);
    assert!(again.effects.is_empty());
}

#[test]
fn a_checksum_mismatch_fails_the_transfer_deletes_the_bytes_and_emits_nothing() {
    let mut s = state(Phase::UploadStarted, &["0192:1"]);
    s.declared_md5 = Some("bb".into());
    let out = transition(&s, &Command::CompleteUpload(file("aa"))).unwrap();
    assert_eq!(out.next.phase, Phase::Failed);
    assert_eq!(out.reply, Err(ErrorCode::ChecksumMismatch));
    assert!(out.effects.contains(&Effect::DeleteBlob));
    assert!(emits(&out).is_empty());
}

#[test]
fn a_scanned_transfer_waits_in_upload_processing() {
    let mut s = state(Phase::UploadStarted, &["0192:1"]);
    s.use_virus_scan = true;
    let out = transition(&s, &Command::CompleteUpload(file("aa"))).unwrap();
    assert_eq!(out.next.phase, Phase::UploadProcessing(file("aa")));
    assert_eq!(
        emits(&out),
        vec![(EventType::UploadProcessing, Audience::Sender)]
    );
}

#[test]
fn an_upload_may_restart_until_processing_begins() {
    let s = state(Phase::UploadStarted, &["0192:1"]);
    assert_eq!(transition(&s, &Command::StartUpload).unwrap().next, s);
    let published = state(Phase::Published(file("aa")), &["0192:1"]);
    assert_eq!(
        transition(&published, &Command::StartUpload),
        Err(ErrorCode::FileTransferAlreadyUploaded)
    );
}

#[test]
fn a_storage_failure_fails_the_transfer_with_an_uploadfailed_event() {
    let s = state(Phase::UploadStarted, &["0192:1"]);
    let out = transition(&s, &Command::FailUpload(UploadFailure::Storage)).unwrap();
    assert_eq!(out.next.phase, Phase::Failed);
    assert_eq!(out.reply, Err(ErrorCode::UploadFailed));
    assert_eq!(
        emits(&out),
        vec![(EventType::UploadFailed, Audience::Sender)]
    );
}

#[test]
fn confirming_needs_a_download_first_and_is_idempotent() {
    let s = state(Phase::Published(file("aa")), &["0192:1", "0192:2"]);
    let confirm = Command::ConfirmDownload {
        recipient: "0192:1".into(),
    };
    assert_eq!(
        transition(&s, &confirm),
        Err(ErrorCode::ConfirmBeforeDownload)
    );
    let s = transition(
        &s,
        &Command::RecordDownload {
            recipient: "0192:1".into(),
        },
    )
    .unwrap()
    .next;
    let once = transition(&s, &confirm).unwrap();
    assert_eq!(once.next.phase, Phase::Published(file("aa")));
    assert_eq!(
        emits(&once),
        vec![
            (
                EventType::DownloadConfirmed,
                Audience::Recipient("0192:1".into())
            ),
            (EventType::DownloadConfirmed, Audience::Sender),
        ]
    );
    let twice = transition(&once.next, &confirm).unwrap();
    assert!(twice.effects.is_empty());
}

#[test]
fn the_last_confirmation_moves_to_all_confirmed_downloaded_and_schedules_the_purge() {
    let mut s = state(Phase::Published(file("aa")), &["0192:1", "0192:2"]);
    for r in ["0192:1", "0192:2"] {
        s = transition(
            &s,
            &Command::RecordDownload {
                recipient: r.into(),
            },
        )
        .unwrap()
        .next;
    }
    s = transition(
        &s,
        &Command::ConfirmDownload {
            recipient: "0192:1".into(),
        },
    )
    .unwrap()
    .next;
    let last = transition(
        &s,
        &Command::ConfirmDownload {
            recipient: "0192:2".into(),
        },
    )
    .unwrap();
    assert_eq!(last.next.phase, Phase::AllConfirmedDownloaded(file("aa")));
    assert!(last.effects.contains(&Effect::SchedulePurgeAfterGrace));
    assert!(emits(&last).contains(&(EventType::AllConfirmedDownloaded, Audience::Sender)));
    assert_eq!(
        transition(
            &last.next,
            &Command::ConfirmDownload {
                recipient: "0192:2".into()
            }
        ),
        Err(ErrorCode::ConfirmRequiresPublished)
    );
}

#[test]
fn confirming_before_any_upload_says_no_file_uploaded() {
    let s = state(Phase::Initialized, &["0192:1"]);
    assert_eq!(
        transition(
            &s,
            &Command::ConfirmDownload {
                recipient: "0192:1".into()
            }
        ),
        Err(ErrorCode::NoFileUploaded)
    );
}

#[test]
fn a_purge_tells_unconfirmed_recipients_and_the_sender_once() {
    let s = state(Phase::Published(file("aa")), &["0192:1", "0192:2"]);
    let out = transition(&s, &Command::Purge).unwrap();
    let never: Vec<_> = emits(&out)
        .into_iter()
        .filter(|(t, _)| *t == EventType::FileNeverConfirmedDownloaded)
        .collect();
    assert_eq!(never.len(), 3);
    assert!(out.effects.contains(&Effect::DeleteBlob));
}

#[test]
fn a_resumable_upload_waits_for_its_check_in_upload_processing_and_announces_only_when_asked() {
    let s = state(Phase::UploadStarted, &["0192:1"]);
    for announce in [true, false] {
        let out = transition(&s, &Command::AwaitVerification { announce }).unwrap();
        assert_eq!(out.next.phase, Phase::Verifying);
        assert_eq!(
            out.next.phase.status(),
            FileTransferStatus::UploadProcessing
        );
        let expected = if announce {
            vec![(EventType::UploadProcessing, Audience::Sender)]
        } else {
            vec![]
        };
        assert_eq!(emits(&out), expected);
    }
    let published = state(Phase::Published(file("aa")), &["0192:1"]);
    assert!(transition(&published, &Command::AwaitVerification { announce: true }).is_err());
}

#[test]
fn a_background_checksum_mismatch_fails_the_transfer_with_uploadfailed_and_removes_the_bytes() {
    let mut s = state(Phase::Verifying, &["0192:1"]);
    s.declared_md5 = Some("aa".into());
    let out = transition(&s, &Command::CompleteUpload(file("bb"))).unwrap();
    assert_eq!(out.next.phase, Phase::Failed);
    assert_eq!(out.reply, Err(ErrorCode::ChecksumMismatch));
    assert!(out.effects.contains(&Effect::DeleteBlob));
    assert_eq!(
        emits(&out),
        vec![(EventType::UploadFailed, Audience::Sender)]
    );
}

#[test]
fn a_verified_resumable_upload_is_published_or_stays_processing_for_its_scan() {
    let mut s = state(Phase::Verifying, &["0192:1"]);
    s.declared_md5 = Some("aa".into());
    let out = transition(&s, &Command::CompleteUpload(file("aa"))).unwrap();
    assert_eq!(out.next.phase, Phase::Published(file("aa")));
    assert!(emits(&out).contains(&(EventType::Published, Audience::Recipient("0192:1".into()))));
    s.use_virus_scan = true;
    let out = transition(&s, &Command::CompleteUpload(file("aa"))).unwrap();
    assert_eq!(out.next.phase, Phase::UploadProcessing(file("aa")));
    assert!(
        emits(&out).is_empty(),
        "already announced (or silent for concatenation)"
    );
    assert!(!out
        .effects
        .iter()
        .any(|e| matches!(e, Effect::RecordStatus(..))));
}

fn any_command() -> impl Strategy<Value = Command> {
    let recipient = prop_oneof![Just("0192:1".to_string()), Just("0192:2".to_string())];
    let md5 = prop_oneof![Just("aa".to_string()), Just("bb".to_string())];
    prop_oneof![
        Just(Command::StartUpload),
        md5.prop_map(|m| Command::CompleteUpload(file(&m))),
        Just(Command::FailUpload(UploadFailure::Storage)),
        any::<bool>().prop_map(|announce| Command::AwaitVerification { announce }),
        recipient
            .clone()
            .prop_map(|recipient| Command::RecordDownload { recipient }),
        recipient.prop_map(|recipient| Command::ConfirmDownload { recipient }),
        Just(Command::RecordScan(ScanResult::Clean)),
        Just(Command::RecordScan(ScanResult::Malicious(vec!["x".into()]))),
        Just(Command::Purge),
        Just(Command::Expire),
        Just(Command::FailStuck),
    ]
}

proptest! {
    /// Invariants over any command sequence: nothing is published without a verified file, a purged
    /// transfer stays purged, a scanned one is published only by a clean verdict, recipient statuses never fall, a refused command changes nothing,
    /// the stuck check is cancelled exactly when the upload ends, the purges when the transfer is purged, and a scan is scheduled exactly when a scanned file is stored.
    #[test]
    fn the_lifecycle_invariants_hold_for_any_command_sequence(
        commands in proptest::collection::vec(any_command(), 0..30),
        declared in proptest::option::of(Just("aa".to_string())),
        scan in any::<bool>(),
    ) {
        let mut s = state(Phase::Initialized, &["0192:1", "0192:2"]);
        s.declared_md5 = declared.clone();
        s.use_virus_scan = scan;
        for c in &commands {
            let before = s.clone();
            match transition(&s, c) {
                Err(_) => {}
                Ok(out) => {
                    if let Some(f) = out.next.phase.stored() {
                        if let Some(d) = &declared { prop_assert_eq!(&f.md5, d); }
                    }
                    if before.phase == Phase::Purged { prop_assert_eq!(&out.next.phase, &Phase::Purged); }
                    let newly_published = matches!(out.next.phase, Phase::Published(_)) && !matches!(before.phase, Phase::Published(_));
                    if scan && newly_published { prop_assert_eq!(c, &Command::RecordScan(ScanResult::Clean)); }
                    for ((_, a), (_, b)) in before.recipients.iter().zip(out.next.recipients.iter()) {
                        prop_assert!(b >= a);
                    }
                    let status_changed = before.phase.status() != out.next.phase.status();
                    let recorded = out.effects.iter().any(|e| matches!(e, Effect::RecordStatus(..)));
                    prop_assert_eq!(status_changed, recorded);
                    let left_upload = before.phase.is_uploading() && !out.next.phase.is_uploading();
                    prop_assert_eq!(left_upload, out.effects.contains(&Effect::CancelStuckCheck));
                    let purged = before.phase != Phase::Purged && out.next.phase == Phase::Purged;
                    prop_assert_eq!(purged, out.effects.contains(&Effect::CancelPurges));
                    let to_scan = !matches!(before.phase, Phase::UploadProcessing(_)) && matches!(out.next.phase, Phase::UploadProcessing(_));
                    prop_assert_eq!(to_scan, out.effects.contains(&Effect::ScheduleScan));
                    if to_scan { prop_assert!(scan); }
                    s = out.next;
                }
            }
        }
    }
}

fn every_phase() -> Vec<Phase> {
    vec![
        Phase::Initialized,
        Phase::UploadStarted,
        Phase::Verifying,
        Phase::UploadProcessing(file("aa")),
        Phase::Published(file("aa")),
        Phase::AllConfirmedDownloaded(file("aa")),
        Phase::Purged,
        Phase::Failed,
        Phase::Cancelled,
    ]
}

#[test]
fn the_read_side_sees_each_phase_as_its_own_stage() {
    for phase in every_phase() {
        assert_eq!(
            Stage::of(phase.status(), phase.stored().is_some()),
            phase.stage(),
            "{phase:?}"
        );
    }
}

#[test]
fn the_read_side_allows_an_upload_or_a_download_exactly_when_the_transition_does() {
    for phase in every_phase() {
        let s = state(phase.clone(), &["0192:1"]);
        let stage = phase.stage();
        assert_eq!(
            transition(&s, &Command::StartUpload).is_ok(),
            stage.accepts_upload(),
            "StartUpload from {phase:?}"
        );
        let download = Command::RecordDownload {
            recipient: "0192:1".into(),
        };
        assert_eq!(
            transition(&s, &download).is_ok(),
            stage.is_downloadable(),
            "RecordDownload from {phase:?}"
        );
        let scan = Command::RecordScan(ScanResult::Clean);
        if stage.awaits_scan() {
            assert!(
                transition(&s, &scan).is_ok(),
                "a scan's verdict from {phase:?}"
            );
        }
        assert!(
            !(stage.accepts_upload() && stage.upload_over()),
            "{phase:?}: an upload cannot be both open and over"
        );
    }
}
