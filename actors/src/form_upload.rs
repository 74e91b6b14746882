//! Initialize-and-upload (multipart/form-data, spec 1.4). Fields come in any order; the file part
//! streams straight to storage. With the metadata before the file, every check of initialize runs
//! before a byte is stored; either way the transfer is created only once its file is stored and the
//! whole form checked, so a refused form leaves nothing behind.

use crate::access::Caller;
use crate::binary_upload::interrupted;
use crate::error::{Error, Result};
use crate::ports::{complete_object, ObjectKey};
use crate::state::StoredFile;
use crate::upload::{stream_into_blob, StreamError};
use crate::Broker;
use async_trait::async_trait;
use broker_protocol::transfer::FileTransferInitialize;
use broker_protocol::ErrorCode;
use bytes::Bytes;
use futures::stream::BoxStream;
use uuid::Uuid;

/// The largest file the form-data upload takes (spec 1.4: the original's multipart limit, int.MaxValue);
/// larger files go through initialize and a binary or resumable upload.
pub const MAX_FORM_FILE_SIZE: u64 = i32::MAX as u64;

/// A file part's bytes.
pub type FilePart = BoxStream<'static, std::result::Result<Bytes, String>>;

/// A form being read, as the transport decodes it: metadata fields up to each file part.
#[async_trait]
pub trait Form: Send {
    /// Applies the metadata fields up to the next file part and returns that part; `None` at the end.
    async fn next_file(&mut self) -> Result<Option<FilePart>>;
    /// The initialize request the fields read so far make.
    fn request(&self) -> &FileTransferInitialize;
    /// Whether the fields read so far hold everything initialize requires.
    fn has_required_fields(&self) -> bool;
}

impl Broker {
    /// Initializes a transfer and uploads its file from one form. `declared`: the request's length, when
    /// told (a form that cannot fit is refused before a byte is read).
    pub async fn initialize_and_upload(
        &self,
        caller: &Caller,
        idempotency_key: Option<String>,
        declared: Option<u64>,
        mut form: Box<dyn Form>,
    ) -> Result<Uuid> {
        let Some(file) = form.next_file().await? else {
            return Err(Error::field(
                FILE_FIELD,
                "The FileTransfer field is required.",
            ));
        };
        // Checked now if the metadata came first: nothing is stored for a form that will be refused.
        let early = if form.has_required_fields() {
            let request = form.request().clone();
            let prepared = self
                .prepare(caller, request, idempotency_key.clone())
                .await?;
            if let Some(id) = self.idempotent_replay(&prepared.new).await? {
                // Sent again: the earlier transfer's id, its file uploaded if that never completed.
                if self.view(id).await?.stage().accepts_upload() {
                    self.store_upload(id, file, prepared.size_limit).await?;
                }
                return Ok(id);
            }
            Some(prepared)
        } else {
            None
        };
        if let Some(len) = declared {
            self.check_free_space(len).await?;
        }
        let _permit = self.upload_permit()?;
        let id = early.as_ref().map_or_else(Uuid::new_v4, |p| p.new.id);
        // A file sent before the metadata that would allow it may not fill the disk for everyone else.
        let room = self.free_space().await.unwrap_or(u64::MAX);
        let allowed = early
            .as_ref()
            .map_or(MAX_FORM_FILE_SIZE, |p| p.size_limit.min(MAX_FORM_FILE_SIZE));
        let unclaimed = Unclaimed::new(self, id);
        let stored = match self.store_unclaimed(id, file, allowed.min(room)).await {
            Ok(stored) => stored,
            Err(e) => {
                unclaimed.discard().await;
                return Err(match e {
                    Error::Refused(ErrorCode::FileSizeExceedsMaximum) if room < allowed => {
                        ErrorCode::InsufficientStorage.into()
                    }
                    e => e,
                });
            }
        };
        let checked = async {
            if form.next_file().await?.is_some() {
                return Err(Error::field(
                    FILE_FIELD,
                    "Only one FileTransfer part may be sent.",
                ));
            }
            let request = form.request().clone();
            let prepared = self.prepare(caller, request, idempotency_key).await?;
            if stored.size > prepared.size_limit.min(MAX_FORM_FILE_SIZE) {
                return Err(ErrorCode::FileSizeExceedsMaximum.into());
            }
            if self.idempotent_replay(&prepared.new).await?.is_some() {
                // Another request with this key created its transfer meanwhile.
                return Err(ErrorCode::FileTransferAlreadyUploaded.into());
            }
            Ok(prepared)
        };
        let mut new = match checked.await {
            Ok(prepared) => prepared.new,
            Err(e) => {
                unclaimed.discard().await;
                return Err(e);
            }
        };
        new.id = id;
        // The transfer is created and takes its file on a task of its own: a client that goes away now
        // cannot leave a transfer half made.
        let broker = self.clone();
        tokio::spawn(async move { broker.create_with_file(new, stored, unclaimed).await })
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(id)
    }

