//! A ClamAV daemon of the benchmark's own, on a free loopback port with the project's test signature
//! database (nothing is downloaded), and `clamdscan --stream` against it as the scan anchor. Its cache
//! of clean files is off: with it, whichever scan of the file came second would only be hashed.

use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The EICAR body signature the tests use (`tests/fixtures/clamav`).
const SIGNATURES: &str = include_str!("../../tests/fixtures/clamav/broker-test.ndb");

pub struct Clamd {
    child: Child,
    pub port: u16,
    conf: std::path::PathBuf,
    _work: tempfile::TempDir,
}

impl Clamd {
    /// Starts clamd on a free port, accepting streams of up to `stream_max_bytes`.
    pub fn start(stream_max_bytes: u64) -> anyhow::Result<Clamd> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Clamd::start_on(port, stream_max_bytes)
    }

    /// Starts clamd on `port` (where a stopped one listened, to be found again).
    pub fn start_on(port: u16, stream_max_bytes: u64) -> anyhow::Result<Clamd> {
        let binary = ["/usr/sbin/clamd", "clamd"]
            .into_iter()
            .find(|b| Command::new(b).arg("--version").output().is_ok())
            .context("clamd is not installed (apt-get install clamav-daemon)")?;
        let work = tempfile::tempdir()?;
        let db = work.path().join("db");
        std::fs::create_dir(&db)?;
        std::fs::write(db.join("broker-test.ndb"), SIGNATURES)?;
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "User root\n"
        } else {
            ""
        };
        let conf = work.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "DatabaseDirectory {}\nTemporaryDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\n\
                 Foreground yes\nStreamMaxLength {}M\nMaxScanSize 4000M\nMaxFileSize 4000M\n\
                 DisableCache yes\n{user}",
                db.display(),
                work.path().display(),
                stream_max_bytes.div_ceil(1 << 20)
            ),
        )?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let clamd = Clamd {
            child,
            port,
            conf,
            _work: work,
        };
        clamd.wait_ready()?;
        Ok(clamd)
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let mut answer = [0u8; 8];
                if s.write_all(b"zPING\0").is_ok() && s.read(&mut answer).is_ok_and(|n| n >= 4) {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("clamd did not start on port {}", self.port)
    }

    /// `clamdscan --stream` of `path` against this clamd: the seconds it took (it must find it clean).
    pub fn clamdscan(&self, path: &Path) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let out = Command::new("clamdscan")
            .arg("--stream")
            .arg("--no-summary")
            .arg(format!("--config-file={}", self.conf.display()))
            .arg(path)
            .output()
            .context("clamdscan is not installed (apt-get install clamdscan)")?;
        let took = started.elapsed();
        let said = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !said.contains("OK") {
            bail!(
                "clamdscan did not find the file clean: {} {}",
                said.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(took)
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
