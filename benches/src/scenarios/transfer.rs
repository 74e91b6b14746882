//! `upload`: one large file as a binary upload. `download`: the same file downloaded whole and as N
//! parallel Range requests, beside nginx serving the same file with the same client.

use super::Context;
use crate::anchors::{md5_rate, sha256_rate, write_fsync_rate, Nginx};
use crate::http::{download_sha256, fetch, upload_file};
use crate::payload::{ensure_file, warm};
use crate::procwatch::ProcWatch;
use crate::report::ScenarioResult;
use crate::MIB;
use anyhow::{bail, Context as _};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use uuid::Uuid;

fn mib_per_sec(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / MIB / elapsed.as_secs_f64()
}

/// Uploads the cached file and checks the broker stored exactly those bytes.
pub(crate) async fn publish(
    ctx: &Context,
    path: &Path,
    size: u64,
    sha256: &str,
) -> anyhow::Result<(Uuid, Duration)> {
    warm(path)?;
    let id = ctx.initialize("broker-bench.bin").await?;
    let elapsed = upload_file(&ctx.target.sender, id, path, size).await?;
    let overview = ctx.target.recipient.overview(id).await?;
    if overview.summary.sha256.as_deref() != Some(sha256) {
        bail!(
            "the broker stored different bytes: sha256 {:?}, expected {sha256}",
            overview.summary.sha256
        );
    }
    eprintln!("upload: the broker stored SHA-256 {sha256}, equal to the file's");
    Ok((id, elapsed))
}

pub async fn upload(ctx: &Context, size: u64) -> anyhow::Result<ScenarioResult> {
    let (path, sha256) = ensure_file(&ctx.cache_dir, size)?;
    eprintln!("upload: {size} bytes as one binary request ...");
    let watch = ctx.target.pid().map(ProcWatch::start);
    let (_, elapsed) = publish(ctx, &path, size, &sha256).await?;
    let proc = watch.map(ProcWatch::finish);
    let rate = mib_per_sec(size, elapsed);
    let mut result = ScenarioResult {
        scenario: "upload".into(),
        params: [("size".to_string(), json!(size))].into(),
        mb_per_sec: Some(rate),
        peak_rss_mib: proc.map(|p| p.peak_rss_mib),
        cpu_seconds: proc.map(|p| p.cpu_seconds),
        ..Default::default()
    };
    result
        .figures
        .insert("seconds_to_published".into(), elapsed.as_secs_f64());
    if ctx.anchors {
        let md5 = md5_rate();
        let sha = sha256_rate();
        let write = write_fsync_rate(&ctx.disk_dir(), size).context("write anchor")?;
        result.anchors.insert("md5_single_core".into(), md5);
        result.anchors.insert("sha256_single_core".into(), sha);
        result.anchors.insert("write_fsync".into(), write);
        result
            .ratios
            .insert("upload_to_ceiling".into(), rate / md5.min(write));
        result.ratios.insert("upload_to_md5".into(), rate / md5);
        result
            .ratios
            .insert("upload_to_write_fsync".into(), rate / write);
    }
    Ok(result)
}

pub async fn download(ctx: &Context, size: u64, parallel: usize) -> anyhow::Result<ScenarioResult> {
    let (path, sha256) = ensure_file(&ctx.cache_dir, size)?;
    let (id, _) = publish(ctx, &path, size, &sha256).await?;
    let recipient = &ctx.target.recipient;
    let broker_request = |_range: Option<(u64, u64)>| {
        recipient.request(
            reqwest::Method::GET,
            &format!("/filetransfer/{id}/download"),
        )
    };
    eprintln!(
        "download: {size} bytes whole (first, then again), then as {parallel} parallel ranges ..."
    );
    let watch = ctx.target.pid().map(ProcWatch::start);
    // The first download may come from the disk (a large upload is not kept in the page cache); the
    // measured ones then compare with nginx serving a file that is in the page cache too.
    let (first_bytes, first_time) = fetch(broker_request, size, 1).await?;
    let (full_bytes, full_time) = fetch(broker_request, size, 1).await?;
    let (parallel_bytes, parallel_time) = fetch(broker_request, size, parallel).await?;
    let proc = watch.map(ProcWatch::finish);
    if first_bytes != size || full_bytes != size || parallel_bytes != size {
        bail!("short download: {first_bytes}, {full_bytes} and {parallel_bytes} of {size} bytes");
    }
    // Timed passes only count bytes; one more pass checks they are the bytes that were sent.
    let downloaded = download_sha256(recipient, id).await?;
    if downloaded != sha256 {
        bail!("the downloaded bytes differ: sha256 {downloaded}, sent {sha256}");
    }
    eprintln!("download: the SHA-256 of the downloaded bytes equals the file's ({sha256})");
    let full = mib_per_sec(size, full_time);
    let par = mib_per_sec(size, parallel_time);
    let mut result = ScenarioResult {
        scenario: "download".into(),
        params: [
            ("size".to_string(), json!(size)),
            ("parallel".to_string(), json!(parallel)),
        ]
        .into(),
        mb_per_sec: Some(full),
        peak_rss_mib: proc.map(|p| p.peak_rss_mib),
        cpu_seconds: proc.map(|p| p.cpu_seconds),
        ..Default::default()
    };
    result.figures.insert("parallel_mb_per_sec".into(), par);
    result.figures.insert(
        "first_download_mb_per_sec".into(),
        mib_per_sec(size, first_time),
    );
    if ctx.anchors {
        let root = path.parent().expect("the payload lives in a directory");
        if let Some(nginx) = Nginx::start(root).await {
            let url = nginx.url(
                &path
                    .file_name()
                    .expect("payload file name")
                    .to_string_lossy(),
            );
            let http = recipient.http();
            let nginx_request = |_range: Option<(u64, u64)>| http.get(&url);
            let (_, t) = fetch(nginx_request, size, 1).await?;
            let nginx_full = mib_per_sec(size, t);
            let (_, t) = fetch(nginx_request, size, parallel).await?;
            let nginx_parallel = mib_per_sec(size, t);
            result.anchors.insert("nginx_sendfile".into(), nginx_full);
            result
                .anchors
                .insert("nginx_sendfile_parallel".into(), nginx_parallel);
            result
                .ratios
                .insert("download_to_nginx".into(), full / nginx_full);
            result
                .ratios
                .insert("parallel_to_nginx_parallel".into(), par / nginx_parallel);
            result
                .ratios
                .insert("parallel_to_nginx_single".into(), par / nginx_full);
        }
    }
    Ok(result)
}
