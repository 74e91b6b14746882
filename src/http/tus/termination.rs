//! tus termination (`DELETE`): of the transfer's upload, or of one part of a concatenated upload.

use super::{check_version, concat, sender_transfer, tus_error, tus_header, TUS_VERSION};
use crate::app::App;
use crate::http::error::ApiError;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// `DELETE` (termination): removes the upload's bytes, and the parts sent for it if any; the transfer
/// stays UploadStarted, so a new upload can be created.
pub async fn terminate(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Err(e) = check_version(&headers) {
        return Ok(e.into_response());
    }
    let view = sender_transfer(&app, &headers, &id).await?;
    if app.sessions.get(view.id, "").await?.is_none() {
        return Ok(tus_error(
            StatusCode::NOT_FOUND,
            "No upload has been created for this file transfer",
        ));
    }
    let lease = app.lifecycle.begin_upload(view.id).await?;
    app.broker.tus_hashes().forget(view.id);
    app.sessions.terminate(view.id, "", app.clock.now()).await?;
    if let Err(e) = app.blobs.delete(view.id).await {
        tracing::warn!(id = %view.id, error = %e, "could not remove a terminated upload's bytes");
    }
    lease.release().await;
    Ok((
        StatusCode::NO_CONTENT,
        [tus_header("tus-resumable", TUS_VERSION)],
    )
        .into_response())
}

/// `DELETE` on a part of a concatenated upload.
pub async fn terminate_part(
    State(app): State<App>,
    Path((id, part)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Err(e) = check_version(&headers) {
        return Ok(e.into_response());
    }
    let view = sender_transfer(&app, &headers, &id).await?;
    concat::terminate_part(&app, &view, &part).await
}
