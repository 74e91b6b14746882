//! The file-transfer lifecycle as a pure function: `transition(state, command) -> outcome`.
//!
//! No I/O happens here. The supervisor persists an outcome's effects (one DB transaction, events included)
//! before it acknowledges the command, then performs the side effects (such as deleting a blob).

use broker_protocol::events::EventType;
use broker_protocol::{ErrorCode, FileTransferStatus, RecipientStatus};

mod endings;
mod stage;
use endings::{purge, record_scan};
pub use stage::Stage;

/// What is known about a stored, synced file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    pub size: u64,
    /// Lower-case hex MD5 of the whole file.
    pub md5: String,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
}

/// Where a transfer is in its life, carrying the data that exists at that point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Initialized,
    UploadStarted,
    /// Every byte is stored (a resumable upload's last request, or its parts joined); the whole-file
    /// MD5 check and the publish run in the background. Status UploadProcessing.
    Verifying,
    UploadProcessing(StoredFile),
    Published(StoredFile),
    AllConfirmedDownloaded(StoredFile),
    Purged,
    Failed,
    Cancelled,
}

impl Phase {
    pub fn status(&self) -> FileTransferStatus {
        match self {
            Phase::Initialized => FileTransferStatus::Initialized,
            Phase::UploadStarted => FileTransferStatus::UploadStarted,
            Phase::Verifying | Phase::UploadProcessing(_) => FileTransferStatus::UploadProcessing,
            Phase::Published(_) => FileTransferStatus::Published,
            Phase::AllConfirmedDownloaded(_) => FileTransferStatus::AllConfirmedDownloaded,
            Phase::Purged => FileTransferStatus::Purged,
            Phase::Failed => FileTransferStatus::Failed,
            Phase::Cancelled => FileTransferStatus::Cancelled,
        }
    }

    /// The stored file while it can be read.
    pub fn stored(&self) -> Option<&StoredFile> {
        match self {
            Phase::UploadProcessing(f) | Phase::Published(f) | Phase::AllConfirmedDownloaded(f) => {
                Some(f)
            }
            _ => None,
        }
    }

    /// Still being uploaded or verified: the phases a stuck check watches.
    pub fn is_uploading(&self) -> bool {
        self.stage().is_uploading()
    }

    pub fn is_downloadable(&self) -> bool {
        self.stage().is_downloadable()
    }
}

/// The lifecycle-relevant state of one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferState {
    pub phase: Phase,
    /// Each recipient (`0192:NNN`) with its current (highest) status.
    pub recipients: Vec<(String, RecipientStatus)>,
    /// The MD5 declared at initialize, if any.
    pub declared_md5: Option<String>,
    pub use_virus_scan: bool,
    pub purge_after_all_confirmed: bool,
}

/// Why an upload ended without a verified file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadFailure {
    /// Our storage failed (disk full, I/O error): the transfer fails.
    Storage,
}

/// What a transfer can be asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A binary upload is about to stream.
    StartUpload,
    /// A resumable upload stored its last byte; verifying and publishing follow in the background.
    /// `announce` emits `uploadprocessing` (single uploads with a check pending; never for concatenation).
    AwaitVerification { announce: bool },
    /// The upload streamed completely and the file is synced (from Verifying: the background check ran).
    CompleteUpload(StoredFile),
    /// The upload failed on our side.
    FailUpload(UploadFailure),
    /// A recipient started a download.
    RecordDownload { recipient: String },
    /// A recipient confirms its download.
    ConfirmDownload { recipient: String },
    /// The malware scan of the stored file (status UploadProcessing) ended with a verdict.
    RecordScan(ScanResult),
    /// The file's time is up (grace after all confirmed).
    Purge,
    /// The stuck check found the upload abandoned in UploadStarted (no request for a long time).
    FailStuck,
    /// The transfer reached its expiration time: purged, unless every recipient confirmed and the
    /// resource purges after confirmation (its grace job does it then).
    Expire,
}

/// What the malware scan of a stored file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanResult {
    Clean,
    /// Clean in every one of the overlapping windows a file larger than the scanner's stream limit
    /// was sent in (the published status says so).
    CleanInWindows {
        windows: u32,
        window_bytes: u64,
        overlap_bytes: u64,
    },
    /// The scanner's names for what it found.
    Malicious(Vec<String>),
}

