//! `mixed`: the small-transfer lifecycle load alone, then again while large uploads and downloads run
//! beside it. Reports how much the small transfers' p99 grows, and the large transfers' MiB/s.

use super::Context;
use crate::http::{fetch, upload_file};
use crate::payload::{ensure_file, warm};
use crate::report::ScenarioResult;
use crate::MIB;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub async fn run(
    ctx: Arc<Context>,
    concurrency: usize,
    duration: Duration,
    size: u64,
    large: u64,
) -> anyhow::Result<ScenarioResult> {
    let (path, _) = ensure_file(&ctx.cache_dir, large)?;
    warm(&path)?;
    let alone = super::lifecycle::run_named(
        ctx.clone(),
        "mixed (small alone)",
        concurrency,
        duration,
        size,
    )
    .await?;
    let stop = Arc::new(AtomicBool::new(false));
    let big = {
        let (ctx, stop, path) = (ctx.clone(), stop.clone(), path.clone());
        tokio::spawn(async move {
            let (mut up, mut down, mut rounds) = (0.0, 0.0, 0u32);
            while !stop.load(Ordering::Relaxed) {
                let id = ctx.initialize("large.bin").await?;
                let t = upload_file(&ctx.target.sender, id, &path, large).await?;
                let recipient = &ctx.target.recipient;
                let (_, d) = fetch(
                    |_| {
                        recipient.request(
                            reqwest::Method::GET,
                            &format!("/filetransfer/{id}/download"),
                        )
                    },
                    large,
                    1,
                )
                .await?;
                up += large as f64 / MIB / t.as_secs_f64();
                down += large as f64 / MIB / d.as_secs_f64();
                rounds += 1;
            }
            anyhow::Ok((
                up / rounds.max(1) as f64,
                down / rounds.max(1) as f64,
                rounds,
            ))
        })
    };
    let mut mixed =
        super::lifecycle::run_named(ctx.clone(), "mixed", concurrency, duration, size).await?;
    stop.store(true, Ordering::Relaxed);
    let (up, down, rounds) = big.await??;
    let p99 = |r: &ScenarioResult| r.latency_ms.map(|l| l.p99).unwrap_or(f64::NAN);
    mixed.params.insert("large_size".into(), json!(large));
    mixed.figures.insert("p99_alone_ms".into(), p99(&alone));
    mixed.figures.insert("p99_mixed_ms".into(), p99(&mixed));
    mixed
        .figures
        .insert("p99_growth".into(), p99(&mixed) / p99(&alone));
    mixed.figures.insert(
        "lifecycles_per_sec_alone".into(),
        alone.lifecycles_per_sec.unwrap_or(0.0),
    );
    mixed.figures.insert("large_upload_mb_per_sec".into(), up);
    mixed
        .figures
        .insert("large_download_mb_per_sec".into(), down);
    mixed.figures.insert("large_rounds".into(), rounds as f64);
    mixed.errors += alone.errors;
    for (k, v) in alone.errors_by_status {
        *mixed.errors_by_status.entry(k).or_default() += v;
    }
    mixed.peak_rss_mib = match (mixed.peak_rss_mib, alone.peak_rss_mib) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    Ok(mixed)
}
