//! A notifier that keeps what it was asked to send (both channels configured).

use crate::ports::notifier::{Channel, Notification, Notifier};
use async_trait::async_trait;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryNotifier {
    sent: Mutex<Vec<Notification>>,
}

impl MemoryNotifier {
    /// Every notification sent so far, in order.
    pub fn sent(&self) -> Vec<Notification> {
        self.sent.lock().expect("notifier").clone()
    }
}

#[async_trait]
impl Notifier for MemoryNotifier {
    fn has(&self, _channel: Channel) -> bool {
        true
    }

    async fn send(&self, notification: Notification) -> Result<u16, String> {
        self.sent.lock().expect("notifier").push(notification);
        Ok(250)
    }
}
