//! Helpers shared by the test files: assertions on ProblemDetails, raw HTTP over a TCP socket (for
//! bodies reqwest will not send), a hand-built multipart/form-data body, polling and outbox filters.

#![allow(dead_code)]

use crate::common::TestServer;
use broker_protocol::client::{BrokerClient, ClientError};
use broker_protocol::events::OutboxEntry;
use broker_protocol::transfer::FileTransferOverview;
use broker_protocol::{FileTransferStatus, ProblemDetails};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

/// The failed call must be `status` with a ProblemDetails carrying `code` (e.g. `BRO-00001`).
#[track_caller]
pub fn expect_problem<T: std::fmt::Debug>(
    result: Result<T, ClientError>,
    status: u16,
    code: &str,
) -> ProblemDetails {
    match result {
        Ok(v) => panic!("expected {status} {code}, but the call succeeded with {v:?}"),
        Err(ClientError::Status {
            status: got,
            problem,
            body,
        }) => {
            assert_eq!(got, status, "expected {status} {code}; body: {body}");
            let problem =
                problem.unwrap_or_else(|| panic!("expected a ProblemDetails body, got {body:?}"));
            assert_eq!(
                problem.code.as_deref(),
                Some(code),
                "wrong code; body: {body}"
            );
            assert_eq!(problem.status, status, "`status` in the body; body: {body}");
            *problem
        }
        Err(e) => panic!("expected {status} {code}, got a transport error: {e}"),
    }
}

/// The failed call must be a 400 ValidationProblemDetails (an `errors` map, no `code`); returns it.
#[track_caller]
pub fn expect_validation<T: std::fmt::Debug>(result: Result<T, ClientError>) -> ProblemDetails {
    match result {
        Ok(v) => panic!("expected a 400 validation problem, but the call succeeded with {v:?}"),
        Err(ClientError::Status {
            status,
            problem,
            body,
        }) => {
            assert_eq!(status, 400, "body: {body}");
            let problem = problem.unwrap_or_else(|| panic!("no ProblemDetails body: {body:?}"));
            assert_eq!(
                problem.code, None,
                "a validation problem has no code: {body}"
            );
            assert_eq!(
                problem.title, "One or more validation errors occurred.",
                "{body}"
            );
            let errors = problem
                .errors
                .as_ref()
                .unwrap_or_else(|| panic!("no errors map: {body}"));
            assert!(!errors.is_empty(), "empty errors map: {body}");
            *problem
        }
        Err(e) => panic!("expected a 400 validation problem, got a transport error: {e}"),
    }
}

/// Whether a validation problem names `field` (compared case-insensitively, as ASP.NET keys vary).
pub fn names_field(problem: &ProblemDetails, field: &str) -> bool {
    problem.errors.as_ref().is_some_and(|e| {
        e.keys()
            .any(|k| k.to_ascii_lowercase().contains(&field.to_ascii_lowercase()))
    })
}

/// Reads a reqwest response that must be `status` with an `application/problem+json` body whose
/// `code` is `code` (or absent when `None`); returns the body.
pub async fn expect_problem_response(
    response: reqwest::Response,
    status: u16,
    code: Option<&str>,
) -> serde_json::Value {
    let got = response.status().as_u16();
    let content_type = header(&response, "content-type");
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "body: {text}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "content-type {content_type:?}, body {text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["code"].as_str(), code, "body: {text}");
    assert_eq!(body["status"].as_u64(), Some(status as u64), "body: {text}");
    body
}

