//! Other tus servers measured beside Broker (`tus --peers`): @tus/server with @tus/file-store (the
//! Node.js reference server, from npm) and rustus (from crates.io). Each is installed on first use into
//! the cache directory (or `benches/peers/node_modules`), started on 127.0.0.1 with its files on the
//! same disk as Broker's, and stopped when dropped.

use anyhow::{bail, Context as _};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The rustus release the benchmark installs (pinned, so figures compare across runs).
const RUSTUS_VERSION: &str = "0.5.10";

/// The peers by name, as `--peers` takes them.
pub const NAMES: [&str; 2] = ["tus-node", "rustus"];

/// A running peer server.
pub struct Peer {
    pub name: &'static str,
    /// Its tus collection URL (where creation POSTs go).
    pub creation_url: String,
    /// Where it stores uploads.
    pub data_dir: tempfile::TempDir,
    child: Child,
}

impl Peer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the named peer, installing it first if needed; `disk_dir` is where its files go and
    /// `max_body` the largest PATCH it must accept.
    pub fn start(
        name: &str,
        cache_dir: &Path,
        disk_dir: &Path,
        max_body: u64,
    ) -> anyhow::Result<Peer> {
        let data_dir = tempfile::Builder::new()
            .prefix("tus-peer-")
            .tempdir_in(disk_dir)?;
        match name {
            "tus-node" => start_tus_node(data_dir),
            "rustus" => start_rustus(cache_dir, data_dir, max_body),
            other => bail!("unknown peer {other:?}; known: {}", NAMES.join(", ")),
        }
    }

    /// The size of the file the peer stored for the upload at `upload_url` (its last path segment is
    /// the upload id; both peers name the data file by it).
    pub fn stored_size(&self, upload_url: &str) -> Option<u64> {
        let id = upload_url.trim_end_matches('/').rsplit('/').next()?;
        find_file(self.data_dir.path(), id).and_then(|p| std::fs::metadata(p).ok().map(|m| m.len()))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if entry.file_name().to_string_lossy() == name {
            return Some(path);
        }
    }
    None
}

/// The folder with the Node peer's package.json and script.
fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

fn start_tus_node(data_dir: tempfile::TempDir) -> anyhow::Result<Peer> {
    let dir = node_dir();
    if !dir.join("node_modules/@tus/server/package.json").exists() {
        eprintln!("peers: installing @tus/server and @tus/file-store with npm ci ...");
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir)
            .status()
            .context("cannot run npm (Node.js is needed for the tus-node peer)")?;
        if !status.success() {
            bail!("npm ci failed in {}", dir.display());
        }
    }
    let mut child = Command::new("node")
        .arg(dir.join("tus-node-server.mjs"))
        .arg("0")
        .arg(data_dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start node")?;
    let base = read_listening_line(&mut child)?;
    Ok(Peer {
        name: "tus-node",
        creation_url: format!("{base}/files"),
        data_dir,
        child,
    })
}

/// Waits for the `listening on http://…` line a server prints when ready.
fn read_listening_line(child: &mut Child) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next()
        .context("the peer exited before it was ready")??;
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    line.strip_prefix("listening on ")
        .map(|u| u.trim().to_string())
        .with_context(|| format!("unexpected first line from the peer: {line:?}"))
}

fn rustus_bin(cache_dir: &Path) -> PathBuf {
    std::env::var_os("BROKER_BENCH_RUSTUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir.join("rustus/bin/rustus"))
}

fn start_rustus(
    cache_dir: &Path,
    data_dir: tempfile::TempDir,
    max_body: u64,
) -> anyhow::Result<Peer> {
    let bin = rustus_bin(cache_dir);
    if !bin.exists() {
        eprintln!("peers: installing rustus {RUSTUS_VERSION} with cargo install (several minutes, once) ...");
        let status = Command::new("cargo")
            .args(["install", "rustus", "--version", RUSTUS_VERSION, "--root"])
            .arg(cache_dir.join("rustus"))
            .status()
            .context("cannot run cargo install")?;
        if !status.success() || !bin.exists() {
            bail!("cargo install rustus failed");
        }
    }
    let port = free_port()?;
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(data_dir.path())
        .arg("--info-dir")
        .arg(data_dir.path())
        // rustus holds a PATCH body in memory and refuses bodies above this (default 256 KiB).
        .args(["--max-body-size", &max_body.to_string()])
        .args(["--log-level", "ERROR"])
        // Its start-up banner goes to both streams; a failure shows as a refused upload.
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let base = format!("http://127.0.0.1:{port}");
    wait_until_listening(port)?;
    Ok(Peer {
        name: "rustus",
        creation_url: format!("{base}/files"),
        data_dir,
        child,
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_until_listening(port: u16) -> anyhow::Result<()> {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the peer did not listen on port {port} within 10 s")
}
