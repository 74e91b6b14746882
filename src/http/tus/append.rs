//! Appending one request body to a resumable upload (or to one part of it): the hold on the upload,
//! the per-PATCH checksum, durable checkpoints, and the hash state carried between PATCHes.

use super::{max_size, tus_error, SessionRow, TusError};
use crate::app::App;
use crate::db::TransferView;
use crate::http::error::ApiError;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use broker_actors::fail_storage;
use broker_actors::upload::{
    stream_append, Checkpoint, HashState, HashesAfter, Hashing, StreamError,
};
use broker_protocol::ErrorCode;
use futures::StreamExt;
use std::time::Duration;
use uuid::Uuid;

/// The upload's hashing at its durable offset: kept in memory between PATCHes, rebuilt from the
/// stored prefix when missing or stale (after a restart, or a refused PATCH).
pub(super) async fn hashing(app: &App, id: Uuid, offset: u64) -> Result<Hashing, ApiError> {
    if let Some(hashing) = app
        .broker
        .tus_hashes()
        .take(id)
        .filter(|h| h.len() == offset)
    {
        return Ok(hashing);
    }
    if offset == 0 {
        return Ok(HashState::default().into());
    }
    crate::finalize::hash_stored(app, id, offset)
        .await
        .map(Hashing::from)
        .map_err(ApiError::Internal)
}

/// An `Upload-Checksum` (tus checksum extension): the algorithm and the digest the PATCH body must have.
pub(super) struct Checksum {
    hasher: ChecksumHasher,
    expected: Vec<u8>,
}

enum ChecksumHasher {
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
}

impl ChecksumHasher {
    fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        match self {
            ChecksumHasher::Sha1(h) => h.update(bytes),
            ChecksumHasher::Md5(h) => h.update(bytes),
            ChecksumHasher::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        use sha2::Digest;
        match self {
            ChecksumHasher::Sha1(h) => h.finalize().to_vec(),
            ChecksumHasher::Md5(h) => h.finalize().to_vec(),
            ChecksumHasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// Reads `Upload-Checksum: <algorithm> <base64 digest>`.
pub(super) fn parse_checksum(headers: &HeaderMap) -> Result<Option<Checksum>, TusError> {
    use base64::Engine;
    let Some(value) = headers.get("upload-checksum") else {
        return Ok(None);
    };
    let bad = |message: &str| TusError {
        status: StatusCode::BAD_REQUEST,
        message: message.into(),
    };
    let text = value
        .to_str()
        .map_err(|_| bad("Upload-Checksum is not valid"))?;
    let (algorithm, digest) = text
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("Upload-Checksum must be '<algorithm> <base64>'"))?;
    let hasher = match algorithm.to_ascii_lowercase().as_str() {
        "sha1" => ChecksumHasher::Sha1(Default::default()),
        "md5" => ChecksumHasher::Md5(Default::default()),
        "sha256" => ChecksumHasher::Sha256(Default::default()),
        _ => {
            return Err(bad(
                "Unsupported checksum algorithm; use sha1, md5 or sha256",
            ))
        }
    };
    let expected = base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .map_err(|_| bad("The Upload-Checksum digest is not base64"))?;
    Ok(Some(Checksum { hasher, expected }))
}

/// A request body to append, with what its headers say of it.
pub(super) struct Incoming {
    pub body: Body,
    /// `Upload-Length` sent with a deferred-length upload's PATCH.
    pub new_length: Option<u64>,
    /// `Content-Length`.
    pub len: Option<u64>,
    pub checksum: Option<Checksum>,
}

/// How an append ended.
pub(super) enum Appended {
    /// The bytes are durable and the offset moved here.
    Offset(u64),
    /// The body ran past the upload's length: nothing of it was kept.
    TooLong,
    /// The body did not match its `Upload-Checksum`: nothing of it was kept.
    ChecksumMismatch,
    /// Another request moved the offset while this one waited for the upload: nothing was appended.
    OffsetMoved,
}

/// Records a long PATCH's durable progress as the upload's offset.
struct OffsetCheckpoint<'a> {
    app: &'a App,
    id: Uuid,
    part: &'a str,
    /// The offset this PATCH started at.
    base: u64,
    /// The offset last recorded in the DB.
    durable: u64,
}

#[async_trait::async_trait]
impl Checkpoint for OffsetCheckpoint<'_> {
    async fn durable(&mut self, written: u64) {
        let to = self.base + written;
        match self
            .app
            .sessions
            .advance(
                self.id,
                self.part,
                self.durable,
                to,
                None,
                self.app.clock.now(),
            )
            .await
        {
            Ok(true) => self.durable = to,
            Ok(false) => {
                tracing::warn!(id = %self.id, "the upload's offset moved under a running PATCH")
            }
            Err(e) => tracing::warn!(id = %self.id, error = %e, "could not record a checkpoint"),
        }
    }
}

