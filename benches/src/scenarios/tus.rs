//! `tus`: the same file as a binary upload (the anchor) and as tus uploads: one whole-file PATCH,
//! PATCHes of `chunk` bytes, and `parallel` partial uploads joined by concatenation; each as a ratio of
//! the binary upload measured in the same run. With `--peers`, other tus servers receive the same file
//! through the same client, on the same disk.

use super::Context;
use crate::peers::Peer;
use crate::procwatch::ProcWatch;
use crate::report::ScenarioResult;
use crate::tus::{Mode, TusEndpoint};
use crate::MIB;
use anyhow::{bail, Context as _};
use broker_protocol::client::BrokerClient;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct TusOptions {
    pub size: u64,
    pub chunk: u64,
    /// Partial uploads for the concatenation run (1 skips it).
    pub parallel: usize,
    /// Peer servers to measure beside Broker (see `peers::NAMES`).
    pub peers: Vec<String>,
}

fn modes(o: &TusOptions) -> Vec<(&'static str, Mode)> {
    let mut modes = vec![
        ("whole_patch", Mode::WholePatch),
        ("chunked", Mode::Chunked(o.chunk)),
    ];
    if o.parallel > 1 {
        modes.push(("parallel", Mode::Parallel(o.parallel)));
    }
    modes
}

fn rate(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / MIB / elapsed.as_secs_f64()
}

pub async fn tus(ctx: &Context, o: &TusOptions) -> anyhow::Result<ScenarioResult> {
    let (path, sha256) = crate::payload::ensure_file(&ctx.cache_dir, o.size)?;
    let watch = ctx.target.pid().map(ProcWatch::start);
    let (_, binary) = super::transfer::publish(ctx, &path, o.size, &sha256).await?;
    let binary_rate = rate(o.size, binary);
    let mut result = ScenarioResult {
        scenario: "tus".into(),
        params: [
            ("size".to_string(), json!(o.size)),
            ("chunk".to_string(), json!(o.chunk)),
            ("parallel".to_string(), json!(o.parallel)),
            ("peers".to_string(), json!(o.peers)),
        ]
        .into(),
        ..Default::default()
    };
    result.anchors.insert("binary_upload".into(), binary_rate);
    for (name, mode) in modes(o) {
        eprintln!("tus_{name}: {} bytes to Broker ...", o.size);
        let (answered, published) = broker_upload(ctx, &path, o.size, mode, &sha256).await?;
        // A single upload (no declared checksum) is Published when its last PATCH is answered; a
        // concatenated one is answered first and verified after, so its two figures differ.
        let key = match mode {
            Mode::Parallel(_) => format!("tus_{name}_answered"),
            _ => format!("tus_{name}"),
        };
        let r = rate(o.size, answered);
        result.figures.insert(format!("{key}_mb_per_sec"), r);
        result
            .ratios
            .insert(format!("{key}_to_binary"), r / binary_rate);
        if mode == Mode::WholePatch {
            result.mb_per_sec = Some(r);
        }
        if let Mode::Parallel(_) = mode {
            // Concatenation is verified after the final POST: the whole file is read back and hashed.
            let p = rate(o.size, published);
            result
                .figures
                .insert("tus_parallel_published_mb_per_sec".into(), p);
            result.figures.insert(
                "tus_parallel_verify_seconds".into(),
                (published - answered).as_secs_f64(),
            );
            result
                .ratios
                .insert("tus_parallel_published_to_binary".into(), p / binary_rate);
        }
    }
    let proc = watch.map(ProcWatch::finish);
    result.peak_rss_mib = proc.map(|p| p.peak_rss_mib);
    result.cpu_seconds = proc.map(|p| p.cpu_seconds);
    for name in &o.peers {
        measure_peer(ctx, o, name, &path, binary_rate, &mut result).await?;
    }
    Ok(result)
}

/// One upload to Broker; returns the time until the last request was answered and until the transfer
/// was Published, after checking it stored exactly the file's bytes.
async fn broker_upload(
    ctx: &Context,
    path: &Path,
    size: u64,
    mode: Mode,
    sha256: &str,
) -> anyhow::Result<(Duration, Duration)> {
    crate::payload::warm(path)?;
    let id = ctx.initialize("broker-bench.bin").await?;
    let sender = &ctx.target.sender;
    let upload_url = broker_protocol::tus::TusClient::new(sender)?.upload_url(id);
    let endpoint = TusEndpoint::new(sender, upload_url)?;
    let started = Instant::now();
    let (answered, _) = endpoint.upload(path, size, mode).await?;
    super::published_with(sender, id, sha256).await?;
    let published = started.elapsed();
    Ok((answered, published))
}

/// The same uploads to a peer tus server; figures and ratios are named `peer_<name>_<mode>_…`.
async fn measure_peer(
    ctx: &Context,
    o: &TusOptions,
    name: &str,
    path: &Path,
    binary_rate: f64,
    result: &mut ScenarioResult,
) -> anyhow::Result<()> {
    // The largest PATCH is the whole-file one.
    let peer = Peer::start(name, &ctx.cache_dir, &ctx.disk_dir(), o.size)
        .with_context(|| format!("peer {name}"))?;
    let key = name.replace('-', "_");
    let endpoint = TusEndpoint::new(
        &BrokerClient::new(&peer.creation_url),
        peer.creation_url.clone(),
    )?;
    let watch = ProcWatch::start(peer.pid());
    for (mode_name, mode) in modes(o) {
        if matches!(mode, Mode::Parallel(_)) && !endpoint.offers("concatenation").await? {
            eprintln!("peer {name}: no concatenation extension; the parallel run is skipped");
            continue;
        }
        eprintln!("peer {name}, {mode_name}: {} bytes ...", o.size);
        crate::payload::warm(path)?;
        let (elapsed, url) = endpoint.upload(path, o.size, mode).await?;
        // A peer that dropped bytes would look fast: check what it stored (not possible for a
        // concatenated upload, which a peer may keep as a list of its parts).
        if !matches!(mode, Mode::Parallel(_)) {
            match peer.stored_size(&url) {
                Some(n) if n == o.size => {}
                other => bail!("peer {name} stored {other:?} bytes of {}", o.size),
            }
        }
        let r = rate(o.size, elapsed);
        result
            .figures
            .insert(format!("peer_{key}_{mode_name}_mb_per_sec"), r);
        result
            .ratios
            .insert(format!("peer_{key}_{mode_name}_to_binary"), r / binary_rate);
    }
    let proc = watch.finish();
    result
        .figures
        .insert(format!("peer_{key}_peak_rss_mib"), proc.peak_rss_mib);
    drop(peer);
    Ok(())
}
