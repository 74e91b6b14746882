//! The signals port's adapter within one process: what the in-memory and the embedded (SQLite)
//! deployments need, whose nodes are one process (so its listener map is the adapter's state, not a
//! registry of transfers). A store shared by processes brings its own (PostgreSQL's LISTEN/NOTIFY).

use crate::ports::signals::{Signals, Wakeup};
use async_trait::async_trait;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::sync::oneshot;

type Listeners = Mutex<HashMap<String, Vec<(u64, oneshot::Sender<()>)>>>;

#[derive(Default)]
pub struct LocalSignals {
    listeners: Arc<Listeners>,
    next: AtomicU64,
}

impl LocalSignals {
    /// Topics someone listens on now (for tests: a listener that gave up leaves nothing behind).
    pub fn topics(&self) -> usize {
        self.listeners.lock().expect("signal listeners").len()
    }
}

/// One listener's wait; dropped, it leaves the topic's list.
struct Listening {
    woken: oneshot::Receiver<()>,
    topic: String,
    id: u64,
    listeners: Arc<Listeners>,
}

impl Future for Listening {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.woken).poll(cx).map(|_| ())
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut listeners = self.listeners.lock().expect("signal listeners");
        if let Some(waiting) = listeners.get_mut(&self.topic) {
            waiting.retain(|(id, _)| *id != self.id);
            if waiting.is_empty() {
                listeners.remove(&self.topic);
            }
        }
    }
}

#[async_trait]
impl Signals for LocalSignals {
    fn listen(&self, topic: &str) -> Wakeup {
        let (tx, woken) = oneshot::channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.listeners
            .lock()
            .expect("signal listeners")
            .entry(topic.to_string())
            .or_default()
            .push((id, tx));
        Box::pin(Listening {
            woken,
            topic: topic.to_string(),
            id,
            listeners: self.listeners.clone(),
        })
    }

    async fn signal(&self, topic: &str) {
        let woken = self
            .listeners
            .lock()
            .expect("signal listeners")
            .remove(topic);
        for (_, listener) in woken.into_iter().flatten() {
            let _ = listener.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_wakes_every_listener_of_its_topic_and_nobody_else() {
        let signals = LocalSignals::default();
        let (a, b) = (signals.listen("t"), signals.listen("t"));
        let other = signals.listen("u");
        signals.signal("t").await;
        a.await;
        b.await;
        let still = tokio::time::timeout(std::time::Duration::from_millis(20), other).await;
        assert!(still.is_err(), "another topic's listener sleeps on");
    }

    #[tokio::test]
    async fn a_listener_that_gives_up_leaves_nothing_behind() {
        let signals = LocalSignals::default();
        for _ in 0..100 {
            drop(signals.listen(&uuid::Uuid::new_v4().to_string()));
        }
        let kept = signals.listen("kept");
        assert_eq!(signals.topics(), 1);
        drop(kept);
        assert_eq!(signals.topics(), 0);
    }
}
