//! Sends one large file through a real `broker` process and back, and prints what a user sees:
//! upload and download MB/s, the server's peak RSS, and whether the downloaded bytes are identical
//! (SHA-256). With `--anchors` it also measures, in the same run and on the same machine, the ceilings
//! the broker is judged against: the single-core rate of the MD5 code the broker uses, a sequential
//! write + fsync of the same size, and nginx (sendfile) serving the same file.
//!
//! ```text
//! cargo build --release --bin broker && cargo run --release --example large_file -- --size 4GiB --anchors
//! ```

use anyhow::{bail, Context};
use broker_protocol::client::BrokerClient;
use broker_protocol::resource::ResourceUpdate;
use broker_protocol::transfer::FileTransferInitialize;
use futures::StreamExt;
use sha2::Digest;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const MIB: f64 = 1024.0 * 1024.0;

struct Args {
    size: u64,
    broker_bin: PathBuf,
    anchors: bool,
    work_dir: PathBuf,
}

fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim().to_ascii_lowercase();
    let (num, mult) = if let Some(n) = t.strip_suffix("gib") {
        (n, 1u64 << 30)
    } else if let Some(n) = t.strip_suffix("mib") {
        (n, 1 << 20)
    } else if let Some(n) = t.strip_suffix("kib") {
        (n, 1 << 10)
    } else {
        (t.as_str(), 1)
    };
    Ok(num
        .trim()
        .parse::<u64>()
        .with_context(|| format!("bad size {text:?}"))?
        * mult)
}

fn parse_args() -> anyhow::Result<Args> {
    let exe_dir = std::env::current_exe()?
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut args = Args {
        size: 4 << 30,
        broker_bin: exe_dir.join("broker"),
        anchors: false,
        work_dir: std::env::temp_dir().join("broker-large-file"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--size" => args.size = parse_size(&it.next().context("--size needs a value")?)?,
            "--broker-bin" => args.broker_bin = it.next().context("--broker-bin needs a path")?.into(),
            "--work-dir" => args.work_dir = it.next().context("--work-dir needs a path")?.into(),
            "--anchors" => args.anchors = true,
            other => bail!("unknown argument {other}; use --size N[GiB|MiB] --broker-bin PATH --work-dir DIR --anchors"),
        }
    }
    Ok(args)
}

/// The test file: pseudo-random bytes, generated once and cached; returns its SHA-256.
fn ensure_file(path: &Path, size: u64) -> anyhow::Result<String> {
    let sum_path = path.with_extension("sha256");
    if path.metadata().map(|m| m.len() == size).unwrap_or(false) {
        if let Ok(sum) = std::fs::read_to_string(&sum_path) {
            return Ok(sum.trim().to_string());
        }
    }
    eprintln!(
        "generating {} of random data in {}",
        human(size),
        path.display()
    );
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut sha = sha2::Sha256::new();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        out.write_all(&buf[..n])?;
        sha.update(&buf[..n]);
        left -= n as u64;
    }
    out.flush()?;
    let sum = broker_actors::upload::hex(&sha.finalize());
    std::fs::write(&sum_path, &sum)?;
    Ok(sum)
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / MIB)
    }
}

struct BrokerProcess {
    child: Child,
    url: String,
    data_dir: PathBuf,
    bin: PathBuf,
}

