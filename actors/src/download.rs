//! Downloads (spec 5) and confirmations: who may download, when the file may be read, and which
//! downloads are recorded (every whole one; range requests once per recipient in a window).

use crate::access::Caller;
use crate::error::Result;
use crate::ports::ByteStream;
use crate::state::Command;
use crate::Broker;
use broker_protocol::time::Timestamp;
use broker_protocol::ErrorCode;
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

/// Range downloads record at most one DownloadStarted per recipient and transfer in this window.
const RANGE_DEBOUNCE: chrono::Duration = chrono::Duration::minutes(5);
/// Past this many remembered range downloads, those outside the window are forgotten.
const DEBOUNCE_ENTRIES: usize = 100_000;

/// The last recorded range download per (transfer, recipient). One process's state: on several nodes a
/// recipient whose ranges land on two nodes is recorded once per node, which the spec allows (the
/// window only keeps the history from growing with every range).
#[derive(Default)]
pub(crate) struct DownloadDebounce(Mutex<HashMap<(Uuid, String), Timestamp>>);

impl DownloadDebounce {
    fn should_record(&self, id: Uuid, recipient: &str, now: Timestamp) -> bool {
        let mut seen = self.0.lock().expect("download debounce");
        if seen.len() > DEBOUNCE_ENTRIES {
            seen.retain(|_, t| now - *t < RANGE_DEBOUNCE);
        }
        let key = (id, recipient.to_string());
        match seen.get(&key) {
            Some(t) if now - *t < RANGE_DEBOUNCE => false,
            _ => {
                seen.insert(key, now);
                true
            }
        }
    }
}

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
        let record = !is_range
            || self
                .inner
                .downloads
                .should_record(download.id, &download.recipient, self.now());
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
            self.ports().blobs.read(download.id, start, len).await?,
        ))
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
