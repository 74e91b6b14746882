//! Same-run anchors: the ceilings and peers each Broker figure is judged against. A missing anchor
//! program is skipped with a warning, never an error.

use crate::MIB;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Single-core MB/s (MiB/s) of the md-5 code the broker uses.
pub fn md5_rate() -> f64 {
    use md5::Digest;
    hash_rate(|buf| {
        let mut h = md5::Md5::new();
        h.update(buf);
        std::hint::black_box(h.finalize());
    })
}

/// Single-core MiB/s of the sha2 code the broker uses (SHA-NI when the CPU has it).
pub fn sha256_rate() -> f64 {
    use sha2::Digest;
    hash_rate(|buf| {
        let mut h = sha2::Sha256::new();
        h.update(buf);
        std::hint::black_box(h.finalize());
    })
}

fn hash_rate(hash: impl Fn(&[u8])) -> f64 {
    let buf = vec![0x5au8; 256 << 20];
    hash(&buf[..1 << 20]);
    let started = Instant::now();
    hash(&buf);
    buf.len() as f64 / MIB / started.elapsed().as_secs_f64()
}

/// Sequential write + fsync of `size` bytes in `dir` (MiB/s): best of two, each after a sync.
pub fn write_fsync_rate(dir: &Path, size: u64) -> std::io::Result<f64> {
    let buf = vec![0xa5u8; 1 << 20];
    let path = dir.join("anchor-write.bin");
    let mut best: f64 = 0.0;
    for _ in 0..2 {
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
        let started = Instant::now();
        let mut f = std::fs::File::create(&path)?;
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            f.write_all(&buf[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
        best = best.max(size as f64 / MIB / started.elapsed().as_secs_f64());
        drop(f);
        std::fs::remove_file(&path)?;
    }
    Ok(best)
}

/// nginx (Debian's nginx-light) with sendfile, serving one directory on loopback.
pub struct Nginx {
    child: Child,
    pub port: u16,
    _work: tempfile::TempDir,
}

/// Where nginx is installed, if it is.
pub fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Nginx {
    /// Starts nginx serving `root`, or returns None (with a warning) when nginx is not installed.
    pub async fn start(root: &Path) -> Option<Nginx> {
        let Some(binary) = nginx_binary() else {
            eprintln!(
                "warning: nginx not found (apt-get install nginx-light); skipping the nginx anchor"
            );
            return None;
        };
        let work = tempfile::tempdir().ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let conf = work.path().join("nginx.conf");
        let text = format!(
            "daemon off; master_process off; worker_processes 1; error_log {dir}/error.log warn; pid {dir}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{ access_log off; sendfile on; tcp_nopush on; types {{ }} default_type application/octet-stream;\n\
               client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir}; uwsgi_temp_path {dir}; scgi_temp_path {dir};\n\
               server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n",
            dir = work.path().display(),
            root = root.display(),
        );
        std::fs::write(&conf, text).ok()?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(work.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let nginx = Nginx {
            child,
            port,
            _work: work,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(nginx);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!("warning: nginx did not start; skipping the nginx anchor");
        None
    }

    pub fn url(&self, file_name: &str) -> String {
        format!("http://127.0.0.1:{}/{file_name}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests/s of `wrk` (two threads, `connections` connections) getting `url` for `duration`: the
/// rate this machine serves the smallest request at, beside the broker's. None (with a warning) when
/// wrk is not installed or its output has no rate.
pub fn wrk_rate(url: &str, connections: usize, duration: Duration) -> Option<f64> {
    let output = Command::new("wrk")
        .args(["-t2", &format!("-c{connections}")])
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg(url)
        .output();
    let output = match output {
        Ok(o) if o.status.success() => o,
        _ => {
            eprintln!(
                "warning: wrk not found or failed (apt-get install wrk); skipping the wrk anchor"
            );
            return None;
        }
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
}
