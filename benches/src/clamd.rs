//! A ClamAV daemon of the benchmark's own, on a free loopback port (or a unix socket) with the project's test signature
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
    /// Its TCP port on 127.0.0.1 (0 when it listens on a unix socket only).
    pub port: u16,
    conf: std::path::PathBuf,
    _work: tempfile::TempDir,
}

/// Where a clamd listens.
enum Listen<'a> {
    Tcp(u16),
    Unix(&'a Path),
}

impl Clamd {
    /// Starts clamd on a free port, accepting streams of up to `stream_max_bytes`. clamd cannot bind
    /// port 0 and say which port it got, so a port is picked and, should another process take it
    /// first (clamd then logs that it cannot bind and serves no TCP), another one is tried.
    pub fn start(stream_max_bytes: u64) -> anyhow::Result<Clamd> {
        for _ in 0..20 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            if let Some(clamd) = Clamd::launch(Listen::Tcp(port), stream_max_bytes)? {
                return Ok(clamd);
            }
        }
        bail!("clamd found no free port in 20 tries")
    }

    /// Starts clamd on the unix socket `path` (a path the caller owns, so nothing else can take it;
    /// a clamd started again there is found where the stopped one was).
    pub fn start_at(path: &Path, stream_max_bytes: u64) -> anyhow::Result<Clamd> {
        Clamd::launch(Listen::Unix(path), stream_max_bytes)?
            .with_context(|| format!("clamd could not listen on {}", path.display()))
    }

    /// Starts clamd; `None` if it could not bind its TCP port.
    fn launch(listen: Listen, stream_max_bytes: u64) -> anyhow::Result<Option<Clamd>> {
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
        let socket = match listen {
            Listen::Tcp(port) => format!("TCPSocket {port}\nTCPAddr 127.0.0.1\n"),
            Listen::Unix(path) => format!("LocalSocket {}\n", path.display()),
        };
        let conf = work.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "DatabaseDirectory {}\nTemporaryDirectory {}\n{socket}\
                 Foreground yes\nStreamMaxLength {}M\nMaxScanSize 4000M\nMaxFileSize 4000M\n\
                 DisableCache yes\n{user}",
                db.display(),
                work.path().display(),
                stream_max_bytes.div_ceil(1 << 20)
            ),
        )?;
        let log = work.path().join("clamd.log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log)?,
            ))
            .spawn()?;
        let mut clamd = Clamd {
            child,
            port: match listen {
                Listen::Tcp(port) => port,
                Listen::Unix(_) => 0,
            },
            conf,
            _work: work,
        };
        // Its sockets are bound (or not) once it says how often it checks itself (or exits).
        let deadline = Instant::now() + Duration::from_secs(60);
        let said = loop {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            if said.contains("Self checking every") {
                break said;
            }
            if let Some(status) = clamd.child.try_wait()? {
                // Its port was taken: it logs so, and exits when it has nothing else to serve.
                if said.contains("Cannot bind") {
                    return Ok(None);
                }
                bail!("clamd exited ({status}): {said}");
            }
            if Instant::now() > deadline {
                bail!("clamd did not start within 60 s: {said}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if said.contains("Cannot bind") {
            return Ok(None);
        }
        let ping = |s: &mut dyn ReadWrite| -> bool {
            let mut answer = [0u8; 8];
            s.write_all(b"zPING\0").is_ok()
                && s.read(&mut answer)
                    .is_ok_and(|n| answer[..n].starts_with(b"PONG"))
        };
        let answered = match listen {
            Listen::Tcp(port) => {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| ping(&mut s))
            }
            Listen::Unix(path) => {
                std::os::unix::net::UnixStream::connect(path).is_ok_and(|mut s| ping(&mut s))
            }
        };
        if !answered {
            bail!("clamd started but does not answer PING: {said}");
        }
        Ok(Some(clamd))
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

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
