//! The `[scan]` section: malware scanning of every upload between its last byte and its publication.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanKind {
    /// No scanner: transfers say `useVirusScan: false` and are published unscanned.
    None,
    /// A ClamAV daemon at `scan.address`.
    Clamd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LargeFileScan {
    /// Files larger than one window are scanned in overlapping windows.
    Windows,
    /// Files larger than one window are refused (400 `BRO-09012`).
    Refuse,
}

/// Malware scanning of every upload between its last byte and its publication.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    pub kind: ScanKind,
    /// `tcp:HOST:PORT` or `unix:PATH`.
    pub address: Option<String>,
    /// The longest one scan (one window) may take.
    pub timeout_secs: u64,
    /// Scans running at once.
    pub max_concurrent: usize,
    /// The most bytes one scan sends: at most clamd's StreamMaxLength (100 MiB by default).
    pub window_bytes: u64,
    /// How much consecutive windows of a larger file overlap (more than the longest signature).
    pub overlap_bytes: u64,
    pub large_files: LargeFileScan,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            kind: ScanKind::None,
            address: None,
            timeout_secs: 300,
            max_concurrent: 4,
            window_bytes: 100 << 20,
            overlap_bytes: 1 << 20,
            large_files: LargeFileScan::Windows,
        }
    }
}
