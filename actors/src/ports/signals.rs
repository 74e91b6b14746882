//! Wake-ups between requests, and between nodes: a waiter listens on a topic before it looks at the
//! store, and is woken when anyone signals that topic after. A signal carries nothing; what changed is
//! read from the store. Signals may be lost (a node stopping), so every wait also has a deadline.

use async_trait::async_trait;
use futures::future::BoxFuture;

/// Ends once the topic it listens on is signalled.
pub type Wakeup = BoxFuture<'static, ()>;

#[async_trait]
pub trait Signals: Send + Sync + 'static {
    /// Listens on `topic` from now on.
    fn listen(&self, topic: &str) -> Wakeup;
    /// Wakes everyone listening on `topic`.
    async fn signal(&self, topic: &str);
}

/// Topics every node listens on (per-upload topics are named by the lease desk).
pub mod topics {
    /// Events were appended to the outbox (the fan-out routes them).
    pub const OUTBOX: &str = "outbox";
    /// A subscription was created, validated, changed or removed (the fan-out reconciles its workers).
    pub const SUBSCRIPTIONS: &str = "subscriptions";
    /// A job was scheduled before a runtime meant to look again.
    pub const JOBS: &str = "jobs";
}
