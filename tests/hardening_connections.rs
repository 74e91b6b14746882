//! One hostile client must not take the server from the others (issue 8): the header-read and
//! keep-alive timeouts, the minimum data rate on every body, the connection cap and its eviction, and
//! a slowloris run against the real binary with its memory measured.

use crate::common::*;
use crate::support::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HALF_HEAD: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\n";

/// Waits until the server closes `stream` (or `limit` passes); returns when it closed.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

async fn server_with(edit: impl FnOnce(&mut broker::config::Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut config = test_config(&dir);
    edit(&mut config);
    TestServer::start_with(config).await
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_at_the_header_read_timeout() {
    // Timed (closed within 5 s): alone on the cores.
    let _alone = cpu_exclusive().await;
    let server = server_with(|c| c.server.header_read_timeout_secs = 1).await;
    let mut stream = connect(&server).await;
    stream.write_all(HALF_HEAD).await.unwrap();
    let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
    let closed = closed.expect("the half-sent head was still open after 5 s");
    assert!(
        closed >= Duration::from_millis(900),
        "closed early: {closed:?}"
    );
    // A connection that sends nothing at all is closed the same way.
    let mut silent = connect(&server).await;
    assert!(closed_within(&mut silent, Duration::from_secs(5))
        .await
        .is_some());
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    // Timed (closed within 5 s): alone on the cores.
    let _alone = cpu_exclusive().await;
    let server = server_with(|c| {
        c.server.keep_alive_timeout_secs = 1;
        c.server.header_read_timeout_secs = 30;
    })
    .await;
    let mut stream = connect(&server).await;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    match read_response(&mut stream, Duration::from_secs(5)).await {
        Outcome::Response(r) => assert_eq!(r.status, 200),
        other => panic!("{other:?}"),
    }
    let closed = closed_within(&mut stream, Duration::from_secs(5)).await;
    let closed = closed.expect("the idle connection was still open after 5 s");
    assert!(
        closed >= Duration::from_millis(900),
        "closed early: {closed:?}"
    );
}

#[tokio::test]
async fn a_json_body_trickling_in_below_the_minimum_rate_is_cut_off_with_408() {
    // Timed (cut within 4 s): alone on the cores.
    let _alone = cpu_exclusive().await;
    let server = server_with(|c| {
        c.server.min_data_rate = 100;
        c.server.min_data_rate_grace_secs = 1;
    })
    .await;
    let f = Fixture::on(server).await;
    let token = f.server.token(SENDER, WRITE);
    let mut stream = connect(&f.server).await;
    stream
        .write_all(
            format!(
                "POST /broker/api/v1/filetransfer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // One byte every 200 ms (5 B/s), until the server answers.
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while started.elapsed() < Duration::from_secs(8) {
        tokio::select! {
            n = stream.read(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    received.extend_from_slice(&buf[..n]);
                    if received.windows(4).any(|w| w == b"\r\n\r\n") && received.ends_with(b"}") {
                        break;
                    }
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                let _ = stream.write_all(b" ").await;
            }
        }
    }
    let text = String::from_utf8_lossy(&received).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("BRO-09009"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

/// Starts a binary upload over a raw socket and sends part of its body, so the connection is busy.
/// The head asks `Expect: 100-continue`: the server's `100 Continue` says its handler is reading the
/// body, so the connection is busy by then (no guessing how long the server takes to get there).
async fn busy_upload(f: &Fixture, id: uuid::Uuid, token: &str) -> tokio::net::TcpStream {
    let mut stream = connect(&f.server).await;
    let head = String::from_utf8(upload_head(&f.server, id, token, 20)).unwrap();
    let head = head.replacen("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n", 1);
    stream.write_all(head.as_bytes()).await.unwrap();
    match read_response(&mut stream, Duration::from_secs(10)).await {
        Outcome::Response(r) => assert_eq!(r.status, 100, "{r:?}"),
        other => panic!("no 100 Continue for the upload of {id}: {other:?}"),
    }
    stream.write_all(&[1u8; 10]).await.unwrap();
    stream
}

#[tokio::test]
async fn at_the_connection_cap_half_sent_heads_make_room_and_busy_connections_are_kept() {
    // Timed (the new client is served within a second): alone on the cores.
    let _alone = cpu_exclusive().await;
    let server = server_with(|c| {
        c.server.max_connections = 4;
        c.server.min_data_rate = 0;
    })
    .await;
    let f = Fixture::on(server).await;
    // Four busy uploads fill the cap: a new connection is refused at once with a 503. (The
    // transfers are initialized first: the client's idle connection is the one evicted for the last.)
    let token = f.server.token(SENDER, WRITE);
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(f.initialize(&[RECIPIENT]).await);
    }
    let mut uploads = Vec::new();
    for id in &ids {
        uploads.push(busy_upload(&f, *id, &token).await);
    }
    // Refused at once, its request read off so the 503 arrives rather than a reset.
    let mut refused = connect(&f.server).await;
    refused
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    match read_response(&mut refused, Duration::from_secs(2)).await {
        Outcome::Response(r) => {
            assert_eq!(r.status, 503);
            assert_eq!(r.json()["code"], "BRO-09010");
        }
        other => panic!("expected a 503: {other:?}"),
    }
    // The busy uploads were not disturbed: each completes.
    for (mut stream, id) in uploads.into_iter().zip(&ids) {
        stream.write_all(&[2u8; 10]).await.unwrap();
        match read_response(&mut stream, Duration::from_secs(5)).await {
            Outcome::Response(r) => assert_eq!(r.status, 200, "{id}"),
            other => panic!("{other:?}"),
        }
    }
    // Half-sent heads at the cap give way to a new client.
    let mut heads = Vec::new();
    for _ in 0..8 {
        let mut s = connect(&f.server).await;
        s.write_all(HALF_HEAD).await.unwrap();
        heads.push(s);
    }
    // The server accepts connections in the order they arrived: these heads are open when it
    // takes the next one.
    let started = Instant::now();
    let r = reqwest::get(format!("{}/health", f.server.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
}

const SLOWLORIS_SOCKETS: usize = 2000;
const SLOWLORIS_CAP: usize = 256;
const SLOWLORIS_HEADER_TIMEOUT_SECS: u64 = 3;

#[tokio::test]
async fn a_slowloris_of_two_thousand_sockets_neither_starves_health_nor_keeps_its_memory() {
    let _alone = crate::common::cpu_exclusive().await;
    broker::http::connections::raise_open_file_limit();
    let dir = tempfile::tempdir().unwrap();
    let cap = SLOWLORIS_CAP.to_string();
    let header_timeout = SLOWLORIS_HEADER_TIMEOUT_SECS.to_string();
    let served = crate::cli::serve_with(
        dir.path(),
        &[
            ("BROKER__SERVER__MAX_CONNECTIONS", cap.as_str()),
            (
                "BROKER__SERVER__HEADER_READ_TIMEOUT_SECS",
                header_timeout.as_str(),
            ),
            ("RUST_LOG", "warn"),
        ],
    );
    let url = served.url.clone();
    let addr = url.trim_start_matches("http://").to_string();
    let pid = served.child.id();
    // A fresh connection per probe: a new client each time.
    let probe = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    // Warm-up, before the attack: a loaded test machine may take longer than the probe's second.
    let warm_up = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    for _ in 0..20 {
        assert!(warm_up
            .get(format!("{url}/health"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success());
    }
    let before = rss_kib(pid);

    let attack_started = Instant::now();
    let attack = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut sockets = Vec::with_capacity(SLOWLORIS_SOCKETS);
            for _ in 0..SLOWLORIS_SOCKETS {
                let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
                    continue;
                };
                if s.write_all(HALF_HEAD).await.is_ok() {
                    sockets.push((s, Instant::now()));
                }
            }
            sockets
        })
    };
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    while attack_started.elapsed() < Duration::from_secs(10) {
        let t = Instant::now();
        let r = probe.get(format!("{url}/health")).send().await;
        let took = t.elapsed();
        assert!(
            matches!(&r, Ok(r) if r.status().is_success()),
            "/health failed after {:?} of the attack: {r:?}",
            attack_started.elapsed()
        );
        slowest = slowest.max(took);
        probes += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slowest < Duration::from_secs(1),
        "slowest /health: {slowest:?}"
    );
    assert!(probes > 50, "only {probes} probes");
    let sockets = attack.await.unwrap();
    assert!(sockets.len() > SLOWLORIS_CAP, "{} sockets", sockets.len());
    // Every half-sent head has been closed by now: evicted, or timed out at the header timeout.
    let limit = Duration::from_secs(SLOWLORIS_HEADER_TIMEOUT_SECS + 2);
    let mut late = 0;
    for (mut s, opened) in sockets {
        let left = limit.saturating_sub(opened.elapsed());
        if closed_within(&mut s, left.max(Duration::from_millis(1)))
            .await
            .is_none()
        {
            late += 1;
        }
    }
    assert_eq!(late, 0, "half-sent heads open past the header timeout");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(probe
        .get(format!("{url}/health"))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let after = rss_kib(pid);
    drop(served);
    eprintln!("slowloris: RSS {before} KiB before, {after} KiB after; slowest /health {slowest:?} over {probes} probes");
    assert!(
        after <= 2 * before,
        "RSS {before} KiB before, {after} KiB after"
    );
}

#[tokio::test]
async fn a_download_the_client_stops_reading_is_cut_after_the_send_timeout() {
    // Timed (cut within 10 s): alone on the cores.
    let _alone = cpu_exclusive().await;
    let server = server_with(|c| c.server.send_timeout_secs = 1).await;
    let f = Fixture::on(server).await;
    let size = 16 << 20;
    let id = f.publish(&[RECIPIENT], &payload(size, 12)).await;
    let token = f.server.token(RECIPIENT, READ);
    // A small receive buffer (no autotuning), so the server's writes stall soon after we stop reading.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 << 10).unwrap();
    let mut stream = socket
        .connect(addr(&f.server).parse().unwrap())
        .await
        .unwrap();
    stream
        .write_all(
            format!(
                "GET /broker/api/v1/filetransfer/{id}/download HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = [0u8; 1024];
    let n = stream.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    // The client stops reading; the socket buffers fill and the server's writes stall.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut received = n;
    let mut buf = vec![0u8; 1 << 20];
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the stalled download was not closed");
    assert!(
        received < size,
        "the whole file arrived: the download was not cut"
    );
}