/// Who an event goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Sender,
    Recipient(String),
}

/// A consequence of a transition, to be persisted (or carried out) by the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Append a status row (with an optional detailed text) and make it current.
    RecordStatus(FileTransferStatus, Option<String>),
    /// Store the verified file's size and hashes (and its MD5 as checksum when none was declared).
    RecordStoredFile(StoredFile),
    /// Append a recipient status row; the recipient's current status is the highest reached.
    RecordRecipient(String, RecipientStatus),
    Emit(EventType, Audience),
    /// Schedule the purge at the transfer's expiration time.
    SchedulePurgeAtExpiry,
    /// Check this long from now whether the transfer is stuck where it is.
    ScheduleStuckCheck(chrono::Duration),
    /// The transfer has left the upload: its stuck check has nothing left to watch.
    CancelStuckCheck,
    /// The transfer is purged: no purge is left to do.
    CancelPurges,
    /// The stored file waits for its malware scan: run it now (a durable job, retried until a verdict).
    ScheduleScan,
    /// Schedule the purge at now + the resource's grace period.
    SchedulePurgeAfterGrace,
    /// Remove the stored bytes (after the DB commit).
    DeleteBlob,
}

/// The result of a command: the next state, its effects, and what the caller is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub next: TransferState,
    pub effects: Vec<Effect>,
    /// `Err` when the state changed but the caller still gets an error (e.g. checksum mismatch).
    pub reply: Result<(), ErrorCode>,
}

impl Outcome {
    fn unchanged(state: &TransferState) -> Outcome {
        Outcome {
            next: state.clone(),
            effects: vec![],
            reply: Ok(()),
        }
    }
}

/// Initialize (spec 1.2), the first step of every transfer: from nothing to Initialized, told to the
/// sender. `created` is the transfer as it will be stored; the effects are written with it in one
/// transaction.
pub fn initialize(created: TransferState) -> Outcome {
    Outcome {
        next: TransferState {
            phase: Phase::Initialized,
            ..created
        },
        effects: vec![
            Effect::RecordStatus(FileTransferStatus::Initialized, None),
            Effect::Emit(EventType::FileTransferInitialized, Audience::Sender),
            Effect::SchedulePurgeAtExpiry,
        ],
        reply: Ok(()),
    }
}

/// How long a transfer may stay UploadStarted before the stuck check looks at it (spec 7.2).
pub const STUCK_UPLOAD_STARTED: chrono::Duration = chrono::Duration::hours(24);
/// How long a transfer may stay UploadProcessing before an operator is alerted (spec 7.2).
pub const STUCK_UPLOAD_PROCESSING: chrono::Duration = chrono::Duration::minutes(15);
/// The status text of a transfer failed by the stuck check (spec 7.3).
pub const STUCK_TEXT: &str =
    "File transfer was stuck in UploadStarted as it failed upload mid-request.";

/// The pure transition function. `Err` means the command is refused and nothing changes.
pub fn transition(state: &TransferState, command: &Command) -> Result<Outcome, ErrorCode> {
    let mut outcome = step(state, command)?;
    // Whatever ends an upload (published, failed) takes its stuck check with it, and a purge the
    // transfer's other purge, in the same transaction: no job is left to wake for nothing. (A failed
    // transfer keeps its expiry purge, which marks it Purged.) A file stored for scanning gets its scan.
    let (was, is) = (&state.phase, &outcome.next.phase);
    if was.is_uploading() && !is.is_uploading() {
        outcome.effects.push(Effect::CancelStuckCheck);
    }
    if *was != Phase::Purged && *is == Phase::Purged {
        outcome.effects.push(Effect::CancelPurges);
    }
    if !matches!(was, Phase::UploadProcessing(_)) && matches!(is, Phase::UploadProcessing(_)) {
        outcome.effects.push(Effect::ScheduleScan);
    }
    Ok(outcome)
}

