//! Downloads (spec 5) and confirmations: who may download, when the file may be read, and which
//! downloads are recorded (every whole one; range requests once per recipient in a window).

use crate::access::Caller;
use crate::error::Result;
use crate::ports::ByteStream;
use crate::state::Command;
use crate::Broker;
use broker_protocol::ErrorCode;
use std::time::Duration;
use uuid::Uuid;

/// Range downloads record at most one DownloadStarted per recipient and transfer in this window.
const RANGE_DEBOUNCE: Duration = Duration::from_secs(5 * 60);

/// A download the caller may make: what the transport needs to answer it.
#[derive(Debug, Clone)]
pub struct Download {
    pub id: Uuid,
    pub size: u64,
    /// The content's SHA-256 (hex), the download's strong validator.
    pub sha256: Option<String>,
    pub file_name: String,
    recipient: String,
    /// The vendor the recipient acts through (for statistics).
    vendor: Option<String>,
}

impl Broker {
    /// Checks that the caller is a recipient and the file can be downloaded now.
    pub async fn open_download(&self, caller: &Caller, id: Uuid) -> Result<Download> {
        let view = self.view(id).await?;
        let recipient = caller.require_recipient(&view)?;
        if !view.stage().is_downloadable() {
            return Err(ErrorCode::FileNotReadyForDownload.into());
        }
        self.resource_of(&view).await?;
        if self.now() >= view.expiration_time {
            return Err(ErrorCode::FileTransferExpired.into());
        }
        Ok(Download {
            id: view.id,
            size: view.size as u64,
            sha256: view.sha256,
            file_name: view.file_name,
            recipient,
            vendor: caller.vendor.clone(),
        })
    }

    /// Records the download (a whole one always, a range once per window) and streams `len` bytes
    /// from `start`. A `HEAD` (`bytes` false) records nothing and streams nothing.
    pub async fn read_download(
        &self,
        download: &Download,
        start: u64,
        len: u64,
        is_range: bool,
        bytes: bool,
    ) -> Result<Option<ByteStream>> {
        if !bytes {
            return Ok(None);
        }
        let record = !is_range || self.range_download_due(download).await;
        if record {
            self.lifecycle()
                .command_by(
                    download.id,
                    Command::RecordDownload {
                        recipient: download.recipient.clone(),
                    },
                    download.vendor.clone(),
                )
                .await?;
        }
        if len == 0 {
            return Ok(None);
        }
        Ok(Some(
            self.ports()
                .blobs
                .read(&crate::ports::ObjectKey::file(download.id), start, len)
                .await?,
        ))
    }

    /// Whether a range download is recorded: the first of the recipient's ranges in
    /// [`RANGE_DEBOUNCE`] is, on whichever node it lands (the window is a claim in the store, by the
    /// store's clock). A store that cannot tell records it: one DownloadStarted too many is harmless.
    async fn range_download_due(&self, download: &Download) -> bool {
        let name = format!("range-download:{}", download.recipient);
        let desk = self.lifecycle().lease_desk();
        desk.claim_window(download.id, &name, RANGE_DEBOUNCE)
            .await
            .unwrap_or(true)
    }

    /// A recipient confirms it has downloaded the file.
    pub async fn confirm_download(&self, caller: &Caller, id: Uuid) -> Result<()> {
        let view = self.view(id).await?;
        let recipient = caller.require_recipient(&view)?;
        self.lifecycle()
            .command_by(
                view.id,
                Command::ConfirmDownload { recipient },
                caller.vendor.clone(),
            )
            .await
    }
}

#[cfg(test)]
#[path = "download_tests.rs"]
mod tests;