impl BrokerProcess {
    fn start(bin: &Path, data_dir: &Path) -> anyhow::Result<BrokerProcess> {
        let mut child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it with cargo build --release --bin broker)",
                    bin.display()
                )
            })?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .context("unexpected first line from broker")?
            .to_string();
        Ok(BrokerProcess {
            child,
            url,
            data_dir: data_dir.to_path_buf(),
            bin: bin.to_path_buf(),
        })
    }

    fn token(&self, org: &str, scope: &str) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .args(["token", "--org", org, "--scope", scope, "--data-dir"])
            .arg(&self.data_dir)
            .output()?;
        if !out.status.success() {
            bail!(
                "broker token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    /// Peak resident set size (VmHWM) in MiB.
    fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .context("no VmHWM")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kb / 1024.0)
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Single-core MD5 rate (MB/s) of the md-5 code the broker uses.
fn md5_rate() -> f64 {
    use md5::Digest as _;
    let buf = vec![0x5au8; 256 << 20];
    let start = Instant::now();
    let mut h = md5::Md5::new();
    h.update(&buf);
    std::hint::black_box(h.finalize());
    buf.len() as f64 / MIB / start.elapsed().as_secs_f64()
}

/// Sequential write + fsync of `size` bytes in `dir` (MB/s), best of two after a sync.
fn write_fsync_rate(dir: &Path, size: u64) -> anyhow::Result<f64> {
    let buf = vec![0xa5u8; 1 << 20];
    let path = dir.join("anchor-write.bin");
    let mut best: f64 = 0.0;
    for _ in 0..2 {
        unsafe { libc::sync() };
        let start = Instant::now();
        let mut f = std::fs::File::create(&path)?;
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        best = best.max(size as f64 / MIB / start.elapsed().as_secs_f64());
        drop(f);
        std::fs::remove_file(&path)?;
    }
    Ok(best)
}

/// nginx with sendfile serving `file` on loopback: full-download MB/s, or None without nginx.
async fn nginx_rate(
    file: &Path,
    work: &Path,
    http: &reqwest::Client,
) -> anyhow::Result<Option<f64>> {
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let Some(nginx) = nginx else {
        eprintln!(
            "warning: nginx not found (apt-get install nginx-light); skipping the download anchor"
        );
        return Ok(None);
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let root = file.parent().context("file has a parent")?;
    let conf = work.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process off; worker_processes 1; error_log {err} warn; pid {pid};\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; sendfile on; tcp_nopush on; types {{ }} default_type application/octet-stream;\n\
               server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n",
            err = work.join("nginx-error.log").display(),
            pid = work.join("nginx.pid").display(),
            root = root.display(),
        ),
    )?;
    let mut child = Command::new(nginx)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(work)
        .stderr(Stdio::null())
        .spawn()?;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let url = format!(
        "http://127.0.0.1:{port}/{}",
        file.file_name().unwrap().to_string_lossy()
    );
    let mut best: f64 = 0.0;
    for _ in 0..2 {
        let start = Instant::now();
        let mut stream = http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .bytes_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            n += chunk?.len() as u64;
        }
        best = best.max(n as f64 / MIB / start.elapsed().as_secs_f64());
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(Some(best))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.work_dir)?;
    let file = args.work_dir.join(format!("payload-{}.bin", args.size));
    let sha = ensure_file(&file, args.size)?;
    let data_dir = args.work_dir.join("broker-data");
    let _ = std::fs::remove_dir_all(&data_dir);
    let broker = BrokerProcess::start(&args.broker_bin, &data_dir)?;
    let base = BrokerClient::new(&broker.url);
    let owner = base.with_token(broker.token("0192:991825827", "altinn:serviceowner")?);
    let sender = base.with_token(broker.token("0192:111111111", "altinn:broker.write")?);
    let recipient = base.with_token(broker.token("0192:222222222", "altinn:broker.read")?);
    owner.create_service_owner("Bench").await?;
    owner
        .configure_resource("large-file", &ResourceUpdate::default())
        .await?;
    let id = sender
        .initialize(&FileTransferInitialize {
            file_name: Some("large.bin".into()),
            resource_id: Some("large-file".into()),
            senders_file_transfer_reference: Some("large".into()),
            sender: Some("0192:111111111".into()),
            recipients: Some(vec!["0192:222222222".into()]),
            ..Default::default()
        })
        .await?;

    // Upload: the file streams from the page cache in 1 MiB reads.
    {
        let mut warm = std::fs::File::open(&file)?;
        let mut sink = vec![0u8; 1 << 20];
        while warm.read(&mut sink)? > 0 {}
    }
    let body =
        tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::open(&file).await?, 1 << 20);
    let started = Instant::now();
    sender
        .request(reqwest::Method::POST, &format!("/filetransfer/{id}/upload"))
        .header("content-type", "application/octet-stream")
        .header("content-length", args.size)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await?
        .error_for_status()?;
    let upload_secs = started.elapsed().as_secs_f64();
    let upload_rate = args.size as f64 / MIB / upload_secs;
    println!(
        "file                  {} ({} bytes)",
        human(args.size),
        args.size
    );
    println!("upload                {upload_rate:8.1} MiB/s  ({upload_secs:.2} s, MD5 + SHA-256 + fsync, 200 after Published)");
    let overview = recipient.overview(id).await?;
    let stored_sha = overview.summary.sha256.clone().unwrap_or_default();
    let rss_after_upload = broker.peak_rss_mib()?;

    // Download: timed without client-side work (as the nginx anchor), then once more to verify.
    let started = Instant::now();
    let mut stream = recipient.download(id, None).await?.bytes_stream();
    let mut received = 0u64;
    while let Some(chunk) = stream.next().await {
        received += chunk?.len() as u64;
    }
    let download_secs = started.elapsed().as_secs_f64();
    let download_rate = received as f64 / MIB / download_secs;
    let mut stream = recipient.download(id, None).await?.bytes_stream();
    let mut hasher = sha2::Sha256::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk?);
    }
    let downloaded_sha = broker_actors::upload::hex(&hasher.finalize());
    let peak_rss = broker.peak_rss_mib()?;

    println!("download              {download_rate:8.1} MiB/s  ({download_secs:.2} s, the client only counts bytes)");
    println!("server peak RSS       {peak_rss:8.1} MiB  (after upload: {rss_after_upload:.1} MiB)");
    println!("sha256 sent           {sha}");
    println!("sha256 stored         {stored_sha}");
    println!("sha256 downloaded     {downloaded_sha}");
    let identical = sha == stored_sha && sha == downloaded_sha && received == args.size;
    println!(
        "identical             {}",
        if identical { "yes" } else { "NO" }
    );
    drop(broker);

    if args.anchors {
        let md5 = md5_rate();
        let write = write_fsync_rate(&args.work_dir, args.size)?;
        let ceiling = md5.min(write);
        println!("anchor md5 (1 core)   {md5:8.1} MiB/s");
        println!("anchor write+fsync    {write:8.1} MiB/s");
        println!(
            "upload / min(md5, write+fsync) = {:.2}  (target >= 0.75)",
            upload_rate / ceiling
        );
        let http = reqwest::Client::new();
        if let Some(nginx) = nginx_rate(&file, &args.work_dir, &http).await? {
            println!("anchor nginx sendfile {nginx:8.1} MiB/s  (same client, no hashing)");
            println!(
                "download / nginx = {:.2}  (target >= 0.60)",
                download_rate / nginx
            );
        }
    }
    if !identical {
        bail!("the downloaded file differs from the one sent");
    }
    Ok(())
}
