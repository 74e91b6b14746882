//! tus concatenation: an upload sent as parallel parts (`Upload-Concat: partial`), joined by a `final`
//! upload that lists them. The parts are not copied: the transfer's file becomes the list of parts and
//! reads span them. The whole file's MD5 and SHA-256 are computed over the parts in order after the
//! final upload was answered.

use crate::access::Caller;
use crate::error::{Error, Result, TusRefusal};
use crate::ports::blobs::acknowledged_parts;
use crate::ports::metadata::TransferView;
use crate::ports::upload_sessions::PartAdmission;
use crate::ports::{complete_object, BlobError, ByteStream, ObjectKey};
use crate::{Broker, UploadLease};
use broker_protocol::ErrorCode;
use uuid::Uuid;

/// A part's id as this broker makes them: 32 hex digits.
pub(crate) fn valid_part_id(part: &str) -> bool {
    part.len() == 32 && part.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Broker {
    /// `Upload-Concat: partial`: a new part of the transfer's upload; returns the part's id.
    pub async fn tus_create_part(
        &self,
        caller: &Caller,
        id: Uuid,
        length: Option<u64>,
    ) -> Result<String> {
        let view = self.sender_transfer(caller, id).await?;
        let length = length
            .ok_or_else(|| TusRefusal::BadRequest("A partial upload needs Upload-Length".into()))?;
        self.check_scannable(view.use_virus_scan, length)?;
        let max_total = self.size_limit(&view).await?;
        if length > max_total {
            return Err(ErrorCode::FileSizeExceedsMaximum.into());
        }
        // The transfer enters UploadStarted with its first part; parts are created concurrently, so
        // none takes the upload slot.
        self.lifecycle().record_upload_started(view.id).await?;
        let part = Uuid::new_v4().simple().to_string();
        // Counted and checked against the maximum with every other part, atomically: parts alone must
        // not add up to more than one upload may hold.
        let max_parts = self.settings().max_tus_parts;
        let sessions = &self.ports().sessions;
        match sessions
            .create_part(view.id, &part, length, self.now(), max_parts, max_total)
            .await?
        {
            PartAdmission::Created => {}
            PartAdmission::TooManyParts => return Err(ErrorCode::TooManyTusParts.into()),
            PartAdmission::TooLarge => return Err(ErrorCode::FileSizeExceedsMaximum.into()),
        }
        self.part_created(view.id, &part, length);
        Ok(part)
    }

    /// `Upload-Concat: final;<url> <url> …`: joins complete parts of this transfer, in order; returns
    /// the joined size. Verifying and publishing the whole file follow in the background.
    pub async fn tus_finish(&self, caller: &Caller, id: Uuid, urls: &[&str]) -> Result<u64> {
        let view = self.sender_transfer(caller, id).await?;
        let bad = |text: String| Error::from(TusRefusal::BadRequest(text));
        let mut parts: Vec<String> = Vec::new();
        let mut total = 0u64;
        for url in urls {
            let part = url
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default();
            let prefix = format!("/filetransfer/upload/tus/{}/", view.id);
            if !url.contains(&prefix) || !valid_part_id(part) {
                return Err(bad(format!(
                    "{url} is not a partial upload of this file transfer"
                )));
            }
            if parts.iter().any(|p| p == part) {
                return Err(bad(format!("the partial upload {part} is listed twice")));
            }
            match self.ports().sessions.get(view.id, part).await? {
                Some(row) if row.length == Some(row.offset) => {
                    total = total.saturating_add(row.offset);
                    parts.push(part.to_string())
                }
                Some(_) => return Err(bad(format!("the partial upload {part} is not complete"))),
                None => return Err(bad(format!("no partial upload {part}"))),
            }
        }
        // The limits may have been lowered since the parts were created.
        self.check_scannable(view.use_virus_scan, total)?;
        if total > self.size_limit(&view).await? {
            return Err(ErrorCode::FileSizeExceedsMaximum.into());
        }
        if parts.is_empty() {
            return Err(bad("Upload-Concat: final lists no partial uploads".into()));
        }
        let mut lease = self.lifecycle().begin_upload(view.id).await?;
        lease.keep_bytes_on_drop();
        // Joining must not be cut short by the client going away: it runs on its own task.
        let broker = self.clone();
        tokio::spawn(async move { broker.join(lease, view, parts).await })
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }

    /// Makes the transfer's file the list of `parts` and records the joined upload; its check follows
    /// in the background. Returns the joined size.
    async fn join(
        &self,
        lease: UploadLease,
        view: TransferView,
        parts: Vec<String>,
    ) -> Result<u64> {
        let id = lease.transfer_id();
        let sessions = &self.ports().sessions;
        let blobs = self.ports().blobs.as_ref();
        let mut lengths = Vec::with_capacity(parts.len());
        for part in &parts {
            // Each complete piece was completed in the store by its last PATCH, unless the broker
            // stopped in between: complete it now.
            let length = sessions.get(id, part).await?.and_then(|r| r.length);
            let length =
                length.ok_or_else(|| Error::Internal(format!("the part {part} disappeared")))?;
            complete_object(blobs, &ObjectKey::piece(id, part), length).await?;
            lengths.push(length);
        }
        // A store that composes pieces as parts of the file needs each but the last to be a part's
        // size; smaller pieces (a small file sent in pieces) are copied into the file instead.
        let min_part = blobs.rules().min_part;
        let small = lengths.iter().rev().skip(1).any(|l| *l < min_part);
        let size = match small {
            false => blobs.compose(id, &parts).await?,
            true => self.copy_pieces(id, &parts, lease.token()).await?,
        };
        // The joined upload is recorded complete before its parts are forgotten, so a restart in
        // between still finds it (and verifies it).
        sessions.record_joined(id, size, self.now()).await?;
        self.parts_joined(id, &parts);
        for part in &parts {
            sessions.remove(id, part).await?;
        }
        // UploadProcessing silently (spec 4.5); the whole file is hashed, parts in order, after the reply.
        self.complete_tus(lease, &view, true, size, None).await?;
        Ok(size)
    }

    /// Writes the transfer's file as one part holding `pieces` in order, read back from the store;
    /// returns its length.
    async fn copy_pieces(&self, id: Uuid, pieces: &[String], token: u64) -> Result<u64> {
        use futures::StreamExt;
        let blobs = self.ports().blobs.as_ref();
        let file = ObjectKey::file(id);
        let mut writer = blobs.write_parts(&file, 0, token).await?;
        for piece in pieces {
            let key = ObjectKey::piece(id, piece);
            let len = blobs
                .completed_len(&key)
                .await?
                .ok_or_else(|| Error::Internal(format!("the piece {piece} is not completed")))?;
            let mut stream = blobs.read(&key, 0, len).await?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(BlobError::Io)?;
                writer.append(std::sync::Arc::new(vec![chunk])).await?;
            }
        }
        let size = writer.commit().await?;
        complete_object(blobs, &file, size).await?;
        Ok(size)
    }

    /// `len` bytes of the piece `part` from `from`: from the completed piece, or from its sealed parts
    /// while it is not completed (it may complete meanwhile: its parts are then gone into it).
    pub(crate) async fn read_piece(
        &self,
        id: Uuid,
        part: &str,
        from: u64,
        len: u64,
        completed: bool,
    ) -> Result<ByteStream> {
        let key = ObjectKey::piece(id, part);
        let blobs = self.ports().blobs.as_ref();
        if !completed {
            if let Some(names) = acknowledged_parts(blobs, &key, from + len).await? {
                match blobs.read_parts(&key, &names, from, len).await {
                    Err(BlobError::NotFound) => {}
                    read => return Ok(read?),
                }
            }
        }
        Ok(blobs.read(&key, from, len).await?)
    }

    /// Terminates one part: removes its bytes; a PATCH still running on it is stopped first.
    pub(crate) async fn terminate_part(&self, view: &TransferView, part: &str) -> Result<()> {
        let sessions = &self.ports().sessions;
        if !valid_part_id(part) || sessions.get(view.id, part).await?.is_none() {
            return Err(TusRefusal::NoSuchPart.into());
        }
        self.stop_running(view.id, Some(part)).await?;
        let held = self
            .lifecycle()
            .lease_desk()
            .try_acquire(view.id, part)
            .await?
            .ok_or(Error::Refused(ErrorCode::FileTransferAlreadyUploaded))?;
        // The upload slot, so a `final` joining this part cannot be under way (409 while it is).
        let lease = self.lifecycle().begin_upload(view.id).await?;
        sessions.terminate(view.id, part, self.now()).await?;
        self.drop_part_hashing(view.id);
        let piece = ObjectKey::piece(view.id, part);
        if let Err(e) = self.ports().blobs.abort(&piece).await {
            tracing::warn!(id = %view.id, part, error = %e, "could not remove a terminated part's bytes");
        }
        lease.release().await;
        held.release().await;
        Ok(())
    }
}
