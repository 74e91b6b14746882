//! Appending one request body to a resumable upload (or to one part of it): the hold on the upload,
//! the per-PATCH checksum, durable checkpoints, and the hash state carried between PATCHes.

use super::checksum::UploadChecksum;
use crate::binary_upload::fail_storage;
use crate::error::{Error, Result, TusRefusal};
use crate::ports::blobs::{acknowledged_parts, parts_missing};
use crate::ports::metadata::TransferView;
use crate::ports::upload_sessions::{Advance, SessionRow};
use crate::ports::{complete_object, ObjectKey};
use crate::upload::{stream_append, Checkpoint, HashState, HashesAfter, Hashing, StreamError};
use crate::upload_leases::HeldLease;
use crate::{Broker, UploadLease};
use broker_protocol::ErrorCode;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A request body to append, with what its headers say of it.
pub struct Patch<S> {
    pub body: S,
    /// `Upload-Length` sent with a deferred-length upload's PATCH.
    pub new_length: Option<u64>,
    /// `Content-Length`.
    pub len: Option<u64>,
    pub checksum: Option<UploadChecksum>,
}

/// Records a long PATCH's durable progress as the upload's offset, and keeps the bytes written since
/// the last sealed part while they may have to be staged.
struct OffsetCheckpoint<'a> {
    broker: &'a Broker,
    id: Uuid,
    part: &'a str,
    /// The offset this PATCH started at.
    base: u64,
    /// The offset last recorded.
    durable: u64,
    /// The lease grant the PATCH writes under.
    fence: u64,
    /// Whether checkpoints move the offset (a PATCH with a checksum is all or nothing: they only seal
    /// parts).
    advances: bool,
    /// Body bytes between checkpoints.
    interval: u64,
    /// The bytes since the last sealed part, while fewer than `stage_below` (0: nothing is staged).
    tail: StagedTail,
}

/// The bytes written since the last sealed part, kept (as shared chunks, not copied) while they are
/// too few to be any part but an object's last.
struct StagedTail {
    below: u64,
    chunks: Vec<Bytes>,
    len: u64,
    /// Too many to stage (or staging is off): not kept.
    enough: bool,
}

impl StagedTail {
    fn new(below: u64) -> StagedTail {
        StagedTail {
            below,
            chunks: Vec::new(),
            len: 0,
            enough: below == 0,
        }
    }

    fn add(&mut self, batch: &crate::ports::Batch) {
        if self.enough {
            return;
        }
        self.len += batch.iter().map(|b| b.len() as u64).sum::<u64>();
        if self.len >= self.below {
            (self.enough, self.chunks) = (true, Vec::new());
        } else {
            self.chunks.extend(batch.iter().cloned());
        }
    }

    /// A part was sealed: what follows begins a new one.
    fn sealed(&mut self) {
        (self.chunks, self.len, self.enough) = (Vec::new(), 0, self.below == 0);
    }

    /// The bytes to stage with the offset, if the last part is too small to stay a middle part.
    fn to_stage(&self) -> Option<Vec<u8>> {
        (!self.enough && self.len > 0).then(|| self.chunks.concat())
    }
}

#[async_trait::async_trait]
impl Checkpoint for OffsetCheckpoint<'_> {
    async fn before_batch(
        &mut self,
        written: u64,
        batch: &crate::ports::Batch,
    ) -> crate::upload::Live {
        if self.part.is_empty() || !self.advances {
            return crate::upload::Live::No;
        }
        let offset = self.base + written;
        self.broker
            .part_batch(self.id, self.part, offset, self.durable, batch)
            .await
    }

    fn stored(&mut self, batch: &crate::ports::Batch) {
        self.tail.add(batch);
    }

    fn interval(&self) -> u64 {
        self.interval
    }

    async fn durable(&mut self, written: u64, hashes: HashState) {
        self.tail.sealed();
        if !self.advances {
            return;
        }
        let to = self.base + written;
        let sessions = &self.broker.ports().sessions;
        let state = hashes.to_bytes();
        let step = Advance::new(self.durable, to, self.broker.now())
            .fenced(self.fence)
            .hashed(state.as_deref());
        match sessions.advance(self.id, self.part, step).await {
            Ok(true) => {
                self.durable = to;
                if !self.part.is_empty() {
                    self.broker.part_progressed(self.id, self.part, to, false);
                }
            }
            Ok(false) => {
                tracing::warn!(id = %self.id, "the upload's offset moved under a running PATCH")
            }
            Err(e) => tracing::warn!(id = %self.id, error = %e, "could not record a checkpoint"),
        }
    }
}

