//! The malware scan of a stored file (spec 1.3, 4.5, 7.1). A transfer whose file is stored for scanning
//! gets a durable `Scan` job in the same transaction; the job runtime hands it here and goes on with
//! other jobs. A scan waits for one of a fixed number of permits, reads the file through the blob port
//! (in overlapping windows when it is larger than the scanner's stream limit), and gives the verdict
//! to the transfer's supervisor. While it runs it keeps renewing its lease, so a long scan is never
//! taken over; a scanner that cannot be reached is retried with backoff, and the file stays
//! UploadProcessing: never published unscanned, never failed for want of a scanner.

use std::sync::atomic::AtomicUsize;

mod runner;

/// How stored files are scanned for malware.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// The most bytes one scan sends: the scanner's stream limit (clamd's StreamMaxLength).
    pub window_bytes: u64,
    /// How far consecutive windows of a larger file overlap, so a signature across a boundary is whole
    /// in one of them.
    pub overlap_bytes: u64,
    /// Scans running at once (each holds a scanner connection and reads a file).
    pub max_concurrent: usize,
    /// Whether a file larger than one window is scanned in overlapping windows or refused.
    pub large_files: LargeFiles,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LargeFiles {
    Windows,
    /// 400 `BRO-09012` where the length is declared; a body that grows past the window is cut off.
    Refuse,
}

impl Default for ScanSettings {
    fn default() -> Self {
        ScanSettings {
            window_bytes: 100 << 20,
            overlap_bytes: 1 << 20,
            max_concurrent: 4,
            large_files: LargeFiles::Windows,
        }
    }
}

/// The permits scans share, and how many scans are running or waiting (for tests and metrics).
pub(crate) struct ScanRunner {
    pub(super) permits: tokio::sync::Semaphore,
    pub(super) active: AtomicUsize,
    pub(super) idle: tokio::sync::Notify,
}

/// The lease name of a transfer's scan claim, held while its file is read (tus part names are hex
/// UUIDs, so it never collides with a part's).
pub(crate) const SCAN_CLAIM: &str = "scan";

impl ScanRunner {
    pub(crate) fn new(max_concurrent: usize) -> ScanRunner {
        ScanRunner {
            permits: tokio::sync::Semaphore::new(max_concurrent.max(1)),
            active: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        }
    }
}

/// The byte ranges one file is scanned in: the whole file when it fits one window, else windows of
/// `window_bytes` that each start `window_bytes - overlap_bytes` after the last, the last one ending at
/// the end of the file.
pub fn windows(size: u64, settings: &ScanSettings) -> Vec<(u64, u64)> {
    let window = settings.window_bytes.max(1);
    if size <= window {
        return vec![(0, size)];
    }
    let step = window.saturating_sub(settings.overlap_bytes).max(1);
    let mut ranges = Vec::new();
    let mut start = 0;
    loop {
        let len = window.min(size - start);
        ranges.push((start, len));
        if start + len >= size {
            return ranges;
        }
        start += step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(window: u64, overlap: u64) -> ScanSettings {
        ScanSettings {
            window_bytes: window,
            overlap_bytes: overlap,
            ..Default::default()
        }
    }

    #[test]
    fn a_file_within_one_window_is_scanned_whole() {
        assert_eq!(windows(100, &settings(100, 10)), vec![(0, 100)]);
        assert_eq!(windows(0, &settings(100, 10)), vec![(0, 0)]);
    }

    #[test]
    fn a_larger_file_is_covered_by_overlapping_windows_ending_at_its_end() {
        let w = windows(250, &settings(100, 10));
        assert_eq!(w, vec![(0, 100), (90, 100), (180, 70)]);
        for pair in w.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            assert_eq!(a.0 + a.1 - b.0, 10, "consecutive windows overlap");
        }
    }

    #[test]
    fn any_run_of_bytes_up_to_the_overlap_lies_whole_in_one_window() {
        let s = settings(64, 16);
        for size in [65u64, 100, 128, 300] {
            let w = windows(size, &s);
            for start in 0..size.saturating_sub(16) {
                let end = start + 16;
                assert!(
                    w.iter().any(|&(a, len)| a <= start && end <= a + len),
                    "bytes {start}..{end} of {size}"
                );
            }
        }
    }
}
