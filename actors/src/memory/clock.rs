//! A clock that moves only when told to.

use crate::ports::Clock;
use broker_protocol::time::Timestamp;
use std::sync::Mutex;

pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock(Mutex::new(start))
    }

    /// Moves the clock on by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().expect("manual clock") += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(chrono::Utc::now())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("manual clock")
    }
}