/// What keeps other requests off the bytes a request appends: the upload's lease.
enum Hold {
    /// The transfer's own upload: its supervisor's upload slot.
    Transfer(UploadLease),
    /// A part of a concatenated upload: that part's own lease (parts upload in parallel).
    Part(HeldLease),
}

impl Hold {
    /// Takes the hold; if a PATCH still holds it, asks that PATCH to stop and waits for it (a few
    /// seconds at most), as tusd does for half-dead connections.
    async fn take(broker: &Broker, id: Uuid, part: Option<&str>) -> Result<Hold> {
        match part {
            None => {
                let mut lease = broker.lifecycle().take_upload(id).await?;
                // Whatever happens to this request, the bytes acknowledged before it stay.
                lease.keep_bytes_on_drop();
                Ok(Hold::Transfer(lease))
            }
            Some(part) => match broker.lifecycle().lease_desk().take_over(id, part).await? {
                Some(held) => Ok(Hold::Part(held)),
                None => Err(ErrorCode::FileTransferAlreadyUploaded.into()),
            },
        }
    }

    /// The fencing token every write under this hold names.
    fn token(&self) -> u64 {
        match self {
            Hold::Transfer(lease) => lease.token(),
            Hold::Part(held) => held.token(),
        }
    }

    /// Cancelled when a newer request on the same upload asks this one to stop.
    fn stop(&self) -> CancellationToken {
        match self {
            Hold::Transfer(lease) => lease.stop(),
            Hold::Part(held) => held.stop(),
        }
    }

    async fn release(self) {
        match self {
            Hold::Transfer(lease) => lease.release().await,
            Hold::Part(held) => held.release().await,
        }
    }

    /// Our storage failed: the transfer fails (its own upload), or the part answers 500 and may be
    /// retried.
    async fn storage_failed(self, error: impl std::fmt::Display) -> Error {
        match self {
            Hold::Transfer(lease) => fail_storage(lease, error).await,
            Hold::Part(held) => {
                held.release().await;
                tracing::error!(%error, "storage failed during a partial upload");
                ErrorCode::UploadFailed.into()
            }
        }
    }
}

impl Broker {
    /// Stops the PATCH running on this upload, if any, and waits until it has made its bytes durable,
    /// so a HEAD reports the offset that holds.
    pub(crate) async fn stop_running(&self, id: Uuid, part: Option<&str>) -> Result<()> {
        self.lifecycle().stop_upload(id, part.unwrap_or("")).await
    }

    /// The upload's hash state at its durable offset: the one kept with the offset, or (when none is,
    /// or in a format this build does not know) the stored prefix hashed again.
    async fn hashing(&self, id: Uuid, row: &SessionRow) -> Result<Hashing> {
        let kept = row.hash_state.as_deref().and_then(HashState::from_bytes);
        if let Some(state) = kept.filter(|s| s.len() == row.offset) {
            return Ok(state.into());
        }
        if row.offset == 0 {
            return Ok(HashState::default().into());
        }
        Ok(self.hash_uploaded(id, row.offset).await?.into())
    }

    /// MD5 and SHA-256 of the first `len` acknowledged bytes of the transfer's upload, read back from
    /// the parts that hold them.
    async fn hash_uploaded(&self, id: Uuid, len: u64) -> Result<HashState> {
        let key = ObjectKey::file(id);
        let blobs = self.ports().blobs.as_ref();
        let names = acknowledged_parts(blobs, &key, len)
            .await?
            .ok_or_else(|| parts_missing(len))?;
        let stream = blobs.read_parts(&key, &names, 0, len).await?;
        super::verify::hash_exactly(stream, len).await
    }

