//! Counters of what deliveries did, read by the metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the commit-to-delivery lag histogram.
pub const LAG_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0, 600.0,
];

#[derive(Default)]
pub struct DeliveryStats {
    pub attempts: AtomicU64,
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Cumulative counts per [`LAG_BUCKETS`] bound, then the total (+Inf).
    lag_buckets: [AtomicU64; LAG_BUCKETS.len() + 1],
    lag_sum_micros: AtomicU64,
}

impl DeliveryStats {
    pub(crate) fn record_lag(&self, seconds: f64) {
        for (i, bound) in LAG_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                self.lag_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.lag_buckets[LAG_BUCKETS.len()].fetch_add(1, Ordering::Relaxed);
        self.lag_sum_micros
            .fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// The lag histogram: cumulative bucket counts (the last is the total) and the sum in seconds.
    pub fn lag(&self) -> (Vec<u64>, f64) {
        let counts = self
            .lag_buckets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        (
            counts,
            self.lag_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }
}
