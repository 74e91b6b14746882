//! Finalization of resumable uploads (spec 4.5): the request that stores an upload's last byte is
//! answered at once; checking the whole file against its declared MD5 and publishing it happen here,
//! in the background. A single upload arrives with its hashes (computed while it streamed); a
//! concatenated one is read back and hashed over its parts in order. After a restart every upload that
//! was complete but not yet verified is picked up again.

use crate::app::App;
use broker_actors::upload::{hash_stream, HashState};
use broker_actors::{LifecycleError, StoredFile};
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
    match app.store.unverified_uploads().await {
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

async fn finalize(app: &App, id: Uuid, hashes: Option<StoredFile>) {
    if let Err(e) = try_finalize(app, id, hashes).await {
        tracing::error!(%id, error = %e, "finalizing a resumable upload failed; it is retried on the next HEAD or restart");
    }
}

async fn try_finalize(app: &App, id: Uuid, hashes: Option<StoredFile>) -> Result<(), String> {
    let failed = |e: &dyn std::fmt::Display| e.to_string();
    let Some(row) = app.store.tus(id, "").await.map_err(|e| failed(&e))? else {
        return Ok(());
    };
    let Some(length) = row.length.filter(|l| *l == row.offset) else {
        return Ok(());
    };
    let view = app
        .transfer(id, false)
        .await
        .map_err(|e| format!("{e:?}"))?;
    // A joined upload is checked silently; a single one announces when a check is pending and is
    // published at once when none is.
    let single_unchecked = !row.joined && !announces_processing(&view);
    match view.status {
        // The server stopped between storing the last byte and recording it: record it now.
        FileTransferStatus::UploadStarted => {
            let mut lease = match app.lifecycle.begin_upload(id).await {
                Ok(lease) => lease,
                // The request that stored the last byte still holds the upload and completes it.
                Err(LifecycleError::Rejected(ErrorCode::FileTransferAlreadyUploaded)) => {
                    return Ok(())
                }
                Err(e) => return Err(e.to_string()),
            };
            lease.keep_bytes_on_drop();
            if single_unchecked {
                let file = match hashes {
                    Some(file) => file,
                    None => hash_stored(app, id, length).await?.finish(),
                };
                lease.complete(file).await.map_err(|e| failed(&e))?;
                return app.store.delete_tus(id, "").await.map_err(|e| failed(&e));
            }
            lease
                .await_verification(!row.joined)
                .await
                .map_err(|e| failed(&e))?;
        }
        FileTransferStatus::UploadProcessing if view.sha256.is_none() => {}
        // Verified already (the row outlived its use): nothing left to do.
        _ => return app.store.delete_tus(id, "").await.map_err(|e| failed(&e)),
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
                    .map_err(|e| failed(&e))?;
                return app.store.delete_tus(id, "").await.map_err(|e| failed(&e));
            }
        },
    };
    match app.lifecycle.complete_verification(id, file).await {
        // A mismatch is an outcome, not an error: the transfer is Failed and told with `uploadfailed`.
        Ok(()) | Err(LifecycleError::Rejected(ErrorCode::ChecksumMismatch)) => {
            app.store.delete_tus(id, "").await.map_err(|e| failed(&e))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Whether a single upload's finalization announces `uploadprocessing`: when a check is pending (a
/// declared MD5 or a virus scan). Without either it is published at once.
pub fn announces_processing(view: &crate::db::TransferView) -> bool {
    view.checksum.is_some() || view.use_virus_scan
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
