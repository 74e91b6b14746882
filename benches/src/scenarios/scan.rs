//! `scan`: one file uploaded to a broker that scans with clamd. The upload is answered when its last
//! byte is stored (UploadProcessing); the time from that answer to Published is the scan, as MiB/s,
//! beside `clamdscan --stream` sending the same file to the same clamd.

use super::Context;
use crate::clamd::Clamd;
use crate::http::upload_file;
use crate::payload::{ensure_file, warm};
use crate::procwatch::ProcWatch;
use crate::report::ScenarioResult;
use crate::MIB;
use anyhow::bail;
use broker_protocol::FileTransferStatus;
use serde_json::json;
use std::time::{Duration, Instant};

/// The stream limit clamd is given: room for the whole file in one stream (the anchor sends it so).
pub fn stream_limit(size: u64) -> u64 {
    (size + (1 << 20)).max(1100 << 20)
}

/// The broker's settings for scanning with `clamd` in windows of `window` bytes.
pub fn broker_env(clamd: &Clamd, window: u64) -> Vec<(String, String)> {
    [
        ("BROKER__SCAN__KIND", "clamd".to_string()),
        (
            "BROKER__SCAN__ADDRESS",
            format!("tcp:127.0.0.1:{}", clamd.port),
        ),
        ("BROKER__SCAN__WINDOW_BYTES", window.to_string()),
        // The broker's default overlap (1 MiB), or less for small windows.
        (
            "BROKER__SCAN__OVERLAP_BYTES",
            (window / 16).min(1 << 20).to_string(),
        ),
        ("BROKER__SCAN__TIMEOUT_SECS", "3600".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

pub async fn run(
    ctx: &Context,
    clamd: &Clamd,
    size: u64,
    window: u64,
) -> anyhow::Result<ScenarioResult> {
    let (path, sha256) = ensure_file(&ctx.cache_dir, size)?;
    warm(&path)?;
    let sender = &ctx.target.sender;
    let id = ctx.initialize("broker-bench-scan.bin").await?;
    eprintln!("scan: {size} bytes as one binary upload to a broker scanning with clamd ...");
    let watch = ctx.target.pid().map(ProcWatch::start);
    let upload = upload_file(sender, id, &path, size).await?;
    let answered = Instant::now();
    let overview = loop {
        let overview = sender.overview(id).await?;
        match overview.summary.file_transfer_status {
            FileTransferStatus::UploadProcessing => {}
            FileTransferStatus::Published => break overview,
            other => bail!(
                "the transfer ended {other}: {}",
                overview.summary.file_transfer_status_text
            ),
        }
        if answered.elapsed() > Duration::from_secs(3600) {
            bail!("no verdict within an hour");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let scan = answered.elapsed();
    let proc = watch.map(ProcWatch::finish);
    if !overview.summary.use_virus_scan || overview.summary.sha256.as_deref() != Some(&sha256) {
        bail!("the broker did not scan the file it was sent: {overview:?}");
    }
    let rate = size as f64 / MIB / scan.as_secs_f64();
    eprintln!(
        "scan: uploaded in {:.2} s, published {:.2} s after the last byte ({rate:.0} MiB/s)",
        upload.as_secs_f64(),
        scan.as_secs_f64()
    );
    let mut result = ScenarioResult {
        scenario: "scan".into(),
        params: [
            ("size".to_string(), json!(size)),
            ("window_bytes".to_string(), json!(window)),
        ]
        .into(),
        mb_per_sec: Some(rate),
        peak_rss_mib: proc.map(|p| p.peak_rss_mib),
        cpu_seconds: proc.map(|p| p.cpu_seconds),
        ..Default::default()
    };
    result
        .figures
        .insert("seconds_last_byte_to_published".into(), scan.as_secs_f64());
    result.figures.insert(
        "upload_mb_per_sec".into(),
        size as f64 / MIB / upload.as_secs_f64(),
    );
    if ctx.anchors {
        warm(&path)?;
        let took = clamd.clamdscan(&path)?;
        let anchor = size as f64 / MIB / took.as_secs_f64();
        eprintln!(
            "scan: clamdscan --stream took {:.2} s ({anchor:.0} MiB/s)",
            took.as_secs_f64()
        );
        result.anchors.insert("clamdscan_stream".into(), anchor);
        result
            .ratios
            .insert("scan_to_clamdscan".into(), rate / anchor);
    }
    Ok(result)
}