/// The answer to a body that was not kept.
pub(super) fn refusal(outcome: Appended) -> Response {
    match outcome {
        Appended::ChecksumMismatch => tus_error(
            StatusCode::from_u16(460).expect("460 is a valid status"),
            "Checksum Mismatch: the body does not match its Upload-Checksum; the offset did not move",
        ),
        Appended::OffsetMoved => tus_error(
            StatusCode::CONFLICT,
            "Upload-Offset no longer matches the upload's offset; ask for it with HEAD",
        ),
        _ => tus_error(StatusCode::BAD_REQUEST, "The PATCH exceeded the upload's length"),
    }
}

/// Streams one request body onto the upload at `row.offset`, makes it durable and moves the offset;
/// completes the transfer at its full length. A body with a checksum is all or nothing; one without
/// keeps what arrived if it breaks off (that is what makes the upload resumable).
pub(super) async fn append(
    app: &App,
    view: &TransferView,
    part: Option<&str>,
    row: SessionRow,
    incoming: Incoming,
) -> Result<Appended, ApiError> {
    let Incoming {
        body,
        new_length,
        len: body_len,
        checksum,
    } = incoming;
    let room = match row.length {
        Some(length) => length - row.offset,
        None => max_size(app, view).await?.saturating_sub(row.offset),
    };
    // Each streaming PATCH holds a few threads and MiB, as a binary upload does: bound how many run.
    let _permit = app
        .upload_permits
        .try_acquire()
        .map_err(|_| ApiError::Code(ErrorCode::TooManyUploads))?;
    let hold = Hold::take(app, view.id, part).await?;
    // A PATCH that held the upload until now (and was asked to stop) may have moved the offset since
    // the caller read it: appending at the old offset would cut off acknowledged bytes.
    let current = app.sessions.get(view.id, part.unwrap_or("")).await?;
    if current.map(|r| r.offset) != Some(row.offset) {
        hold.release().await;
        return Ok(Appended::OffsetMoved);
    }
    // While this PATCH runs, a newer HEAD or PATCH on the same upload may ask it to stop (its connection
    // may be half-dead): the body then ends early and what arrived is kept.
    let (running, stop) = Running::register(app, view.id, part);
    let state = match part {
        // A part is hashed with the others once they are concatenated.
        Some(_) => HashState::length_only(row.offset).into(),
        None => match hashing(app, view.id, row.offset).await {
            Ok(s) => s,
            Err(e) => {
                hold.release().await;
                return Err(e);
            }
        },
    };
    let writer = match app.blobs.open_append(view.id, part, row.offset).await {
        Ok(w) => w,
        Err(e) => return Err(hold.storage_failed(e).await),
    };
    let (expected, check) = match checksum {
        Some(c) => (
            Some(c.expected),
            Some(std::sync::Arc::new(std::sync::Mutex::new(c.hasher))),
        ),
        None => (None, None),
    };
    let body = {
        let check = check.clone();
        body.into_data_stream()
            .take_until(Box::pin(stop.cancelled_owned()))
            .inspect(move |chunk| {
                if let (Some(check), Ok(bytes)) = (&check, chunk) {
                    check.lock().expect("checksum state").update(bytes);
                }
            })
    };
    let body = Box::pin(body);
    let keep_partial = check.is_none();
    // Without a checksum a long PATCH is made durable every 64 MiB, so a crash loses at most that much.
    let mut progress = OffsetCheckpoint {
        app,
        id: view.id,
        part: part.unwrap_or(""),
        base: row.offset,
        durable: row.offset,
    };
    let checkpoint: Option<&mut dyn Checkpoint> = if keep_partial {
        Some(&mut progress)
    } else {
        None
    };
    // A body known to end the upload waits for the hashes (overlapped with its final sync); any other
    // leaves them running into the next PATCH.
    let last = part.is_none()
        && body_len.is_some_and(|n| row.length.or(new_length) == Some(row.offset + n));
    let after = if last {
        HashesAfter::Finish
    } else {
        HashesAfter::KeepRunning
    };
    let appended = match stream_append(
        body,
        writer,
        state,
        Some(room),
        keep_partial,
        after,
        checkpoint,
    )
    .await
    {
        Ok(a) => a,
        Err(StreamError::TooLarge(_)) => {
            hold.release().await;
            return Ok(Appended::TooLong);
        }
        Err(StreamError::Storage(e)) => return Err(hold.storage_failed(e).await),
        Err(StreamError::Body(e)) => {
            hold.release().await;
            return Err(ApiError::BadRequest(e));
        }
    };
    if let (Some(check), Some(expected)) = (check, expected) {
        let hasher = std::sync::Arc::try_unwrap(check)
            .ok()
            .map(|m| m.into_inner().expect("checksum state"));
        if hasher.map(ChecksumHasher::finish).as_deref() != Some(expected.as_slice()) {
            // The bytes past the durable offset are cut off when the upload continues.
            hold.release().await;
            return Ok(Appended::ChecksumMismatch);
        }
    }
    let new_offset = appended.hashing.len();
    let now = app.clock.now();
    if !app
        .sessions
        .advance(
            view.id,
            part.unwrap_or(""),
            progress.durable,
            new_offset,
            new_length,
            now,
        )
        .await?
    {
        hold.release().await;
        return Err(ErrorCode::FileTransferAlreadyUploaded.into());
    }
    let complete = row.length.or(new_length) == Some(new_offset);
    match hold {
        // The last byte is durable: completing must not be cut short by the client going away, so it
        // runs on its own task.
        Hold::Transfer(lease) if complete => {
            tokio::spawn(complete_upload(
                app.clone(),
                lease,
                view.clone(),
                appended.hashing,
            ))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        }
        Hold::Transfer(lease) => {
            app.broker.tus_hashes().put(view.id, appended.hashing);
            lease.release().await;
        }
        // A complete part waits for the final upload that concatenates it.
        Hold::Part { .. } => {}
    }
    drop(running);
    if let Some(reason) = appended.interrupted {
        tracing::info!(id = %view.id, offset = new_offset, %reason, "tus PATCH broke off; the received bytes are kept");
    }
    Ok(Appended::Offset(new_offset))
}

