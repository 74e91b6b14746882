//! Signals within one process: what the in-memory and the embedded (SQLite) deployments need, whose
//! nodes are one process. A store shared by processes brings its own (PostgreSQL's LISTEN/NOTIFY).

use crate::ports::signals::{Signals, Wakeup};
use async_trait::async_trait;
use futures::FutureExt;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

#[derive(Default)]
pub struct LocalSignals {
    listeners: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

#[async_trait]
impl Signals for LocalSignals {
    fn listen(&self, topic: &str) -> Wakeup {
        let (tx, rx) = oneshot::channel();
        let mut listeners = self.listeners.lock().expect("signal listeners");
        let waiting = listeners.entry(topic.to_string()).or_default();
        // Listeners that gave up are dropped here, so a topic nobody signals does not grow.
        waiting.retain(|w| !w.is_closed());
        waiting.push(tx);
        rx.map(|_| ()).boxed()
    }

    async fn signal(&self, topic: &str) {
        let woken = self
            .listeners
            .lock()
            .expect("signal listeners")
            .remove(topic);
        for listener in woken.into_iter().flatten() {
            let _ = listener.send(());
        }
    }
}