    async fn create_with_file(
        &self,
        new: crate::ports::metadata::NewTransfer,
        stored: StoredFile,
        unclaimed: Unclaimed,
    ) -> Result<()> {
        let id = new.id;
        match self.create(new).await {
            Ok(created) if created == id => {}
            other => {
                unclaimed.discard().await;
                return Err(other
                    .err()
                    .unwrap_or(ErrorCode::FileTransferAlreadyUploaded.into()));
            }
        }
        let lease = match self.lifecycle().begin_upload(id).await {
            Ok(lease) => lease,
            Err(e) => {
                unclaimed.discard().await;
                return Err(e);
            }
        };
        unclaimed.claim();
        lease.complete(stored).await
    }

    /// Streams the body into a new file for `id` (no transfer holds it yet) with hashing.
    async fn store_unclaimed(&self, id: Uuid, body: FilePart, limit: u64) -> Result<StoredFile> {
        // No transfer holds a lease yet: any grant taken later has a larger token.
        let key = ObjectKey::file(id);
        let writer = self.ports().blobs.write_whole(&key, 0).await?;
        let streamed = tokio::select! {
            r = stream_into_blob(body, writer, Some(limit)) => r,
            _ = self.inner.shutdown.cancelled() => Err(StreamError::Body("the broker is shutting down".into())),
        };
        match streamed {
            Ok(file) => {
                complete_object(self.ports().blobs.as_ref(), &key, file.size).await?;
                Ok(file)
            }
            Err(_) if self.is_shutting_down() => Err(ErrorCode::ShuttingDown.into()),
            Err(StreamError::Body(e)) => Err(interrupted(e)),
            Err(StreamError::TooLarge(_)) => Err(ErrorCode::FileSizeExceedsMaximum.into()),
            Err(StreamError::Storage(e)) => {
                tracing::error!(%id, error = %e, "storage failed during a form upload");
                Err(ErrorCode::UploadFailed.into())
            }
        }
    }
}

/// The name of the file part.
pub const FILE_FIELD: &str = "FileTransfer";

/// Bytes stored for a transfer not created yet. Dropped unclaimed (the request failed or its client
/// went away), they are removed.
struct Unclaimed {
    broker: Broker,
    id: Uuid,
    claimed: bool,
}

impl Unclaimed {
    fn new(broker: &Broker, id: Uuid) -> Unclaimed {
        Unclaimed {
            broker: broker.clone(),
            id,
            claimed: false,
        }
    }

    /// A transfer's upload lease holds the bytes now (and removes them if it is abandoned).
    fn claim(mut self) {
        self.claimed = true;
    }

    /// Removes the bytes now.
    async fn discard(mut self) {
        self.claimed = true;
        remove_blob(&self.broker, self.id).await;
    }
}

impl Drop for Unclaimed {
    fn drop(&mut self) {
        if self.claimed {
            return;
        }
        let (broker, id) = (self.broker.clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { remove_blob(&broker, id).await });
        }
    }
}

async fn remove_blob(broker: &Broker, id: Uuid) {
    if let Err(e) = broker.ports().blobs.delete(id).await {
        tracing::warn!(%id, error = %e, "could not remove a refused upload's bytes");
    }
}

#[cfg(test)]
#[path = "form_upload_tests.rs"]
mod tests;