/// Ends an upload whose every byte is durable (`finalize::complete`) with the hashes computed while it
/// streamed; if those were lost, the stored bytes are hashed again.
async fn complete_upload(
    app: App,
    lease: broker_actors::UploadLease,
    view: TransferView,
    hashing: Hashing,
) -> Result<(), ApiError> {
    let length = hashing.len();
    let hashes = match hashing.finish().await {
        Ok(state) => Some(state.finish()),
        Err(e) => {
            tracing::warn!(id = %view.id, error = %e, "hashing failed; hashing the stored upload again");
            None
        }
    };
    crate::finalize::complete(&app, lease, &view, false, length, hashes).await?;
    Ok(())
}

/// How long a new request waits for a running PATCH it asked to stop.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// The running PATCHes by upload (transfer, part), each with a token that asks it to stop.
#[derive(Default)]
pub struct RunningPatches {
    map: std::sync::Mutex<
        std::collections::HashMap<(Uuid, String), (u64, tokio_util::sync::CancellationToken)>,
    >,
    next: std::sync::atomic::AtomicU64,
}

/// A running PATCH's registration; dropping it unregisters.
pub(super) struct Running {
    app: App,
    key: (Uuid, String),
    generation: u64,
}

impl Running {
    fn register(
        app: &App,
        id: Uuid,
        part: Option<&str>,
    ) -> (Running, tokio_util::sync::CancellationToken) {
        let key = (id, part.unwrap_or("").to_string());
        let token = tokio_util::sync::CancellationToken::new();
        let generation = app
            .tus_running
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        app.tus_running
            .map
            .lock()
            .expect("running patches")
            .insert(key.clone(), (generation, token.clone()));
        (
            Running {
                app: app.clone(),
                key,
                generation,
            },
            token,
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut map = self.app.tus_running.map.lock().expect("running patches");
        if map
            .get(&self.key)
            .is_some_and(|(g, _)| *g == self.generation)
        {
            map.remove(&self.key);
        }
    }
}

/// Asks the PATCH running on this upload, if any, to stop; true if there was one.
pub(super) fn interrupt(app: &App, id: Uuid, part: Option<&str>) -> bool {
    let map = app.tus_running.map.lock().expect("running patches");
    match map.get(&(id, part.unwrap_or("").to_string())) {
        Some((_, token)) => {
            token.cancel();
            true
        }
        None => false,
    }
}

/// Stops the PATCH running on this upload, if any, and waits until it has made its bytes durable, so a
/// HEAD reports the offset that holds.
pub(super) async fn stop_running(app: &App, id: Uuid, part: Option<&str>) {
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    while interrupt(app, id, part) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What keeps other requests off the bytes a request appends.
enum Hold {
    /// The transfer's own upload: its supervisor's upload slot.
    Transfer(broker_actors::UploadLease),
    /// A part of a concatenated upload: a lock on that part (parts upload in parallel), held until
    /// this value is dropped.
    Part { _lock: super::concat::PartLock },
}

impl Hold {
    /// Takes the hold; if a PATCH still holds it, asks that PATCH to stop and waits for it (a few seconds
    /// at most), as tusd does for half-dead connections.
    async fn take(app: &App, id: Uuid, part: Option<&str>) -> Result<Hold, ApiError> {
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        loop {
            match Self::try_take(app, id, part).await {
                Err(ApiError::Code(ErrorCode::FileTransferAlreadyUploaded))
                    if interrupt(app, id, part) && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => return other,
            }
        }
    }

    async fn try_take(app: &App, id: Uuid, part: Option<&str>) -> Result<Hold, ApiError> {
        match part {
            None => {
                let mut lease = app.lifecycle.begin_upload(id).await?;
                // Whatever happens to this request, the bytes acknowledged before it stay.
                lease.keep_bytes_on_drop();
                Ok(Hold::Transfer(lease))
            }
            Some(part) => Ok(Hold::Part {
                _lock: super::concat::PartLock::take(app, id, part)?,
            }),
        }
    }

    async fn release(self) {
        if let Hold::Transfer(lease) = self {
            lease.release().await;
        }
    }

    /// Our storage failed: the transfer fails (its own upload), or the part answers 500 and may be
    /// retried.
    async fn storage_failed(self, error: impl std::fmt::Display) -> ApiError {
        match self {
            Hold::Transfer(lease) => fail_storage(lease, error).await.into(),
            Hold::Part { .. } => {
                tracing::error!(%error, "storage failed during a partial upload");
                ErrorCode::UploadFailed.into()
            }
        }
    }
}
