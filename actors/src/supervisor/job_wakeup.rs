//! How the job runtime learns that a transition scheduled a job due before it meant to look again.

use crate::ports::signals::{topics, Signals, Wakeup};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// How the job runtime learns of a job due before it meant to wake: it says when it will look again,
/// and a schedule earlier than that signals the jobs topic. Jobs due later (a purge in 30 days) cost
/// no signal.
pub struct JobWakeup {
    /// When this node's runtime looks next, in microseconds since the epoch; `i64::MAX` while it is
    /// awake (any schedule then signals, so a job scheduled while it looks is not missed).
    next_look: AtomicI64,
    signals: Arc<dyn Signals>,
}

impl JobWakeup {
    pub fn new(signals: Arc<dyn Signals>) -> JobWakeup {
        JobWakeup {
            next_look: AtomicI64::new(i64::MAX),
            signals,
        }
    }

    /// A job was scheduled at `at`.
    pub async fn scheduled(&self, at: broker_protocol::time::Timestamp) {
        if at.timestamp_micros() < self.next_look.load(Ordering::Acquire) {
            self.signals.signal(topics::JOBS).await;
        }
    }

    /// The runtime is awake and about to look for due jobs: the returned wake-up ends when a job is
    /// scheduled from now on (listened on before the look, so none scheduled during it is missed).
    pub fn awake(&self) -> Wakeup {
        let woken = self.signals.listen(topics::JOBS);
        self.next_look.store(i64::MAX, Ordering::Release);
        woken
    }

    /// The runtime looked and will look again at `at` unless woken.
    pub fn sleeping_until(&self, at: broker_protocol::time::Timestamp) {
        self.next_look
            .store(at.timestamp_micros(), Ordering::Release);
    }
}
