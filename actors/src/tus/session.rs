//! The commands of a resumable upload: creation (optionally with its first bytes), HEAD, PATCH and
//! termination, for the transfer's own upload and for the parts of a concatenated one.

use super::append::Patch;
use crate::access::Caller;
use crate::error::{Result, TusRefusal};
use crate::ports::metadata::TransferView;
use crate::ports::upload_sessions::SessionRow;
use crate::Broker;
use broker_protocol::ErrorCode;
use bytes::Bytes;
use futures::Stream;
use uuid::Uuid;

/// Where an upload stands: its durable offset and declared length (`None` while deferred).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadState {
    pub offset: u64,
    pub length: Option<u64>,
}

impl Broker {
    /// Whether a caller whose token has expired may still go on with the transfer's upload (spec 4.6):
    /// it is the sender with the write scope, the transfer is UploadStarted or UploadProcessing, and a
    /// resumable upload of it is active (or was terminated) within the upload expiry.
    pub async fn may_continue_upload(&self, caller: &Caller, id: Uuid) -> Result<bool> {
        let Ok(view) = self.view(id).await else {
            return Ok(false);
        };
        let uploading = view.stage().is_uploading();
        let sender = caller.org.as_deref() == Some(view.sender_org.as_str())
            && caller.has_scope(broker_protocol::scopes::WRITE);
        if !(uploading && sender) {
            return Ok(false);
        }
        let since = self.now() - self.settings().tus_upload_expiry;
        Ok(self.ports().sessions.active_since(view.id, since).await?)
    }

