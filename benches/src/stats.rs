//! Latency recording (HDR histograms in microseconds) and error counting.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub count: u64,
}

#[derive(Clone)]
pub struct Recorder {
    histogram: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            histogram: Histogram::new_with_bounds(1, 600_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }
}

impl Recorder {
    pub fn record(&mut self, elapsed: Duration) {
        let micros = (elapsed.as_micros() as u64).clamp(1, 600_000_000);
        let _ = self.histogram.record(micros);
    }

    pub fn merge(&mut self, other: &Recorder) {
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn latency(&self) -> Option<Latency> {
        if self.histogram.is_empty() {
            return None;
        }
        let ms = |q: f64| self.histogram.value_at_quantile(q) as f64 / 1000.0;
        Some(Latency {
            p50: ms(0.50),
            p95: ms(0.95),
            p99: ms(0.99),
            max: self.histogram.max() as f64 / 1000.0,
            count: self.histogram.len(),
        })
    }
}

/// Failed requests by status (`"500"`, `"409"`, or `"io"` for transport errors).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Errors(pub BTreeMap<String, u64>);

impl Errors {
    pub fn add(&mut self, status: Option<u16>) {
        let key = status.map(|s| s.to_string()).unwrap_or_else(|| "io".into());
        *self.0.entry(key).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Errors) {
        for (k, v) in &other.0 {
            *self.0.entry(k.clone()).or_default() += v;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}
