//! The binary upload (`POST /filetransfer/{id}/upload`): one request body streamed into a new file
//! with hashing, then handed to the transfer's supervisor to verify and publish.

use crate::access::Caller;
use crate::error::{Error, Result};
use crate::ports::{complete_object, ObjectKey};
use crate::state::UploadFailure;
use crate::upload::{stream_into_blob, StreamError};
use crate::{Broker, UploadLease};
use broker_protocol::ErrorCode;
use bytes::Bytes;
use futures::Stream;
use uuid::Uuid;

impl Broker {
    /// Uploads the file of an initialized transfer. `declared` is the body's length when the request
    /// told it: a file that cannot fit is refused before a byte is read.
    pub async fn upload<S, E>(
        &self,
        caller: &Caller,
        id: Uuid,
        declared: Option<u64>,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let view = self.sender_transfer(caller, id).await?;
        let limit = self.size_limit(&view).await?;
        if let Some(len) = declared {
            self.check_scannable(view.use_virus_scan, len)?;
            if len > limit {
                return Err(ErrorCode::FileSizeExceedsMaximum.into());
            }
            self.check_free_space(len).await?;
        }
        self.store_upload(view.id, body, limit).await
    }

    /// 507 `9001` when `len` bytes would not fit.
    pub(crate) async fn check_free_space(&self, len: u64) -> Result<()> {
        match self.free_space().await {
            Some(free) if len > free => Err(ErrorCode::InsufficientStorage.into()),
            _ => Ok(()),
        }
    }

    /// A permit to stream one upload (503 `9004` when as many stream as allowed).
    pub(crate) fn upload_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.inner
            .upload_permits
            .try_acquire()
            .map_err(|_| ErrorCode::TooManyUploads.into())
    }

    /// Claims the upload slot, streams the body into storage with hashing, and hands the result to the
    /// transfer's supervisor. A cut body or a shutdown leaves the transfer UploadStarted and retryable.
    pub(crate) async fn store_upload<S, E>(&self, id: Uuid, body: S, limit: u64) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let _permit = self.upload_permit()?;
        let lease = self.lifecycle().begin_upload(id).await?;
        // A binary upload starts the file over: a resumable upload begun earlier no longer applies.
        self.ports().sessions.remove(id, "").await?;
        let key = ObjectKey::file(id);
        // What an earlier attempt stored goes too (even a file it completed before the broker
        // stopped short of publishing it).
        if let Err(e) = self.ports().blobs.abort(&key).await {
            return Err(fail_storage(lease, e).await);
        }
        self.drop_part_hashing(id);
        let writer = match self.ports().blobs.write_whole(&key, lease.token()).await {
            Ok(w) => w,
            Err(e) => return Err(fail_storage(lease, e).await),
        };
        // Every request body already keeps the minimum data rate (the transport enforces it).
        let streamed = tokio::select! {
            r = stream_into_blob(body, writer, Some(limit)) => r,
            _ = self.inner.shutdown.cancelled() => return Err(ErrorCode::ShuttingDown.into()),
        };
        match streamed {
            Ok(file) => {
                let blobs = self.ports().blobs.as_ref();
                if let Err(e) = complete_object(blobs, &key, file.size).await {
                    return Err(fail_storage(lease, e).await);
                }
                lease.complete(file).await
            }
            Err(StreamError::Body(e)) => Err(interrupted(e)),
            Err(StreamError::TooLarge(_)) => Err(ErrorCode::FileSizeExceedsMaximum.into()),
            Err(StreamError::Storage(e)) => Err(fail_storage(lease, e).await),
        }
    }
}

/// The answer to a body that broke off.
pub(crate) fn interrupted(e: impl std::fmt::Display) -> Error {
    Error::Unreadable(format!(
        "The upload was interrupted: {e}. Retry the upload."
    ))
}

/// Our storage failed: the transfer fails (500 `8`) and its bytes are removed.
pub(crate) async fn fail_storage(lease: UploadLease, error: impl std::fmt::Display) -> Error {
    tracing::error!(id = %lease.transfer_id(), %error, "storage failed during upload");
    match lease.fail(UploadFailure::Storage).await {
        Err(e) => e,
        Ok(()) => ErrorCode::UploadFailed.into(),
    }
}
