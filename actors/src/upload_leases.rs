//! This node's side of upload leases: a grant held while a request writes an upload, renewed in the
//! background, and the stop a newer request asks of it. A newer request asks the holder to stop (a flag
//! in the store and a signal), then waits for the holder's release signal, never by polling; a holder on
//! a node the signal does not reach learns of the stop when it next renews.

use crate::ports::leases::{Acquired, Renewal};
use crate::ports::{Leases, Signals, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a grant lives unless renewed (the store's clock): how long an upload whose node died stays
/// locked.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// How long a newer request waits for the holder it asked to stop.
pub const STOP_WAIT: Duration = Duration::from_secs(5);

fn stop_topic(id: Uuid, part: &str) -> String {
    format!("upload-stop:{id}:{part}")
}

fn released_topic(id: Uuid, part: &str) -> String {
    format!("upload-released:{id}:{part}")
}

/// What granting and waiting need: the store's leases, the signals, and this node's name.
#[derive(Clone)]
pub struct LeaseDesk {
    leases: Arc<dyn Leases>,
    signals: Arc<dyn Signals>,
    node: String,
    ttl: Duration,
}

/// A grant this node holds on one upload. Dropped without `release`, it is released in the background.
pub struct HeldLease {
    desk: LeaseDesk,
    id: Uuid,
    part: String,
    token: u64,
    /// Cancelled when a newer request asks the holder to stop, or the grant was lost.
    stop: CancellationToken,
    renewing: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseDesk {
    pub fn new(
        leases: Arc<dyn Leases>,
        signals: Arc<dyn Signals>,
        node: String,
        ttl: Duration,
    ) -> LeaseDesk {
        LeaseDesk {
            leases,
            signals,
            node,
            ttl,
        }
    }

    /// Ends the grant `token` in the store (its holder signals the release).
    pub(crate) async fn release_grant(&self, id: Uuid, part: &str, token: u64) {
        if let Err(e) = self.leases.release(id, part, token).await {
            tracing::warn!(%id, error = %e, "could not release an upload's lease; it expires");
        }
    }

    /// Ends once the upload's holder lets go (listen before looking).
    pub(crate) fn released(&self, id: Uuid, part: &str) -> crate::ports::Wakeup {
        self.signals.listen(&released_topic(id, part))
    }

    /// The upload's lease, if nobody holds it now.
    pub(crate) async fn try_acquire(
        &self,
        id: Uuid,
        part: &str,
    ) -> Result<Option<HeldLease>, StoreError> {
        // Listening before the grant: a stop asked right after it is not missed.
        let stop_asked = self.listen_stop(id, part);
        Ok(self
            .acquire_token(id, part)
            .await?
            .map(|token| self.hold(id, part, token, stop_asked)))
    }

    /// Whether any node holds the lease now (by the store's clock); a store that cannot say counts
    /// as held, so a caller that would start work on `false` does not run it twice.
    pub(crate) async fn is_held(&self, id: Uuid, part: &str) -> bool {
        match self.leases.holder(id, part).await {
            Ok(holder) => holder.is_some(),
            Err(e) => {
                tracing::warn!(%id, error = %e, "cannot tell who holds a lease");
                true
            }
        }
    }

    /// Claims `name` of the transfer for `window` (the store's clock), never renewed nor released: true
    /// when nobody claimed it within the window, on any node (a debounce several nodes share).
    pub(crate) async fn claim_window(
        &self,
        id: Uuid,
        name: &str,
        window: Duration,
    ) -> Result<bool, StoreError> {
        let ttl_ms = window.as_millis() as u64;
        Ok(matches!(
            self.leases.acquire(id, name, &self.node, ttl_ms).await?,
            Acquired::Granted(_)
        ))
    }

    /// Grants the upload's lease to this node in the store, if nobody holds it now: the token.
    pub(crate) async fn acquire_token(
        &self,
        id: Uuid,
        part: &str,
    ) -> Result<Option<u64>, StoreError> {
        Ok(
            match self
                .leases
                .acquire(id, part, &self.node, self.ttl_ms())
                .await?
            {
                Acquired::Granted(grant) => Some(grant.token),
                Acquired::Held { .. } => None,
            },
        )
    }

    /// Listens for a stop asked of the upload's holder (taken before the grant, handed to `hold`).
    pub(crate) fn listen_stop(&self, id: Uuid, part: &str) -> crate::ports::Wakeup {
        self.signals.listen(&stop_topic(id, part))
    }

    /// This node holds the grant `token` (taken in the store, alone or with a transition): renew it
    /// until released, and stop when asked.
    pub(crate) fn hold(
        &self,
        id: Uuid,
        part: &str,
        token: u64,
        stop_asked: crate::ports::Wakeup,
    ) -> HeldLease {
        let stop = CancellationToken::new();
        let renewing = tokio::spawn(renew(
            self.clone(),
            id,
            part.to_string(),
            token,
            stop.clone(),
            stop_asked,
        ));
        HeldLease {
            desk: self.clone(),
            id,
            part: part.to_string(),
            token,
            stop,
            renewing: Some(renewing),
        }
    }

    /// What a grant taken with a transition says of its holder.
    pub(crate) fn begin_lease(&self) -> crate::ports::metadata::BeginLease {
        crate::ports::metadata::BeginLease {
            holder: self.node.clone(),
            ttl_ms: self.ttl_ms(),
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// The upload's lease; if a request holds it, asks that one to stop and waits for it to let go
    /// (at most [`STOP_WAIT`]). `None` if it did not.
    pub(crate) async fn take_over(
        &self,
        id: Uuid,
        part: &str,
    ) -> Result<Option<HeldLease>, StoreError> {
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        loop {
            let released = self.signals.listen(&released_topic(id, part));
            if let Some(held) = self.try_acquire(id, part).await? {
                return Ok(Some(held));
            }
            if self.ask_to_stop(id, part).await?
                && tokio::time::timeout_at(deadline, released).await.is_ok()
            {
                continue;
            }
            // Nobody alive to stop (the grant expired meanwhile), or the holder did not let go in time:
            // one last try.
            return self.try_acquire(id, part).await;
        }
    }

    /// Asks the upload's holder, if any, to stop and waits (at most [`STOP_WAIT`]) until it has let go,
    /// so what it wrote is durable and recorded.
    pub(crate) async fn stop_holder(&self, id: Uuid, part: &str) -> Result<(), StoreError> {
        let released = self.signals.listen(&released_topic(id, part));
        if self.ask_to_stop(id, part).await? {
            let _ = tokio::time::timeout(STOP_WAIT, released).await;
        }
        Ok(())
    }

    pub(crate) async fn ask_to_stop(&self, id: Uuid, part: &str) -> Result<bool, StoreError> {
        let asked = self.leases.request_stop(id, part).await?;
        if asked {
            self.signals.signal(&stop_topic(id, part)).await;
        }
        Ok(asked)
    }
}

/// Keeps the grant alive until it is released; ends the holder's request when a stop is asked (by
/// signal, or seen at a renewal) or the grant is lost.
async fn renew(
    desk: LeaseDesk,
    id: Uuid,
    part: String,
    token: u64,
    stop: CancellationToken,
    stop_asked: crate::ports::Wakeup,
) {
    let mut stop_asked = Some(stop_asked);
    let every = desk.ttl / 3;
    loop {
        let signalled = async {
            match stop_asked.as_mut() {
                Some(wait) => wait.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = signalled => {
                stop_asked = None;
                stop.cancel();
            }
            _ = tokio::time::sleep(every) => {
                let ttl_ms = desk.ttl.as_millis() as u64;
                match desk.leases.renew(id, &part, token, ttl_ms).await {
                    Ok(Renewal::Renewed) => {}
                    Ok(Renewal::StopRequested) => stop.cancel(),
                    Ok(Renewal::Lost) => {
                        tracing::warn!(%id, part, "an upload's lease was taken over; its request stops");
                        stop.cancel();
                        return;
                    }
                    Err(e) => tracing::warn!(%id, error = %e, "could not renew an upload's lease"),
                }
            }
        }
    }
}

impl HeldLease {
    /// The fencing token every write under this grant names.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Cancelled when the holder should stop writing (a newer request asked, or the grant was lost).
    pub fn stop(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// The grant was ended in the store by someone else on this holder's behalf (the commit of the
    /// upload's last transition): stops renewing and wakes whoever waits for the upload.
    pub async fn let_go(mut self) {
        self.stop_renewing();
        let topic = released_topic(self.id, &self.part);
        self.desk.signals.signal(&topic).await;
    }

    /// Lets go of the upload and wakes whoever waits for it.
    pub async fn release(mut self) {
        self.stop_renewing();
        let (desk, id, part, token) = (self.desk.clone(), self.id, self.part.clone(), self.token);
        release(desk, id, part, token).await;
    }

    fn stop_renewing(&mut self) {
        if let Some(task) = self.renewing.take() {
            task.abort();
        }
    }
}

async fn release(desk: LeaseDesk, id: Uuid, part: String, token: u64) {
    if let Err(e) = desk.leases.release(id, &part, token).await {
        tracing::warn!(%id, error = %e, "could not release an upload's lease; it expires");
    }
    desk.signals.signal(&released_topic(id, &part)).await;
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        if self.renewing.is_none() {
            return;
        }
        self.stop_renewing();
        let (desk, id, part, token) = (self.desk.clone(), self.id, self.part.clone(), self.token);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(release(desk, id, part, token));
        }
    }
}
