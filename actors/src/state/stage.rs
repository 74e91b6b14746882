//! Where a transfer stands as the read side sees it (its stored status, and whether its file's hashes
//! are recorded), and what may happen to it from there. Every decision a request or a job makes from a
//! transfer's status is one of these, next to the transition function that makes the same decisions
//! for commands (a property test ties the two together).

use super::Phase;
use broker_protocol::FileTransferStatus;

/// A transfer's phase without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Initialized,
    UploadStarted,
    /// UploadProcessing with no hashes recorded yet: the stored upload is being checked.
    Verifying,
    /// UploadProcessing with the file's hashes recorded: the scan runs.
    Scanning,
    Published,
    AllConfirmedDownloaded,
    Purged,
    Failed,
    Cancelled,
}

impl Stage {
    /// The stage of a transfer in `status` whose file's hashes are recorded (`hashed`) or not.
    pub fn of(status: FileTransferStatus, hashed: bool) -> Stage {
        match status {
            FileTransferStatus::Initialized => Stage::Initialized,
            FileTransferStatus::UploadStarted => Stage::UploadStarted,
            FileTransferStatus::UploadProcessing if hashed => Stage::Scanning,
            FileTransferStatus::UploadProcessing => Stage::Verifying,
            FileTransferStatus::Published => Stage::Published,
            FileTransferStatus::AllConfirmedDownloaded => Stage::AllConfirmedDownloaded,
            FileTransferStatus::Purged => Stage::Purged,
            FileTransferStatus::Failed => Stage::Failed,
            FileTransferStatus::Cancelled => Stage::Cancelled,
        }
    }

    /// An upload may (still) be sent: nothing was stored for good yet.
    pub fn accepts_upload(self) -> bool {
        matches!(self, Stage::Initialized | Stage::UploadStarted)
    }

    /// Being uploaded, checked or scanned: a sender's expired token may still finish it, and the
    /// stuck check watches it.
    pub fn is_uploading(self) -> bool {
        matches!(
            self,
            Stage::UploadStarted | Stage::Verifying | Stage::Scanning
        )
    }

    /// The file may be downloaded.
    pub fn is_downloadable(self) -> bool {
        matches!(self, Stage::Published | Stage::AllConfirmedDownloaded)
    }

    /// The whole upload is stored and its hashes are recorded (a resumable upload's final offset holds).
    pub fn upload_hashed(self) -> bool {
        matches!(
            self,
            Stage::Scanning | Stage::Published | Stage::AllConfirmedDownloaded
        )
    }

    /// Every byte is stored and the check of the stored upload is due or running.
    pub fn awaits_verification(self) -> bool {
        self == Stage::Verifying
    }

    /// The file waits for its scan's verdict.
    pub fn awaits_scan(self) -> bool {
        self == Stage::Scanning
    }

    /// The upload is over (the file stored and checked, or the transfer ended): what a resumable upload
    /// kept for it may go.
    pub fn upload_over(self) -> bool {
        !matches!(
            self,
            Stage::Initialized | Stage::UploadStarted | Stage::Verifying
        )
    }
}

impl Phase {
    pub fn stage(&self) -> Stage {
        match self {
            Phase::Initialized => Stage::Initialized,
            Phase::UploadStarted => Stage::UploadStarted,
            Phase::Verifying => Stage::Verifying,
            Phase::UploadProcessing(_) => Stage::Scanning,
            Phase::Published(_) => Stage::Published,
            Phase::AllConfirmedDownloaded(_) => Stage::AllConfirmedDownloaded,
            Phase::Purged => Stage::Purged,
            Phase::Failed => Stage::Failed,
            Phase::Cancelled => Stage::Cancelled,
        }
    }
}
