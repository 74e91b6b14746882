//! How the job runtime learns that a transition scheduled a job due before it meant to look again.

/// How the job runtime learns of a job due before it meant to wake: it says when it will look again,
/// and a schedule earlier than that wakes it. Jobs due later (a purge in 30 days) cost it nothing.
pub struct JobWakeup {
    /// When the runtime looks next, in microseconds since the epoch; `i64::MAX` while it is awake (a
    /// schedule then leaves a wake-up for its next sleep).
    next_look: std::sync::atomic::AtomicI64,
    notify: tokio::sync::Notify,
}

impl Default for JobWakeup {
    fn default() -> Self {
        JobWakeup {
            next_look: std::sync::atomic::AtomicI64::new(i64::MAX),
            notify: tokio::sync::Notify::new(),
        }
    }
}

impl JobWakeup {
    /// A job was scheduled at `at`.
    pub fn scheduled(&self, at: broker_protocol::time::Timestamp) {
        let next = self.next_look.load(std::sync::atomic::Ordering::Acquire);
        if at.timestamp_micros() < next {
            self.notify.notify_one();
        }
    }

    /// The runtime will look again at `at` unless woken: waits until woken.
    pub async fn sleep_until_woken(&self, at: broker_protocol::time::Timestamp) {
        let woken = self.notify.notified();
        tokio::pin!(woken);
        // Registered before the time is published, so a schedule in between is not missed.
        woken.as_mut().enable();
        self.next_look
            .store(at.timestamp_micros(), std::sync::atomic::Ordering::Release);
        woken.await;
        self.awake();
    }

    /// The runtime is awake (looking for due jobs).
    pub fn awake(&self) {
        self.next_look
            .store(i64::MAX, std::sync::atomic::Ordering::Release);
    }
}
