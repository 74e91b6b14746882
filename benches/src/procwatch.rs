//! Samples a process's CPU time and peak RSS from /proc while a scenario runs (Linux only).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct ProcWatch {
    pid: u32,
    stop: Arc<AtomicBool>,
    max_rss_kib: Arc<AtomicU64>,
    cpu_start: Option<f64>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Clone, Copy)]
pub struct ProcFigures {
    pub peak_rss_mib: f64,
    pub cpu_seconds: f64,
}

fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// utime + stime of the process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

impl ProcWatch {
    /// Starts watching; the kernel's peak-RSS mark is reset so the figure belongs to this scenario.
    pub fn start(pid: u32) -> ProcWatch {
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
        let stop = Arc::new(AtomicBool::new(false));
        let max_rss_kib = Arc::new(AtomicU64::new(status_kib(pid, "VmRSS:").unwrap_or(0)));
        let sampler = {
            let (stop, max) = (stop.clone(), max_rss_kib.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(rss) = status_kib(pid, "VmRSS:") {
                        max.fetch_max(rss, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        ProcWatch {
            pid,
            stop,
            max_rss_kib,
            cpu_start: cpu_seconds(pid),
            sampler: Some(sampler),
        }
    }

    pub fn finish(mut self) -> ProcFigures {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.sampler.take() {
            let _ = s.join();
        }
        let sampled = self.max_rss_kib.load(Ordering::Relaxed);
        let hwm = status_kib(self.pid, "VmHWM:").unwrap_or(0);
        ProcFigures {
            peak_rss_mib: sampled.max(hwm) as f64 / 1024.0,
            cpu_seconds: match (self.cpu_start, cpu_seconds(self.pid)) {
                (Some(a), Some(b)) => b - a,
                _ => 0.0,
            },
        }
    }
}