    /// How far apart a PATCH's checkpoints are, and below what size its last part is staged (0: never),
    /// on this store for this upload: every part but an object's last must reach the store's minimum,
    /// and the parts must be few enough for the store's most parts however long the file grows.
    async fn part_sizes(&self, view: &TransferView, row: &SessionRow) -> Result<(u64, u64)> {
        let rules = self.ports().blobs.rules();
        if rules.min_part == 0 {
            return Ok((crate::upload::CHECKPOINT_BYTES, 0));
        }
        let longest = match row.length {
            Some(length) => length,
            None => self.size_limit(view).await?,
        };
        let parts = rules.max_parts.max(1) as u64;
        let floor = rules.min_part.max(longest.div_ceil(parts));
        Ok((crate::upload::CHECKPOINT_BYTES.max(floor), floor))
    }

    /// Streams one request body onto the upload at `row.offset`, makes it durable and moves the
    /// offset; completes the transfer at its full length. A body with a checksum is all or nothing; one
    /// without keeps what arrived if it breaks off (that is what makes the upload resumable).
    pub(crate) async fn append<S, E>(
        &self,
        view: &TransferView,
        part: Option<&str>,
        row: SessionRow,
        patch: Patch<S>,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let Patch {
            body,
            new_length,
            checksum,
            ..
        } = patch;
        let room = match row.length {
            Some(length) => length - row.offset,
            None => self.size_limit(view).await?.saturating_sub(row.offset),
        };
        // Each streaming PATCH holds a few threads and MiB, as a binary upload does: bound how many run.
        let _permit = self.upload_permit()?;
        let hold = Hold::take(self, view.id, part).await?;
        // A PATCH that held the upload until now (and was asked to stop) may have moved the offset
        // since the caller read it: appending at the old offset would cut off acknowledged bytes.
        let current = self
            .ports()
            .sessions
            .get(view.id, part.unwrap_or(""))
            .await?;
        let Some(mut row) = current.filter(|r| r.offset == row.offset) else {
            hold.release().await;
            return Err(TusRefusal::OffsetMoved.into());
        };
        // While this PATCH runs, a newer HEAD or PATCH on the same upload may ask it to stop (its
        // connection may be half-dead): the body then ends early and what arrived is kept.
        let stop = hold.stop();
        let state = match part {
            // A part is hashed with the others once they are concatenated.
            Some(_) => HashState::length_only(row.offset).into(),
            None => match self.hashing(view.id, &row).await {
                Ok(s) => s,
                Err(e) => {
                    hold.release().await;
                    return Err(e);
                }
            },
        };
        let key = ObjectKey::of(view.id, part);
        // Bytes staged by the PATCH before are written again at the head of this one's first part.
        let staged = row
            .staged
            .take()
            .filter(|s| !s.is_empty() && s.len() as u64 <= row.offset)
            .map(|s| -> crate::ports::Batch { Arc::new(vec![Bytes::from(s)]) });
        let start = row.offset - staged.as_ref().map_or(0, |s| s[0].len() as u64);
        let (interval, stage_below) = self.part_sizes(view, &row).await?;
        let opened = async {
            let mut writer = self
                .ports()
                .blobs
                .write_parts(&key, start, hold.token())
                .await?;
            if let Some(staged) = &staged {
                writer.append(staged.clone()).await?;
            }
            Ok::<_, crate::ports::BlobError>(writer)
        };
        let writer = match opened.await {
            Ok(w) => w,
            Err(e) => return Err(hold.storage_failed(e).await),
        };
        let check = checksum.map(|c| Arc::new(Mutex::new(c)));
        let body = {
            let check = check.clone();
            body.take_until(Box::pin(stop.cancelled_owned()))
                .inspect(move |chunk| {
                    if let (Some(check), Ok(bytes)) = (&check, chunk) {
                        check.lock().expect("checksum state").update(bytes);
                    }
                })
        };
        let keep_partial = check.is_none();
        // Without a checksum a long PATCH is made durable every 64 MiB, so a crash loses at most that.
        let mut progress = OffsetCheckpoint {
            broker: self,
            id: view.id,
            part: part.unwrap_or(""),
            base: row.offset,
            durable: row.offset,
            fence: hold.token(),
            advances: keep_partial,
            interval,
            tail: StagedTail::new(stage_below),
        };
        if let Some(staged) = &staged {
            progress.tail.add(staged);
        }
        let checkpoint: Option<&mut dyn Checkpoint> = Some(&mut progress);
        // Every PATCH waits for its hashes (overlapped with its final sync), so the state is kept with
        // the offset it acknowledges and the next PATCH, on any process, reads nothing back.
        let streamed = stream_append(
            Box::pin(body),
            writer,
            state,
            Some(room),
            keep_partial,
            HashesAfter::Finish,
            checkpoint,
        )
        .await;
        if streamed.is_err() && part.is_some() {
            // Bytes hashed live past the durable offset are cut off when the part goes on.
            self.drop_part_hashing(view.id);
        }
        let appended = match streamed {
            Ok(a) => a,
            Err(StreamError::TooLarge(_)) => {
                hold.release().await;
                return Err(TusRefusal::TooLong.into());
            }
            Err(StreamError::Storage(e)) => return Err(hold.storage_failed(e).await),
            Err(StreamError::Body(e)) => {
                hold.release().await;
                return Err(Error::Unreadable(e));
            }
        };
        if let Some(check) = check {
            let checksum = Arc::try_unwrap(check)
                .ok()
                .map(|m| m.into_inner().expect("checksum state"));
            if !checksum.is_some_and(UploadChecksum::matches) {
                // The bytes past the durable offset are cut off when the upload continues.
                hold.release().await;
                return Err(TusRefusal::ChecksumMismatch.into());
            }
        }
        let new_offset = appended.hashing.len();
        let state = match &appended.hashing {
            Hashing::Ready(state) => state.to_bytes(),
            Hashing::Running(_) => None,
        };
        let complete = row.length.or(new_length) == Some(new_offset);
        // The last part of an object may be small; any other one the store would refuse is staged.
        let tail = (!complete).then(|| progress.tail.to_stage()).flatten();
        let step = Advance::new(progress.durable, new_offset, self.now())
            .declaring(new_length)
            .fenced(hold.token())
            .hashed(state.as_deref())
            .staging(tail.as_deref());
        let moved = self
            .ports()
            .sessions
            .advance(view.id, part.unwrap_or(""), step)
            .await?;
        if !moved {
            if part.is_some() {
                self.drop_part_hashing(view.id);
            }
            hold.release().await;
            return Err(ErrorCode::FileTransferAlreadyUploaded.into());
        }
        if let Some(part) = part {
            if complete {
                // A complete piece is completed in the store at once: it can then be read back (and
                // hashed) on any store, and the final only composes.
                if let Err(e) = complete_object(self.ports().blobs.as_ref(), &key, new_offset).await
                {
                    return Err(hold.storage_failed(e).await);
                }
            }
            self.part_progressed(view.id, part, new_offset, complete);
        }
        match hold {
            // The last byte is durable: completing must not be cut short by the client going away, so
            // it runs on its own task.
            Hold::Transfer(lease) if complete => {
                let broker = self.clone();
                let (view, hashing) = (view.clone(), appended.hashing);
                tokio::spawn(async move { broker.complete_streamed(lease, view, hashing).await })
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))??;
            }
            Hold::Transfer(lease) => lease.release().await,
            // A complete part waits for the final upload that concatenates it.
            Hold::Part(held) => held.release().await,
        }
        if let Some(reason) = appended.interrupted {
            tracing::info!(id = %view.id, offset = new_offset, %reason, "tus PATCH broke off; the received bytes are kept");
        }
        Ok(new_offset)
    }

    /// Ends an upload whose every byte is durable with the hashes computed while it streamed; if those
    /// were lost, the stored bytes are hashed again.
    async fn complete_streamed(
        &self,
        lease: UploadLease,
        view: TransferView,
        hashing: Hashing,
    ) -> Result<()> {
        let length = hashing.len();
        let hashes = match hashing.finish().await {
            Ok(state) => Some(state.finish()),
            Err(e) => {
                tracing::warn!(id = %view.id, error = %e, "hashing failed; hashing the stored upload again");
                None
            }
        };
        self.complete_tus(lease, &view, false, length, hashes)
            .await?;
        Ok(())
    }
}
