//! A token bucket shared by every stream of one transfer, so `--limit-rate` caps their sum.

use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

pub struct RateLimiter {
    bytes_per_sec: f64,
    /// The most a quiet period may save up: a tenth of a second's worth (at least 64 KiB), so a
    /// pause is not followed by a long burst above the limit.
    burst: f64,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    /// A limiter letting `bytes_per_sec` through (at least 1).
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        let rate = bytes_per_sec.max(1) as f64;
        RateLimiter {
            bytes_per_sec: rate,
            burst: (rate / 10.0).max(64.0 * 1024.0),
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                updated: Instant::now(),
            }),
        }
    }

    /// Waits until `bytes` may pass. The lock is held while waiting, so streams take turns in order
    /// and their sum stays at the rate.
    pub async fn acquire(&self, bytes: u64) {
        let mut bucket = self.bucket.lock().await;
        let now = Instant::now();
        let saved = now.duration_since(bucket.updated).as_secs_f64() * self.bytes_per_sec;
        bucket.tokens = (bucket.tokens + saved).min(self.burst) - bytes as f64;
        bucket.updated = now;
        if bucket.tokens < 0.0 {
            // The debt is paid by waiting; the next caller's refill counts this wait.
            tokio::time::sleep(Duration::from_secs_f64(-bucket.tokens / self.bytes_per_sec)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sum_of_all_callers_stays_at_the_rate() {
        let limiter = std::sync::Arc::new(RateLimiter::new(1_000_000));
        let started = Instant::now();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    for _ in 0..5 {
                        limiter.acquire(15_000).await;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 300 kB at 1 MB/s: at least about 0.3 s (less would break the cap). A busy machine may take
        // longer; the upper bound only catches a limiter that stalls.
        let elapsed = started.elapsed().as_secs_f64();
        assert!((0.27..5.0).contains(&elapsed), "took {elapsed}s");
    }
}
