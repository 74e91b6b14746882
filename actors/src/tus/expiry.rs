//! tus expiration: an upload untouched for the configured expiry (sliding: every request that moves it
//! renews it) expires, and a sweep removes its bytes. The transfer stays UploadStarted, so the sender
//! can create a new upload.

use crate::Broker;
use broker_protocol::time::Timestamp;
use uuid::Uuid;

/// How long after its expiry a lease is forgotten: a holder silent for a day is gone.
const FORGET_EXPIRED_MS: u64 = 24 * 60 * 60 * 1000;

/// The one job that sweeps expired resumable uploads.
fn tus_sweep() -> crate::ports::JobKey {
    crate::ports::JobKey::new(crate::ports::JobKind::TusExpiry, "sweep")
}

impl Broker {
    /// When an upload touched now expires.
    pub fn tus_expires(&self) -> Timestamp {
        self.now() + self.settings().tus_upload_expiry
    }

    /// The sweep's job (one for every node): sweeps expired uploads, picks up unverified ones, and
    /// schedules the next sweep.
    pub(crate) async fn run_tus_sweep(&self) -> crate::error::Result<()> {
        self.sweep_expired_uploads().await;
        self.recover_unverified_uploads().await;
        // Claims nobody takes again (a recipient's download window) would otherwise stay forever.
        if let Err(e) = self.ports().leases.forget_expired(FORGET_EXPIRED_MS).await {
            tracing::warn!(error = %e, "cannot forget long-expired leases");
        }
        let next = self.now() + self.settings().tus_sweep_interval;
        self.schedule_job(&tus_sweep(), next).await
    }

    /// Schedules the sweep of expired uploads unless it is scheduled already (at start).
    pub async fn ensure_tus_sweep(&self) -> crate::error::Result<()> {
        if self.ports().jobs.get(&tus_sweep()).await?.is_none() {
            let first = self.now() + self.settings().tus_sweep_interval;
            self.schedule_job(&tus_sweep(), first).await?;
        }
        Ok(())
    }

    /// Removes the bytes of every expired upload not in use right now; returns how many were removed.
    pub async fn sweep_expired_uploads(&self) -> usize {
        let before = self.now() - self.settings().tus_upload_expiry;
        let sessions = &self.ports().sessions;
        let stale = match sessions.stale(before).await {
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
                let Ok(lease) = self.lifecycle().begin_upload(id).await else {
                    self.forget_if_finished(id).await;
                    continue;
                };
                self.drop_part_hashing(id);
                let r = self.ports().blobs.delete(id).await;
                let _ = sessions.remove(id, "").await;
                lease.release().await;
                r
            } else {
                let desk = self.lifecycle().lease_desk();
                let Ok(Some(held)) = desk.try_acquire(id, &part).await else {
                    continue;
                };
                self.drop_part_hashing(id);
                let r = self
                    .ports()
                    .blobs
                    .abort(&crate::ports::ObjectKey::piece(id, &part))
                    .await;
                let _ = sessions.remove(id, &part).await;
                held.release().await;
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

    /// Removes the upload record of a transfer that moved on (published, failed, purged) but kept it,
    /// say because the server stopped right after the move. A transfer being verified keeps its record.
    async fn forget_if_finished(&self, id: Uuid) {
        let Ok(view) = self.view(id).await else {
            return;
        };
        if view.stage().upload_over() {
            let _ = self.ports().sessions.remove(id, "").await;
        }
    }
}
