//! tus expiration: an upload untouched for `server.tus_upload_expiry_secs` (sliding: every request that
//! moves it renews it) expires, and a sweeper removes its bytes. The transfer stays UploadStarted, so the
//! sender can create a new upload.

use super::concat::PartLock;
use crate::app::App;
use axum::http::HeaderValue;
use std::time::Duration;

/// The `Upload-Expires` of an upload touched now (RFC 9110 date).
pub fn expires_header(app: &App) -> HeaderValue {
    let at = app.clock.now()
        + chrono::Duration::seconds(app.config.server.tus_upload_expiry_secs as i64);
    HeaderValue::from_str(&at.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .expect("dates are ASCII")
}

/// Removes the bytes of every expired upload not in use right now; returns how many were removed.
pub async fn sweep(app: &App) -> usize {
    let before = app.clock.now()
        - chrono::Duration::seconds(app.config.server.tus_upload_expiry_secs as i64);
    let stale = match app.sessions.stale(before).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list expired uploads");
            return 0;
        }
    };
    let mut removed = 0;
    for (id, part) in stale {
        let result = if part.is_empty() {
            // Take the upload slot, so a PATCH that is still streaming is never swept away.
            let Ok(lease) = app.lifecycle.begin_upload(id).await else {
                forget_if_finished(app, id).await;
                continue;
            };
            app.broker.tus_hashes().forget(id);
            let r = app.blobs.delete(id).await;
            let _ = app.sessions.remove(id, "").await;
            lease.release().await;
            r
        } else {
            let Ok(_lock) = PartLock::take(app, id, &part) else {
                continue;
            };
            let r = app.blobs.delete_part(id, &part).await;
            let _ = app.sessions.remove(id, &part).await;
            r
        };
        match result {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!(%id, %part, error = %e, "cannot remove an expired upload"),
        }
    }
    if removed > 0 {
        tracing::info!(removed, "expired resumable uploads removed");
    }
    removed
}

/// Removes the upload record of a transfer that moved on (published, failed, purged) but kept it, say
/// because the server stopped right after the move. A transfer being verified keeps its record.
async fn forget_if_finished(app: &App, id: uuid::Uuid) {
    let Ok(view) = app.transfer(id).await else {
        return;
    };
    let verifying = view.status == broker_protocol::FileTransferStatus::UploadProcessing
        && view.sha256.is_none();
    if view.status > broker_protocol::FileTransferStatus::UploadStarted && !verifying {
        let _ = app.sessions.remove(id, "").await;
    }
}

/// Sweeps every `server.tus_sweep_interval_secs` until the server shuts down.
pub async fn run_sweeper(app: App) {
    let every = Duration::from_secs(app.config.server.tus_sweep_interval_secs.max(1));
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {
                app.broker.tus_hashes().settle_idle(every).await;
                sweep(&app).await;
                crate::finalize::recover(&app).await;
            }
        }
    }
}
