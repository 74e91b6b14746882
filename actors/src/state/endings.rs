//! How a transfer's file ends: the scan's verdict (published, or failed with its bytes purged at once)
//! and the purge, with the events each owes (spec 3, 7.1, 7.3).

use super::{
    publish_events, Audience, Effect, Outcome, Phase, ScanResult, StoredFile, TransferState,
};
use broker_protocol::events::EventType;
use broker_protocol::{FileTransferStatus, RecipientStatus};

/// Clean: published (the MD5 was checked before the scan). Malicious: Failed with the spec's text, the
/// bytes deleted at once, the status kept until the expiry purge (spec 4.5).
pub(super) fn record_scan(
    state: &TransferState,
    file: &StoredFile,
    result: &ScanResult,
) -> Outcome {
    let (phase, effects) = match result {
        ScanResult::Clean | ScanResult::CleanInWindows { .. } => {
            let text = match result {
                ScanResult::CleanInWindows {
                    windows,
                    window_bytes,
                    overlap_bytes,
                } => Some(format!(
                    "Malware scan: no threats found in {windows} overlapping windows of {window_bytes} bytes (overlap {overlap_bytes} bytes)"
                )),
                _ => None,
            };
            let mut effects = vec![Effect::RecordStatus(FileTransferStatus::Published, text)];
            effects.extend(publish_events(state));
            (Phase::Published(file.clone()), effects)
        }
        ScanResult::Malicious(names) => {
            let details = serde_json::json!({ "malwareNamesFound": names });
            let text = format!("Malware scan failed: Malicious. Extra details: {details}");
            // The malware purge (spec 7.1): bytes gone at once, no Purged status, no `filepurged`.
            let mut effects = vec![
                Effect::RecordStatus(FileTransferStatus::Failed, Some(text)),
                Effect::Emit(EventType::UploadFailed, Audience::Sender),
                Effect::DeleteBlob,
            ];
            effects.extend(never_confirmed(state));
            (Phase::Failed, effects)
        }
    };
    Outcome {
        next: TransferState {
            phase,
            ..state.clone()
        },
        effects,
        reply: Ok(()),
    }
}

pub(super) fn purge(state: &TransferState) -> Outcome {
    let mut effects = vec![
        Effect::RecordStatus(FileTransferStatus::Purged, None),
        Effect::DeleteBlob,
        Effect::Emit(EventType::FilePurged, Audience::Sender),
    ];
    effects.extend(never_confirmed(state));
    Outcome {
        next: TransferState {
            phase: Phase::Purged,
            ..state.clone()
        },
        effects,
        reply: Ok(()),
    }
}

/// `fileneverconfirmeddownloaded` at any purge (spec 3): to each recipient below DownloadConfirmed, and
/// once to the sender if there is one.
fn never_confirmed(state: &TransferState) -> Vec<Effect> {
    let mut effects: Vec<Effect> = state
        .recipients
        .iter()
        .filter(|(_, s)| *s != RecipientStatus::DownloadConfirmed)
        .map(|(r, _)| {
            Effect::Emit(
                EventType::FileNeverConfirmedDownloaded,
                Audience::Recipient(r.clone()),
            )
        })
        .collect();
    if !effects.is_empty() {
        effects.push(Effect::Emit(
            EventType::FileNeverConfirmedDownloaded,
            Audience::Sender,
        ));
    }
    effects
}