    /// Creates the transfer's upload (`length` `None`: deferred), with its first bytes if `first` is
    /// given; returns the offset those moved it to.
    pub async fn tus_create<S, E>(
        &self,
        caller: &Caller,
        id: Uuid,
        length: Option<u64>,
        first: Option<Patch<S>>,
    ) -> Result<Option<u64>>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let view = self.sender_transfer(caller, id).await?;
        if let Some(l) = length {
            self.check_scannable(view.use_virus_scan, l)?;
        }
        if length.is_some_and(|l| l > 0) && length > Some(self.size_limit(&view).await?) {
            return Err(ErrorCode::FileSizeExceedsMaximum.into());
        }
        // Claim the slot (this records UploadStarted) and let it go: the PATCHes write the parts.
        let lease = self.lifecycle().begin_upload(view.id).await?;
        // A new upload starts the file over: what an earlier attempt stored (even a file it completed
        // before the broker stopped short of publishing it) no longer applies.
        let file = crate::ports::ObjectKey::file(view.id);
        if let Err(e) = self.ports().blobs.abort(&file).await {
            return Err(crate::binary_upload::fail_storage(lease, e).await);
        }
        self.ports()
            .sessions
            .create(view.id, "", length, self.now())
            .await?;
        self.drop_part_hashing(view.id);
        lease.release().await;
        let Some(first) = first else {
            return Ok(None);
        };
        let row = SessionRow {
            length,
            offset: 0,
            joined: false,
            hash_state: None,
            staged: None,
        };
        Ok(Some(self.append(&view, None, row, first).await?))
    }

    /// `HEAD`: the upload's durable offset. A PATCH still running on it (its client may have gone
    /// silent) is stopped first.
    pub async fn tus_head(
        &self,
        caller: &Caller,
        id: Uuid,
        part: Option<&str>,
    ) -> Result<UploadState> {
        let view = self.view(id).await?;
        caller.require_sender(&view)?;
        self.stop_running(view.id, part).await?;
        if let Some(length) = self.whole_upload(&view, part).await? {
            return Ok(UploadState {
                offset: length,
                length: Some(length),
            });
        }
        let row = self
            .ports()
            .sessions
            .get(view.id, part.unwrap_or(""))
            .await?;
        let row = row.ok_or(TusRefusal::NoUpload)?;
        Ok(UploadState {
            offset: row.offset,
            length: row.length,
        })
    }

    /// `PATCH`: appends the body at `offset`; returns the new offset. A PATCH repeated after its upload
    /// completed (say after a timeout) succeeds again without appending.
    pub async fn tus_patch<S, E>(
        &self,
        caller: &Caller,
        id: Uuid,
        part: Option<&str>,
        offset: u64,
        patch: Patch<S>,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let view = self.view(id).await?;
        if part.is_none() && !view.stage().accepts_upload() {
            caller.require_sender(&view)?;
            if self.whole_upload(&view, part).await? == Some(offset) {
                return Ok(offset);
            }
            return Err(ErrorCode::FileTransferAlreadyUploaded.into());
        }
        let view = self.sender_transfer(caller, id).await?;
        let sessions = &self.ports().sessions;
        let mut row = sessions
            .get(view.id, part.unwrap_or(""))
            .await?
            .ok_or(TusRefusal::NoUpload)?;
        if row.offset != offset {
            // A PATCH still running (its client may have gone silent, on this node or another) may
            // hold bytes up to this offset: stop it, as tus's lock rule wants, and look again.
            self.stop_running(view.id, part).await?;
            row = sessions
                .get(view.id, part.unwrap_or(""))
                .await?
                .ok_or(TusRefusal::NoUpload)?;
        }
        if row.offset != offset {
            return Err(TusRefusal::OffsetMismatch {
                sent: offset,
                actual: row.offset,
            }
            .into());
        }
        if let Some(l) = patch.new_length {
            self.check_scannable(view.use_virus_scan, l)?;
            match row.length {
                None if l >= offset && l <= self.size_limit(&view).await? => row.length = Some(l),
                None => return Err(ErrorCode::FileSizeExceedsMaximum.into()),
                Some(known) if known != l => {
                    return Err(TusRefusal::BadRequest("Upload-Length cannot change".into()).into())
                }
                Some(_) => {}
            }
        }
        if let (Some(length), Some(len)) = (row.length, patch.len) {
            if offset + len > length {
                let text = "The PATCH would exceed the upload's length";
                return Err(TusRefusal::BadRequest(text.into()).into());
            }
        }
        self.append(&view, part, row, patch).await
    }

    /// `DELETE` (termination): removes the upload's bytes, and the parts sent for it if any (or one
    /// part); the transfer stays UploadStarted, so a new upload can be created.
    pub async fn tus_terminate(&self, caller: &Caller, id: Uuid, part: Option<&str>) -> Result<()> {
        let view = self.sender_transfer(caller, id).await?;
        if let Some(part) = part {
            return self.terminate_part(&view, part).await;
        }
        let sessions = &self.ports().sessions;
        if sessions.get(view.id, "").await?.is_none() {
            return Err(TusRefusal::NoUpload.into());
        }
        let lease = self.lifecycle().begin_upload(view.id).await?;
        self.drop_part_hashing(view.id);
        sessions.terminate(view.id, "", self.now()).await?;
        if let Err(e) = self.ports().blobs.delete(view.id).await {
            tracing::warn!(id = %view.id, error = %e, "could not remove a terminated upload's bytes");
        }
        lease.release().await;
        Ok(())
    }

    /// The length of the transfer's upload if every byte of it is stored (verified or being
    /// verified). A complete upload not verified yet gets its check started if none runs.
    async fn whole_upload(&self, view: &TransferView, part: Option<&str>) -> Result<Option<u64>> {
        if part.is_some() {
            return Ok(None);
        }
        if view.stage().upload_hashed() {
            return Ok(Some(view.size as u64));
        }
        if !view.stage().is_uploading() {
            return Ok(None);
        }
        let row = self.ports().sessions.get(view.id, "").await?;
        match row.and_then(|r| r.length.filter(|l| *l == r.offset)) {
            // Every byte is stored but the transfer is not verified: make sure its check runs (the
            // request that stored the last byte may have been cut off, spec 4.5 recovery).
            Some(length) => {
                self.start_verification(view.id, None).await;
                Ok(Some(length))
            }
            // The check may have ended between our two reads.
            None => {
                let now = self.view(view.id).await?;
                Ok(now.stage().upload_hashed().then_some(now.size as u64))
            }
        }
    }
}
