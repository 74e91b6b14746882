//! Finalization of resumable uploads (spec 4.5): the request that stores an upload's last byte is
//! answered at once; checking the whole file against its declared MD5 and publishing it happen here,
//! in the background. A single upload arrives with its hashes (computed while it streamed); a
//! concatenated one is read back and hashed over its parts in order. After a restart every upload that
//! was complete but not yet verified is picked up again.

use crate::app::App;
use crate::db::TransferView;
use broker_actors::upload::{hash_stream, HashState};
use broker_actors::{Error, StoredFile, UploadLease};
use broker_protocol::{ErrorCode, FileTransferStatus};
use uuid::Uuid;

/// Starts the background check of `id` unless one runs already. `hashes`: the file's hashes when they
/// are known (a single upload's last PATCH); otherwise the stored bytes are read back.
/// Returns whether it started one.
pub fn start(app: &App, id: Uuid, hashes: Option<StoredFile>) -> bool {
    if !app.finalizing.lock().expect("finalizing").insert(id) {
        return false;
    }
    let app = app.clone();
    tokio::spawn(async move {
        let stopping = app.shutdown.clone();
        tokio::select! {
            // A check cut short by a shutdown runs again at the next start.
            _ = stopping.cancelled() => {}
            _ = finalize(&app, id, hashes) => {}
        }
        app.finalizing.lock().expect("finalizing").remove(&id);
    });
    true
}

/// Picks up complete but unverified uploads: those a stopped server left, and those whose check
/// failed (run at start and on every sweep).
pub async fn recover(app: &App) {
    match app.sessions.unverified().await {
        Ok(ids) => {
            let started = ids.into_iter().filter(|id| start(app, *id, None)).count();
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

/// What [`complete`] made of an upload.
#[derive(Debug, PartialEq, Eq)]
pub enum Completed {
    Published,
    /// UploadProcessing; the check runs in the background.
    Checking,
}

/// Ends the upload of a transfer whose every byte is durable, holding its upload slot (spec 4.5). A
/// single upload with nothing to check (no declared MD5, no virus scan) is published now; any other
/// moves to UploadProcessing, announced with `uploadprocessing` only for a single upload, and its
/// check is started. `hashes`: the file's hashes when known, else its `length` stored bytes are read.
pub async fn complete(
    app: &App,
    lease: UploadLease,
    view: &TransferView,
    joined: bool,
    length: u64,
    hashes: Option<StoredFile>,
) -> Result<Completed, Error> {
    let id = lease.transfer_id();
    let check_pending = view.checksum.is_some() || view.use_virus_scan;
    if joined || check_pending {
        lease.await_verification(!joined).await?;
        start(app, id, hashes);
        return Ok(Completed::Checking);
    }
    let file = match hashes {
        Some(file) => file,
        None => hash_stored(app, id, length)
            .await
            .map_err(Error::Internal)?
            .finish(),
    };
    lease.complete(file).await?;
    app.sessions.remove(id, "").await?;
    Ok(Completed::Published)
}

async fn finalize(app: &App, id: Uuid, hashes: Option<StoredFile>) {
    if let Err(e) = try_finalize(app, id, hashes).await {
        tracing::error!(%id, error = %e, "finalizing a resumable upload failed; it is retried on the next sweep, HEAD or restart");
    }
}

async fn try_finalize(app: &App, id: Uuid, hashes: Option<StoredFile>) -> Result<(), String> {
    let Some(row) = app.sessions.get(id, "").await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let Some(length) = row.length.filter(|l| *l == row.offset) else {
        return Ok(());
    };
    let view = app.transfer(id).await.map_err(|e| format!("{e:?}"))?;
    match view.status {
        // The server stopped (or the request was cut off) between storing the last byte and
        // recording it: record it now. The check, if any, goes on below (`start` sees this one run).
        FileTransferStatus::UploadStarted => {
            let mut lease = match app.lifecycle.begin_upload(id).await {
                Ok(lease) => lease,
                // The request that stored the last byte still holds the upload and completes it.
                Err(Error::Refused(ErrorCode::FileTransferAlreadyUploaded)) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            };
            lease.keep_bytes_on_drop();
            let completed = complete(app, lease, &view, row.joined, length, hashes.clone())
                .await
                .map_err(|e| e.to_string())?;
            if completed == Completed::Published {
                return Ok(());
            }
        }
        FileTransferStatus::UploadProcessing if view.sha256.is_none() => {}
        // Verified already (the row outlived its use): nothing left to do.
        _ => return app.sessions.remove(id, "").await.map_err(|e| e.to_string()),
    }
    let file = match hashes {
        Some(file) => file,
        None => match hash_stored(app, id, length).await {
            Ok(state) => state.finish(),
            Err(e) => {
                tracing::error!(%id, error = %e, "cannot read back a stored upload; the transfer fails");
                app.lifecycle
                    .fail_verification(id)
                    .await
                    .map_err(|e| e.to_string())?;
                return app.sessions.remove(id, "").await.map_err(|e| e.to_string());
            }
        },
    };
    match app.lifecycle.complete_verification(id, file).await {
        // A mismatch is an outcome, not an error: the transfer is Failed and told with `uploadfailed`.
        Ok(()) | Err(Error::Refused(ErrorCode::ChecksumMismatch)) => {
            app.sessions.remove(id, "").await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// MD5 and SHA-256 of the first `len` stored bytes of the transfer's file (parts spanned), read back
/// from disk; MD5 and SHA-256 each on its own thread.
pub async fn hash_stored(app: &App, id: Uuid, len: u64) -> Result<HashState, String> {
    let stream = app
        .blobs
        .read(id, 0, len)
        .await
        .map_err(|e| e.to_string())?;
    let state = hash_stream(stream).await.map_err(|e| e.to_string())?;
    if state.len() != len {
        return Err(format!("{} of {len} bytes could be read", state.len()));
    }
    Ok(state)
}
