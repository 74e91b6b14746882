//! `resume`: a large tus upload whose broker is SIGKILLed part-way (at `stop_at` bytes sent), then
//! started again on the same data dir: the time from the restart to the first acknowledged PATCH,
//! beside the time MD5 of the durable prefix takes in the same run (what a broker that re-reads its
//! stored prefix to rebuild the hashes would spend at least). The upload is then finished and its
//! stored SHA-256 checked against the file.

use crate::report::ScenarioResult;
use crate::target::{Target, TargetSpec};
use crate::MIB;
use anyhow::{bail, Context as _};
use broker_protocol::tus::TusClient;
use serde_json::json;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct ResumeOptions {
    pub size: u64,
    /// The broker is killed once the client has sent this many bytes.
    pub stop_at: u64,
    /// The size of the PATCH sent first after the restart (and of the ones that finish the upload).
    pub chunk: u64,
}

/// Milliseconds MD5 takes over the first `len` bytes of `path` (read as the broker would read them).
fn md5_of_prefix_ms(path: &Path, len: u64) -> anyhow::Result<f64> {
    use md5::Digest;
    let mut file = std::fs::File::open(path)?.take(len);
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    let mut md5 = md5::Md5::new();
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
    }
    std::hint::black_box(md5.finalize());
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

pub async fn run(
    spec: &TargetSpec,
    resource: &str,
    cache_dir: &Path,
    o: &ResumeOptions,
) -> anyhow::Result<ScenarioResult> {
    anyhow::ensure!(o.stop_at < o.size, "--stop-at must be below --size");
    let (path, sha256) = crate::payload::ensure_file(cache_dir, o.size)?;
    let mut target = Target::start(spec, resource).await?;
    let id = target
        .sender
        .initialize(&super::initialize_body(
            &target.resource,
            "broker-bench.bin",
        ))
        .await?;
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let client = TusClient::new(&target.sender)?.with_progress(Arc::new(move |n| {
        counter.fetch_add(n.max(0) as u64, Ordering::Relaxed);
    }));
    let url = client.create(&client.upload_url(id), o.size, false).await?;
    crate::payload::warm(&path)?;
    eprintln!(
        "resume: {} bytes in one PATCH, the broker SIGKILLed at {} ...",
        o.size, o.stop_at
    );
    let upload = {
        let (client, url, path, size) = (client.clone(), url.clone(), path.clone(), o.size);
        tokio::spawn(async move { client.upload_range(&url, &path, 0, size, 0, size).await })
    };
    while sent.load(Ordering::Relaxed) < o.stop_at {
        if upload.is_finished() {
            bail!("the upload ended before {} bytes were sent", o.stop_at);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    upload.abort();
    let restart = target.kill_and_restart().await?;
    let listening = Instant::now();
    // The restarted broker's RSS and CPU while it resumes and finishes the upload.
    let watch = target.pid().map(crate::procwatch::ProcWatch::start);
    let client = TusClient::new(&target.sender)?;
    let head_started = Instant::now();
    let offset = client
        .offset(&url)
        .await
        .context("HEAD after the restart")?
        .offset;
    let head = head_started.elapsed();
    anyhow::ensure!(
        offset > 0,
        "nothing was durable at the kill: raise --stop-at (a long PATCH is made durable every 64 MiB)"
    );
    let patch_started = Instant::now();
    let first = o.chunk.min(o.size - offset);
    client
        .upload_range(&url, &path, 0, offset + first, offset, first)
        .await
        .context("the first PATCH after the restart")?;
    let first_patch = patch_started.elapsed();
    let to_first_patch = restart + listening.elapsed();
    let md5_ms = md5_of_prefix_ms(&path, offset)?;
    client
        .upload_range(&url, &path, 0, o.size, offset + first, o.chunk)
        .await
        .context("finishing the upload")?;
    super::published_with(&target.sender, id, &sha256).await?;
    let proc = watch.map(crate::procwatch::ProcWatch::finish);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "resume: durable at the kill {:.0} MiB; listening again in {:.0} ms, HEAD {:.1} ms, first PATCH ({} MiB) {:.1} ms: restart to first acknowledged PATCH {:.0} ms; MD5 of the durable prefix {:.0} ms",
        offset as f64 / MIB,
        ms(restart),
        ms(head),
        first >> 20,
        ms(first_patch),
        ms(to_first_patch),
        md5_ms
    );
    let mut result = ScenarioResult {
        scenario: "resume".into(),
        params: [
            ("size".to_string(), json!(o.size)),
            ("stop_at".to_string(), json!(o.stop_at)),
            ("chunk".to_string(), json!(o.chunk)),
        ]
        .into(),
        peak_rss_mib: proc.map(|p| p.peak_rss_mib),
        cpu_seconds: proc.map(|p| p.cpu_seconds),
        ..Default::default()
    };
    let figures = [
        ("durable_at_kill_mib", offset as f64 / MIB),
        ("restart_to_listening_ms", ms(restart)),
        ("head_ms", ms(head)),
        ("first_patch_ms", ms(first_patch)),
        ("restart_to_first_patch_ms", ms(to_first_patch)),
    ];
    for (name, value) in figures {
        result.figures.insert(name.into(), value);
    }
    result
        .anchors
        .insert("md5_of_durable_prefix_ms".into(), md5_ms);
    result.ratios.insert(
        "restart_to_first_patch_to_md5_of_prefix".into(),
        ms(to_first_patch) / md5_ms,
    );
    Ok(result)
}
