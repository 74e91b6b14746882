//! Verification of resumable uploads (spec 4.5): the request that stores an upload's last byte is
//! answered at once; checking the whole file against its declared MD5 and publishing it happen here,
//! in the background, as a task the broker owns. A single upload arrives with its hashes (computed while
//! it streamed); a concatenated one is read back and hashed over its parts in order. After a restart
//! every upload that was complete but not yet verified is picked up again.

use crate::binary_upload::fail_storage;
use crate::error::{Error, Result};
use crate::ports::metadata::TransferView;
use crate::ports::{complete_object, ObjectKey};
use crate::state::Stage;
use crate::upload::{hash_stream, HashState};
use crate::{Broker, StoredFile, UploadLease};
use broker_protocol::ErrorCode;
use uuid::Uuid;

/// The lease name of a transfer's verification claim (tus part names are hex UUIDs, so it never
/// collides with a part's).
pub(crate) const VERIFICATION_CLAIM: &str = "verification";

/// What [`Broker::complete_tus`] made of an upload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Completed {
    Published,
    /// UploadProcessing; the check runs in the background.
    Checking,
}

impl Broker {
    /// Starts the background check of `id` unless one runs already, on this node or another: the
    /// check holds the transfer's verification claim (a lease of its own in the store, renewed while it
    /// runs). `hashes`: the file's hashes when they are known (a single upload's last PATCH); otherwise
    /// the stored bytes are read back. Returns whether it started one.
    pub(crate) fn start_verification(
        &self,
        id: Uuid,
        hashes: Option<StoredFile>,
    ) -> futures::future::BoxFuture<'_, bool> {
        // Boxed with its type spelled out: the check it spawns may start another (a cycle the
        // compiler cannot see through to prove it Send).
        Box::pin(async move {
            let desk = self.lifecycle().lease_desk();
            let claim = match desk.try_acquire(id, VERIFICATION_CLAIM).await {
                Ok(Some(claim)) => claim,
                Ok(None) => return false,
                Err(e) => {
                    tracing::warn!(%id, error = %e, "cannot claim a verification; it is retried on the next sweep, HEAD or restart");
                    return false;
                }
            };
            let broker = self.clone();
            tokio::spawn(async move {
                let stopping = broker.inner.shutdown.clone();
                tokio::select! {
                    // A check cut short by a shutdown runs again at the next start.
                    _ = stopping.cancelled() => {}
                    result = broker.verify(id, hashes) => if let Err(e) = result {
                        tracing::error!(%id, error = %e, "verifying a resumable upload failed; it is retried on the next sweep, HEAD or restart");
                    }
                }
                claim.release().await;
            });
            true
        })
    }

    /// Whether the background check of `id` runs now, on any node.
    pub(crate) async fn is_verifying(&self, id: Uuid) -> bool {
        self.lifecycle()
            .lease_desk()
            .is_held(id, VERIFICATION_CLAIM)
            .await
    }

    /// Picks up complete but unverified uploads: those a stopped server left, and those whose check
    /// failed (run at start and on every sweep).
    pub async fn recover_unverified_uploads(&self) {
        match self.ports().sessions.unverified().await {
            Ok(ids) => {
                let mut started = 0;
                for id in ids {
                    if self.start_verification(id, None).await {
                        started += 1;
                    }
                }
                if started > 0 {
                    tracing::info!(
                        count = started,
                        "checking complete resumable uploads left unverified"
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot list unverified uploads"),
        }
    }

    /// Ends the upload of a transfer whose every byte is durable, holding its upload slot (spec 4.5). A
    /// single upload with nothing to check (no declared MD5, no virus scan) is published now; any other
    /// moves to UploadProcessing, announced with `uploadprocessing` only for a single upload, and its
    /// check is started. `hashes`: the file's hashes when known, else its `length` stored bytes are read.
    pub(crate) async fn complete_tus(
        &self,
        lease: UploadLease,
        view: &TransferView,
        joined: bool,
        length: u64,
        hashes: Option<StoredFile>,
    ) -> Result<Completed> {
        let id = lease.transfer_id();
        if !joined {
            // Every byte is acknowledged: the parts that hold them become the file.
            let file = ObjectKey::file(id);
            if let Err(e) = complete_object(self.ports().blobs.as_ref(), &file, length).await {
                return Err(fail_storage(lease, e).await);
            }
        }
        let check_pending = view.checksum.is_some() || view.use_virus_scan;
        if joined || check_pending {
            lease.await_verification(!joined).await?;
            self.start_verification(id, hashes).await;
            return Ok(Completed::Checking);
        }
        let file = match hashes {
            Some(file) => file,
            None => self.hash_stored(id, length).await?.finish(),
        };
        lease.complete(file).await?;
        self.ports().sessions.remove(id, "").await?;
        Ok(Completed::Published)
    }

    async fn verify(&self, id: Uuid, hashes: Option<StoredFile>) -> Result<()> {
        let sessions = &self.ports().sessions;
        let Some(row) = sessions.get(id, "").await? else {
            return Ok(());
        };
        let Some(length) = row.length.filter(|l| *l == row.offset) else {
            return Ok(());
        };
        let view = self.view(id).await?;
        match view.stage() {
            // The server stopped (or the request was cut off) between storing the last byte and
            // recording it: record it now. The check, if any, goes on below.
            Stage::UploadStarted => {
                let mut lease = match self.lifecycle().begin_upload(id).await {
                    Ok(lease) => lease,
                    // The request that stored the last byte still holds the upload and completes it.
                    Err(Error::Refused(ErrorCode::FileTransferAlreadyUploaded)) => return Ok(()),
                    Err(e) => return Err(e),
                };
                lease.keep_bytes_on_drop();
                let completed = self
                    .complete_tus(lease, &view, row.joined, length, hashes.clone())
                    .await?;
                if completed == Completed::Published {
                    return Ok(());
                }
            }
            // Stopped after the check began: the parts became the file before it did, or become it now.
            Stage::Verifying if !row.joined => {
                let file = ObjectKey::file(id);
                if let Err(e) = complete_object(self.ports().blobs.as_ref(), &file, length).await {
                    tracing::error!(%id, error = %e, "the stored parts do not make the upload; the transfer fails");
                    self.lifecycle().fail_verification(id).await?;
                    return Ok(sessions.remove(id, "").await?);
                }
            }
            Stage::Verifying => {}
            // Verified already (the row outlived its use): nothing left to do.
            _ => return Ok(sessions.remove(id, "").await?),
        }
        let hashed_live = match (&hashes, row.joined) {
            (None, true) => self.joined_hashes(id).await.filter(|s| s.len() == length),
            _ => None,
        };
        let file = match hashes.or(hashed_live.map(HashState::finish)) {
            Some(file) => file,
            None => match self.hash_stored(id, length).await {
                Ok(state) => state.finish(),
                Err(e) => {
                    tracing::error!(%id, error = %e, "cannot read back a stored upload; the transfer fails");
                    self.lifecycle().fail_verification(id).await?;
                    return Ok(sessions.remove(id, "").await?);
                }
            },
        };
        match self.lifecycle().complete_verification(id, file).await {
            // A mismatch is an outcome, not an error: the transfer is Failed and told with `uploadfailed`.
            Ok(()) | Err(Error::Refused(ErrorCode::ChecksumMismatch)) => {
                Ok(sessions.remove(id, "").await?)
            }
            Err(e) => Err(e),
        }
    }

    /// MD5 and SHA-256 of the first `len` stored bytes of the transfer's file (parts spanned), read back
    /// from storage; MD5 and SHA-256 each on its own thread.
    pub(crate) async fn hash_stored(&self, id: Uuid, len: u64) -> Result<HashState> {
        let stream = self
            .ports()
            .blobs
            .read(&ObjectKey::file(id), 0, len)
            .await?;
        hash_exactly(stream, len).await
    }
}

/// MD5 and SHA-256 of `stream`, which must hold exactly `len` bytes.
pub(crate) async fn hash_exactly(stream: crate::ports::ByteStream, len: u64) -> Result<HashState> {
    let state = hash_stream(stream)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    if state.len() != len {
        return Err(Error::Internal(format!(
            "{} of {len} bytes could be read",
            state.len()
        )));
    }
    Ok(state)
}
