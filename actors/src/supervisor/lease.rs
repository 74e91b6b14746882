//! The upload slot as its holder sees it: the store's lease on a transfer's one streaming upload, held
//! through the transfer's supervisor.

use super::{Lifecycle, Message};
use crate::error::Error;
use crate::state::{Command, StoredFile, UploadFailure};
use crate::upload_leases::HeldLease;
use uuid::Uuid;

/// The right to stream one upload into a transfer. Dropping it without `complete` or `fail` (the client
/// went away, the server is stopping) leaves the transfer UploadStarted and retryable.
pub struct UploadLease {
    pub(super) lifecycle: Lifecycle,
    pub(super) id: Uuid,
    /// The grant's fencing token, while this value holds the slot.
    pub(super) lease: Option<u64>,
    /// The store's grant (renewed in the background until released).
    pub(super) held: Option<HeldLease>,
    /// Dropped without a result, keep the stored bytes (resumable uploads) instead of removing them.
    pub(super) keep_on_drop: bool,
}

impl UploadLease {
    pub fn transfer_id(&self) -> Uuid {
        self.id
    }

    /// The fencing token of the grant this value holds (0 once it holds none).
    pub fn token(&self) -> u64 {
        self.lease.unwrap_or(0)
    }

    /// Cancelled when a newer request asks this one to stop (or the grant was lost): the body should
    /// end, keeping what is durable.
    pub fn stop(&self) -> tokio_util::sync::CancellationToken {
        match &self.held {
            Some(held) => held.stop(),
            None => tokio_util::sync::CancellationToken::new(),
        }
    }

    /// The file is stored and synced: verify it and publish (or fail on a checksum mismatch).
    pub async fn complete(self, file: StoredFile) -> Result<(), Error> {
        self.end_with(Command::CompleteUpload(file)).await
    }

    /// Ends the upload with `command`, handing the slot back with it.
    async fn end_with(mut self, command: Command) -> Result<(), Error> {
        let lease = self.lease.take();
        let result = self
            .lifecycle
            .ask(self.id, |reply| Message::Apply {
                command,
                lease,
                vendor: None,
                reply,
            })
            .await;
        // The supervisor ended the grant (with the commit, or on its own).
        if let Some(held) = self.held.take() {
            held.let_go().await;
        }
        result
    }

    /// Every byte is stored; the upload request ends here (answered at once) and the check and the
    /// publish follow in the background (`Lifecycle::complete_verification`). Status UploadProcessing.
    pub async fn await_verification(self, announce: bool) -> Result<(), Error> {
        self.end_with(Command::AwaitVerification { announce }).await
    }

    /// Makes a drop without a result release the slot but keep the stored bytes (for resumable uploads,
    /// whose earlier requests' bytes are durable and acknowledged).
    pub fn keep_bytes_on_drop(&mut self) {
        self.keep_on_drop = true;
    }

    /// Ends this request's hold on the upload slot, keeping the stored bytes (a resumable upload goes on
    /// in a later request).
    pub async fn release(mut self) {
        if let Some(lease) = self.lease.take() {
            self.lifecycle
                .deliver(self.id, Message::ReleaseUpload { lease })
                .await;
        }
        if let Some(held) = self.held.take() {
            held.release().await;
        }
    }

    /// Our storage failed: the transfer fails and its bytes are removed.
    pub async fn fail(self, failure: UploadFailure) -> Result<(), Error> {
        self.end_with(Command::FailUpload(failure)).await
    }
}

impl Drop for UploadLease {
    fn drop(&mut self) {
        let held = self.held.take();
        if let Some(lease) = self.lease.take() {
            let lifecycle = self.lifecycle.clone();
            let id = self.id;
            let message = if self.keep_on_drop {
                Message::ReleaseUpload { lease }
            } else {
                Message::AbandonUpload { lease }
            };
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                // The supervisor frees its slot before the grant goes (and wakes a waiting request),
                // so the request woken finds the slot free.
                rt.spawn(async move {
                    lifecycle.deliver(id, message).await;
                    if let Some(held) = held {
                        held.release().await;
                    }
                });
            }
        }
    }
}
