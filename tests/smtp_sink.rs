//! The real SMTP server the notification tests send to (`tests/fixtures/smtp_sink.py`, aiosmtpd),
//! on a loopback port the test owns from start to end, in plain text, with STARTTLS or with TLS from
//! the first byte; and the test certificates it serves (`tests/fixtures/make_tls.py`).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A loopback port the test owns: a socket bound to it and never closed before the test ends. Until
/// an SMTP server is handed the socket nothing listens there (a connection is refused at once), and
/// no other process can take the port meanwhile, as one could after a port is freed to be reused.
pub struct OwnedPort {
    socket: tokio::net::TcpSocket,
    pub port: u16,
}

impl OwnedPort {
    pub fn new() -> OwnedPort {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = socket.local_addr().unwrap().port();
        OwnedPort { socket, port }
    }
}

/// How the SMTP server speaks: plain, STARTTLS, or TLS from the first byte, with the certificate
/// and key in a directory `make_tls` wrote.
pub enum Security<'a> {
    Plain,
    Starttls(&'a Path),
    Tls(&'a Path),
}

/// A test CA and a server certificate it signed (for 127.0.0.1), written to `dir`: `ca.pem`,
/// `server.pem`, `server.key`. Each call makes a new CA.
pub fn make_tls(dir: &Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/make_tls.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dir)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "make_tls.py failed (scripts/test.sh installs cryptography): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// aiosmtpd serving an [`OwnedPort`], writing what it receives to a file.
pub struct SmtpSink {
    child: Child,
    out: PathBuf,
}

impl SmtpSink {
    pub fn start(port: &OwnedPort, out: &Path, security: Security) -> SmtpSink {
        use std::os::unix::process::CommandExt;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smtp_sink.py");
        let mut command = Command::new("python3");
        command.arg(script).arg("3").arg(out);
        match security {
            Security::Plain => command.arg("none"),
            Security::Starttls(dir) => command
                .arg("starttls")
                .arg(dir.join("server.pem"))
                .arg(dir.join("server.key")),
            Security::Tls(dir) => command
                .arg("tls")
                .arg(dir.join("server.pem"))
                .arg(dir.join("server.key")),
        };
        let fd = port.socket.as_raw_fd();
        // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl): the child gets
        // the bound socket as its descriptor 3, without close-on-exec.
        unsafe {
            command.pre_exec(move || {
                if fd == 3 {
                    let flags = libc::fcntl(3, libc::F_GETFD);
                    if flags == -1 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "aiosmtpd did not start (scripts/test.sh installs it)"
        );
        SmtpSink {
            child,
            out: out.to_path_buf(),
        }
    }

    pub fn messages(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits (up to 20 s) until `n` messages arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..400 {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} e-mails did not arrive: {:?}", self.messages());
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
