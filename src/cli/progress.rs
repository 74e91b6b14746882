//! Progress on stderr: an indicatif bar on a terminal, otherwise a plain line at most once a second
//! (`progress: DONE/TOTAL bytes (P%), RATE`), which logs and tests can read.

use broker_protocol::size::human;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Progress {
    moved: Arc<AtomicU64>,
    ticker: tokio::task::JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts reporting a transfer of `total` bytes of which `already` were there before this run.
    pub fn start(total: u64, already: u64) -> Progress {
        let moved = Arc::new(AtomicU64::new(0));
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("a valid progress template"),
            );
            bar.set_position(already);
            bar.reset_eta();
            let ticker = {
                let (bar, moved) = (bar.clone(), moved.clone());
                tokio::spawn(async move {
                    loop {
                        bar.set_position((already + moved.load(Ordering::Relaxed)).min(total));
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            };
            return Progress {
                moved,
                ticker,
                bar: Some(bar),
            };
        }
        let ticker = {
            let moved = moved.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let this_run = moved.load(Ordering::Relaxed);
                    let done = (already + this_run).min(total);
                    let percent = (done * 100).checked_div(total).unwrap_or(100);
                    let rate = this_run as f64 / started.elapsed().as_secs_f64().max(0.001);
                    eprintln!(
                        "progress: {done}/{total} bytes ({percent}%), {}/s",
                        human(rate as u64)
                    );
                }
            })
        };
        Progress {
            moved,
            ticker,
            bar: None,
        }
    }

    /// The counter the streams add their bytes to.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.moved.clone()
    }

    /// As a tus progress callback.
    pub fn callback(&self) -> broker_protocol::tus::ProgressFn {
        let moved = self.moved.clone();
        // Taking bytes back is adding their two's complement (the sum never goes below zero).
        Arc::new(move |n: i64| {
            moved.fetch_add(n as u64, Ordering::Relaxed);
        })
    }
}

impl Drop for Progress {
    /// Stops reporting and clears the bar, so a final message (or error) stands on its own line.
    fn drop(&mut self) {
        self.ticker.abort();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
