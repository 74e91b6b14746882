//! The scanner port on a ClamAV daemon: the file streams to clamd with its INSTREAM command (over TCP or
//! a unix socket), in frames of at most [`FRAME`] bytes, and clamd's one-line answer is the verdict.
//! Anything but a verdict (no connection, a timeout, a cut answer) is `Unavailable`, so the caller
//! retries; it is never taken as clean.

use async_trait::async_trait;
use broker_actors::ports::{ByteStream, ScanError, Scanner, Verdict};
use futures::StreamExt;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest INSTREAM frame sent (clamd reads frames of any size up to its StreamMaxLength).
const FRAME: usize = 256 << 10;
/// The longest answer clamd gives (a path-free stream answer with a signature name).
const MAX_ANSWER: usize = 4096;

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddress {
    /// `tcp:HOST:PORT`
    Tcp(String),
    /// `unix:PATH`
    Unix(std::path::PathBuf),
}

impl std::str::FromStr for ClamdAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("tcp", hostport)) if hostport.contains(':') => {
                Ok(ClamdAddress::Tcp(hostport.into()))
            }
            Some(("unix", path)) if !path.is_empty() => Ok(ClamdAddress::Unix(path.into())),
            _ => Err(format!("{s:?} is neither tcp:HOST:PORT nor unix:PATH")),
        }
    }
}

pub struct ClamdScanner {
    address: ClamdAddress,
    /// The longest a whole scan may take, connection included.
    timeout: Duration,
}

impl ClamdScanner {
    pub fn new(address: ClamdAddress, timeout: Duration) -> ClamdScanner {
        ClamdScanner { address, timeout }
    }

    async fn scan_over<C: AsyncRead + AsyncWrite + Unpin>(
        mut conn: C,
        mut file: ByteStream,
    ) -> Result<Verdict, ScanError> {
        let lost = |e: std::io::Error| ScanError::Unavailable(format!("clamd: {e}"));
        conn.write_all(b"zINSTREAM\0").await.map_err(lost)?;
        while let Some(chunk) = file.next().await {
            let chunk = chunk.map_err(|e| ScanError::Unreadable(e.to_string()))?;
            for frame in chunk.chunks(FRAME) {
                conn.write_all(&(frame.len() as u32).to_be_bytes())
                    .await
                    .map_err(lost)?;
                if let Err(e) = conn.write_all(frame).await {
                    // clamd closes the stream when a limit is reached and says why: read it.
                    return match read_answer(&mut conn).await {
                        Ok(answer) => parse_answer(&answer),
                        Err(_) => Err(lost(e)),
                    };
                }
            }
        }
        conn.write_all(&0u32.to_be_bytes()).await.map_err(lost)?;
        let answer = read_answer(&mut conn).await.map_err(lost)?;
        parse_answer(&answer)
    }
}

#[async_trait]
impl Scanner for ClamdScanner {
    async fn scan(&self, file: ByteStream) -> Result<Verdict, ScanError> {
        let scan = async {
            match &self.address {
                ClamdAddress::Tcp(hostport) => {
                    let conn = tokio::net::TcpStream::connect(hostport)
                        .await
                        .map_err(|e| ScanError::Unavailable(format!("clamd at {hostport}: {e}")))?;
                    // Each frame is a 4-byte length and then its bytes: never hold the length back
                    // waiting for an ACK (Nagle) while the frame is ready.
                    conn.set_nodelay(true)
                        .map_err(|e| ScanError::Unavailable(format!("clamd at {hostport}: {e}")))?;
                    Self::scan_over(conn, file).await
                }
                ClamdAddress::Unix(path) => {
                    let conn = tokio::net::UnixStream::connect(path).await.map_err(|e| {
                        ScanError::Unavailable(format!("clamd at {}: {e}", path.display()))
                    })?;
                    Self::scan_over(conn, file).await
                }
            }
        };
        match tokio::time::timeout(self.timeout, scan).await {
            Ok(verdict) => verdict,
            Err(_) => Err(ScanError::Unavailable(format!(
                "clamd did not answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// Reads clamd's answer up to its terminating NUL (z-commands) or the end of the connection.
async fn read_answer<C: AsyncRead + Unpin>(conn: &mut C) -> std::io::Result<String> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        if answer.contains(&0) || answer.len() > MAX_ANSWER {
            break;
        }
    }
    let end = answer.iter().position(|b| *b == 0).unwrap_or(answer.len());
    Ok(String::from_utf8_lossy(&answer[..end]).trim().to_string())
}

/// `stream: OK`, `stream: NAME FOUND`, or `… ERROR`.
fn parse_answer(answer: &str) -> Result<Verdict, ScanError> {
    let body = answer.strip_prefix("stream:").unwrap_or(answer).trim();
    if body == "OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(name) = body.strip_suffix(" FOUND") {
        return Ok(Verdict::Infected(vec![name.trim().to_string()]));
    }
    if body.contains("size limit exceeded") {
        tracing::error!(answer, "CONFIGURATION: clamd's StreamMaxLength is below [scan] window_bytes; no verdict was given");
    }
    if body.ends_with("ERROR") {
        return Err(ScanError::Refused(body.to_string()));
    }
    Err(ScanError::Unavailable(format!(
        "clamd answered {answer:?}, which is no verdict"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamd_answers_parse_into_verdicts_and_nothing_else_counts_as_clean() {
        assert_eq!(parse_answer("stream: OK").unwrap(), Verdict::Clean);
        assert_eq!(
            parse_answer("stream: Win.Test.EICAR_HDB-1 FOUND").unwrap(),
            Verdict::Infected(vec!["Win.Test.EICAR_HDB-1".into()])
        );
        assert!(matches!(
            parse_answer("INSTREAM size limit exceeded. ERROR"),
            Err(ScanError::Refused(_))
        ));
        assert!(matches!(parse_answer(""), Err(ScanError::Unavailable(_))));
        assert!(matches!(
            parse_answer("stream: O"),
            Err(ScanError::Unavailable(_))
        ));
    }

    #[test]
    fn addresses_are_tcp_or_unix() {
        assert_eq!(
            "tcp:127.0.0.1:3310".parse::<ClamdAddress>().unwrap(),
            ClamdAddress::Tcp("127.0.0.1:3310".into())
        );
        assert_eq!(
            "unix:/run/clamav/clamd.ctl"
                .parse::<ClamdAddress>()
                .unwrap(),
            ClamdAddress::Unix("/run/clamav/clamd.ctl".into())
        );
        assert!("127.0.0.1:3310".parse::<ClamdAddress>().is_err());
        assert!("tcp:3310".parse::<ClamdAddress>().is_err());
    }
}