fn step(state: &TransferState, command: &Command) -> Result<Outcome, ErrorCode> {
    use Phase::*;
    match (command, &state.phase) {
        (Command::StartUpload, Initialized) => Ok(Outcome {
            next: TransferState {
                phase: UploadStarted,
                ..state.clone()
            },
            effects: vec![
                Effect::RecordStatus(FileTransferStatus::UploadStarted, None),
                Effect::ScheduleStuckCheck(STUCK_UPLOAD_STARTED),
            ],
            reply: Ok(()),
        }),
        // A retry after an interrupted upload starts over; the status is already UploadStarted.
        (Command::StartUpload, UploadStarted) => Ok(Outcome::unchanged(state)),
        (Command::StartUpload, _) => Err(ErrorCode::FileTransferAlreadyUploaded),

        (Command::AwaitVerification { announce }, UploadStarted) => {
            let mut effects = vec![
                Effect::RecordStatus(FileTransferStatus::UploadProcessing, None),
                Effect::ScheduleStuckCheck(STUCK_UPLOAD_PROCESSING),
            ];
            if *announce {
                effects.push(Effect::Emit(EventType::UploadProcessing, Audience::Sender));
            }
            Ok(Outcome {
                next: TransferState {
                    phase: Verifying,
                    ..state.clone()
                },
                effects,
                reply: Ok(()),
            })
        }
        (Command::AwaitVerification { .. }, _) => Err(ErrorCode::FileTransferAlreadyUploaded),

        (Command::CompleteUpload(file), UploadStarted) => Ok(complete_upload(state, file, false)),
        (Command::CompleteUpload(file), Verifying) => Ok(complete_upload(state, file, true)),
        (Command::CompleteUpload(_), _) => Err(ErrorCode::FileTransferAlreadyUploaded),

        (Command::FailUpload(UploadFailure::Storage), UploadStarted | Verifying) => Ok(Outcome {
            next: TransferState {
                phase: Failed,
                ..state.clone()
            },
            effects: vec![
                Effect::RecordStatus(
                    FileTransferStatus::Failed,
                    Some("Error occurred while uploading fileTransfer".into()),
                ),
                Effect::Emit(EventType::UploadFailed, Audience::Sender),
                Effect::DeleteBlob,
            ],
            reply: Err(ErrorCode::UploadFailed),
        }),
        (Command::FailUpload(_), _) => Err(ErrorCode::FileTransferAlreadyUploaded),

        (Command::RecordDownload { recipient }, phase) => {
            if !phase.is_downloadable() {
                return Err(ErrorCode::FileNotReadyForDownload);
            }
            let mut next = state.clone();
            raise_recipient(&mut next, recipient, RecipientStatus::DownloadStarted);
            Ok(Outcome {
                next,
                effects: vec![Effect::RecordRecipient(
                    recipient.clone(),
                    RecipientStatus::DownloadStarted,
                )],
                reply: Ok(()),
            })
        }

        (Command::ConfirmDownload { recipient }, phase) => confirm(state, phase, recipient),

        (Command::RecordScan(result), UploadProcessing(file)) => {
            Ok(record_scan(state, file, result))
        }
        (Command::RecordScan(_), Published(_) | AllConfirmedDownloaded(_)) => {
            Ok(Outcome::unchanged(state))
        }
        (Command::RecordScan(_), _) => Err(ErrorCode::NotYetUploadProcessing),

        (Command::FailStuck, UploadStarted) => Ok(Outcome {
            next: TransferState {
                phase: Failed,
                ..state.clone()
            },
            effects: vec![
                Effect::RecordStatus(FileTransferStatus::Failed, Some(STUCK_TEXT.into())),
                Effect::Emit(EventType::UploadFailed, Audience::Sender),
                Effect::DeleteBlob,
            ],
            reply: Ok(()),
        }),
        // It moved on since the check was scheduled.
        (Command::FailStuck, _) => Ok(Outcome::unchanged(state)),

        (Command::Purge | Command::Expire, Purged) => Ok(Outcome::unchanged(state)),
        (Command::Expire, AllConfirmedDownloaded(_)) if state.purge_after_all_confirmed => {
            Ok(Outcome::unchanged(state))
        }
        (Command::Expire, _) => Ok(purge(state)),
        (Command::Purge, _) => Ok(purge(state)),
    }
}