/// A response header as a string ("" when absent).
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Polls the overview until the transfer reaches `status` (panics after `timeout`).
pub async fn wait_for_status(
    client: &BrokerClient,
    id: Uuid,
    status: FileTransferStatus,
    timeout: Duration,
) -> FileTransferOverview {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let overview = client.overview(id).await.unwrap();
        if overview.summary.file_transfer_status == status {
            return overview;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "transfer {id} did not reach {status} within {timeout:?}; it is {}",
                overview.summary.file_transfer_status
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Retries an upload while the server still holds the slot of an interrupted one (it learns of the
/// interruption asynchronously); any other outcome is returned.
pub async fn upload_when_slot_is_free(
    client: &BrokerClient,
    id: Uuid,
    content: &[u8],
) -> Result<(), ClientError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.upload(id, content.to_vec()).await {
            Err(e) if e.status() == Some(409) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// Every outbox entry (up to 1000) about one transfer, in sequence order.
pub async fn events_of(maintenance: &BrokerClient, id: Uuid) -> Vec<OutboxEntry> {
    maintenance
        .events(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.resourceinstance == id.to_string())
        .collect()
}

/// The short type names (`published`, …) of a transfer's events, in order.
pub async fn event_types_of(maintenance: &BrokerClient, id: Uuid) -> Vec<String> {
    events_of(maintenance, id)
        .await
        .into_iter()
        .map(|e| {
            e.event
                .type_
                .strip_prefix("no.altinn.broker.")
                .unwrap_or(&e.event.type_)
                .to_string()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP over TCP

/// `host:port` of the server.
pub fn addr(server: &TestServer) -> String {
    server.url.trim_start_matches("http://").to_string()
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses a complete response from `buf`, or `None` if more bytes are needed (`eof`: no more will come).
fn parse_response(buf: &[u8], eof: bool) -> Option<RawResponse> {
    let head_end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &buf[head_end + 4..];
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        if rest.len() < len {
            if eof {
                rest.to_vec()
            } else {
                return None;
            }
        } else {
            rest[..len].to_vec()
        }
    } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let Some(line_end) = find(&rest[pos..], b"\r\n") else {
                return eof.then_some(RawResponse {
                    status,
                    headers,
                    body,
                });
            };
            let size_text = String::from_utf8_lossy(&rest[pos..pos + line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            pos += line_end + 2;
            if size == 0 {
                break;
            }
            if rest.len() < pos + size + 2 {
                return eof.then_some(RawResponse {
                    status,
                    headers,
                    body,
                });
            }
            body.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
        body
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        vec![]
    } else if eof {
        rest.to_vec()
    } else {
        return None;
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

/// What came back on a raw connection.
#[derive(Debug)]
pub enum Outcome {
    Response(RawResponse),
    /// The server closed the connection without a (complete) response.
    Closed,
    /// Nothing conclusive arrived in time.
    TimedOut,
}

/// Reads one response from `stream` within `limit`.
pub async fn read_response(stream: &mut TcpStream, limit: Duration) -> Outcome {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(r) = parse_response(&buf, false) {
            return Outcome::Response(r);
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return Outcome::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return parse_response(&buf, true).map_or(Outcome::Closed, Outcome::Response)
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Connects to the server.
pub async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(addr(server)).await.unwrap()
}

/// The kernel's byte counts of one TCP socket (from `/proc/net/tcp`, IPv4): `(tx_queue, rx_queue)`,
/// the bytes written but not yet taken by the peer, and those received but not yet read.
fn socket_queues(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> Option<(u64, u64)> {
    let hex = |a: std::net::SocketAddr| match a {
        std::net::SocketAddr::V4(v4) => {
            format!(
                "{:08X}:{:04X}",
                u32::from_le_bytes(v4.ip().octets()),
                v4.port()
            )
        }
        std::net::SocketAddr::V6(_) => panic!("the tests connect over IPv4 loopback"),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp (Linux)");
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) || fields.get(2) != Some(&remote.as_str()) {
            return None;
        }
        let (tx, rx) = fields.get(4)?.split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// Waits (up to 10 s) until the server process has read every byte written to `stream`: nothing is
/// left in this end's send queue nor unread in the server's end of the connection, as the kernel
/// counts them. What a server has read is what it can keep of a request cut or stopped afterwards;
/// the server itself exposes nothing while a request body is still streaming.
pub async fn wait_until_the_server_has_read(stream: &TcpStream) {
    let client = stream.local_addr().unwrap();
    let server = stream.peer_addr().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let sending = socket_queues(client, server).map(|(tx, _)| tx);
        let unread = socket_queues(server, client).map(|(_, rx)| rx);
        if sending == Some(0) && unread == Some(0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not read what was sent within 10 s: {sending:?} bytes unsent, {unread:?} unread"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends `request` as is on a new connection and reads the answer (10 s at most).
pub async fn raw_request(server: &TestServer, request: &[u8]) -> RawResponse {
    let mut stream = connect(server).await;
    stream.write_all(request).await.unwrap();
    match read_response(&mut stream, Duration::from_secs(10)).await {
        Outcome::Response(r) => r,
        other => panic!("no response: {other:?}"),
    }
}

/// The request head of an upload of `id` declaring `content_length` bytes.
pub fn upload_head(server: &TestServer, id: Uuid, token: &str, content_length: u64) -> Vec<u8> {
    format!(
        "POST /broker/api/v1/filetransfer/{id}/upload HTTP/1.1\r\n\
         Host: {}\r\n\
         Authorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\n\
         Content-Length: {content_length}\r\n\
         \r\n",
        addr(server)
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// multipart/form-data by hand (the dev-dependency reqwest has no "multipart" feature)

pub struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Default for Multipart {
    fn default() -> Self {
        Self::new()
    }
}

impl Multipart {
    pub fn new() -> Self {
        Multipart {
            boundary: format!("----broker-test-{}", Uuid::new_v4().simple()),
            body: Vec::new(),
        }
    }

    pub fn text(mut self, name: &str, value: &str) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self
    }

    pub fn file(mut self, name: &str, file_name: &str, content: &[u8]) -> Self {
        self.body.extend_from_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.extend_from_slice(content);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    /// The `Content-Type` header value and the body.
    pub fn finish(mut self) -> (String, Vec<u8>) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        (
            format!("multipart/form-data; boundary={}", self.boundary),
            self.body,
        )
    }
}

/// Posts a multipart body to `POST /filetransfer/upload` as `client`.
pub async fn post_multipart(client: &BrokerClient, form: Multipart) -> reqwest::Response {
    let (content_type, body) = form.finish();
    client
        .request(reqwest::Method::POST, "/filetransfer/upload")
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Streaming request bodies

pub type BodySender = futures::channel::mpsc::Sender<Result<Vec<u8>, std::io::Error>>;

/// A reqwest body fed through a channel: the request stays open until the sender is dropped (or
/// sends an error, which aborts the request).
pub fn channel_body() -> (BodySender, reqwest::Body) {
    let (tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    (tx, reqwest::Body::wrap_stream(rx))
}

/// A process's resident memory, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// How many file descriptors a process has open, from /proc.
pub fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}