/// `in_background`: the check runs after the upload was answered (resumable uploads), so a mismatch is
/// told by an `uploadfailed` event; a binary upload's caller gets the error in its reply instead.
fn complete_upload(state: &TransferState, file: &StoredFile, in_background: bool) -> Outcome {
    if let Some(declared) = &state.declared_md5 {
        if !declared.eq_ignore_ascii_case(&file.md5) {
            // As Altinn: Failed with a detailed text, bytes removed.
            let mut effects = vec![
                Effect::RecordStatus(FileTransferStatus::Failed, Some("Checksum mismatch".into())),
                Effect::DeleteBlob,
            ];
            if in_background {
                effects.push(Effect::Emit(EventType::UploadFailed, Audience::Sender));
            }
            return Outcome {
                next: TransferState {
                    phase: Phase::Failed,
                    ..state.clone()
                },
                effects,
                reply: Err(ErrorCode::ChecksumMismatch),
            };
        }
    }
    let mut effects = vec![Effect::RecordStoredFile(file.clone())];
    if state.use_virus_scan {
        // In the background the transfer is UploadProcessing already (and announced, where the path
        // announces); otherwise it moves there now. The scan follows.
        if !in_background {
            effects.extend([
                Effect::RecordStatus(FileTransferStatus::UploadProcessing, None),
                Effect::ScheduleStuckCheck(STUCK_UPLOAD_PROCESSING),
                Effect::Emit(EventType::UploadProcessing, Audience::Sender),
            ]);
        }
        return Outcome {
            next: TransferState {
                phase: Phase::UploadProcessing(file.clone()),
                ..state.clone()
            },
            effects,
            reply: Ok(()),
        };
    }
    effects.push(Effect::RecordStatus(FileTransferStatus::Published, None));
    effects.extend(publish_events(state));
    Outcome {
        next: TransferState {
            phase: Phase::Published(file.clone()),
            ..state.clone()
        },
        effects,
        reply: Ok(()),
    }
}

fn publish_events(state: &TransferState) -> Vec<Effect> {
    std::iter::once(Effect::Emit(EventType::Published, Audience::Sender))
        .chain(
            state
                .recipients
                .iter()
                .map(|(r, _)| Effect::Emit(EventType::Published, Audience::Recipient(r.clone()))),
        )
        .collect()
}

fn confirm(state: &TransferState, phase: &Phase, recipient: &str) -> Result<Outcome, ErrorCode> {
    let file = match phase {
        Phase::Published(f) => f,
        Phase::Initialized | Phase::UploadStarted => return Err(ErrorCode::NoFileUploaded),
        _ => return Err(ErrorCode::ConfirmRequiresPublished),
    };
    let current = state
        .recipients
        .iter()
        .find(|(r, _)| r == recipient)
        .map(|(_, s)| *s)
        .ok_or(ErrorCode::NoAccess)?;
    match current {
        RecipientStatus::DownloadConfirmed => return Ok(Outcome::unchanged(state)),
        RecipientStatus::Initialized => return Err(ErrorCode::ConfirmBeforeDownload),
        RecipientStatus::DownloadStarted => {}
    }
    let mut next = state.clone();
    raise_recipient(&mut next, recipient, RecipientStatus::DownloadConfirmed);
    let mut effects = vec![
        Effect::RecordRecipient(recipient.to_string(), RecipientStatus::DownloadConfirmed),
        Effect::Emit(
            EventType::DownloadConfirmed,
            Audience::Recipient(recipient.to_string()),
        ),
        Effect::Emit(EventType::DownloadConfirmed, Audience::Sender),
    ];
    if next
        .recipients
        .iter()
        .all(|(_, s)| *s == RecipientStatus::DownloadConfirmed)
    {
        next.phase = Phase::AllConfirmedDownloaded(file.clone());
        effects.push(Effect::RecordStatus(
            FileTransferStatus::AllConfirmedDownloaded,
            None,
        ));
        effects.push(Effect::Emit(
            EventType::AllConfirmedDownloaded,
            Audience::Sender,
        ));
        if state.purge_after_all_confirmed {
            effects.push(Effect::SchedulePurgeAfterGrace);
        }
    }
    Ok(Outcome {
        next,
        effects,
        reply: Ok(()),
    })
}

/// A recipient's current status only ever rises.
fn raise_recipient(state: &mut TransferState, recipient: &str, to: RecipientStatus) {
    if let Some((_, s)) = state.recipients.iter_mut().find(|(r, _)| r == recipient) {
        *s = (*s).max(to);
    }
}

#[cfg(test)]
mod tests;
