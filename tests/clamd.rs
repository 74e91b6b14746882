//! The clamd adapter against a real ClamAV daemon (broker-bench's, on a free loopback port with the
//! signature database the project ships: an EICAR body signature, nothing can be downloaded here).
//! `scripts/test.sh` installs clamav-daemon.

use broker::scan::clamd::{ClamdAddress, ClamdScanner};
use broker_actors::ports::{ByteStream, ScanError, Scanner, Verdict};
pub use broker_bench::clamd::Clamd;
use bytes::Bytes;
use futures::StreamExt;
use std::time::{Duration, Instant};

pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// What clamd calls a match of the shipped signature.
pub const SIGNATURE: &str = "Broker.Test.EICAR.UNOFFICIAL";

/// The adapter pointed at `clamd`.
fn scanner(clamd: &Clamd) -> ClamdScanner {
    ClamdScanner::new(
        ClamdAddress::Tcp(format!("127.0.0.1:{}", clamd.port)),
        Duration::from_secs(30),
    )
}

/// `bytes` as a stream of `chunk`-sized pieces.
fn stream(bytes: Vec<u8>, chunk: usize) -> ByteStream {
    let pieces: Vec<_> = bytes
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(pieces).boxed()
}

pub fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn clamd_finds_eicar_alone_and_inside_a_file_across_frames_and_passes_a_clean_one() {
    let clamd = Clamd::start(100 << 20).unwrap();
    let scanner = scanner(&clamd);
    let found = scanner.scan(stream(EICAR.to_vec(), 1 << 20)).await.unwrap();
    assert_eq!(found, Verdict::Infected(vec![SIGNATURE.into()]));
    // Straddling both the body's chunks and the adapter's 256 KiB frames.
    let mut file = random(3 << 20, 7);
    let at = (256 << 10) - 30;
    file[at..at + EICAR.len()].copy_from_slice(EICAR);
    let inside = scanner.scan(stream(file, 100_000)).await.unwrap();
    assert_eq!(inside, Verdict::Infected(vec![SIGNATURE.into()]));
    let clean = scanner
        .scan(stream(random(3 << 20, 9), 64 << 10))
        .await
        .unwrap();
    assert_eq!(clean, Verdict::Clean);
}

#[tokio::test]
async fn a_file_over_clamds_stream_limit_gets_no_verdict_rather_than_clean() {
    let clamd = Clamd::start(1 << 20).unwrap();
    let refused = scanner(&clamd)
        .scan(stream(random(4 << 20, 3), 64 << 10))
        .await;
    // clamd answers "size limit exceeded" and closes; when its close resets the connection before the
    // answer is read (a loaded machine), the scan is Unavailable instead. Either way: no verdict. (The
    // scan windows of the next step keep every stream under the limit.)
    match &refused {
        Err(ScanError::Refused(e)) => assert!(e.contains("size limit exceeded"), "{e}"),
        Err(ScanError::Unavailable(_)) => {}
        other => panic!("a verdict for a file clamd did not read whole: {other:?}"),
    }
}

#[tokio::test]
async fn a_clamd_that_is_gone_or_silent_is_unavailable_and_never_clean() {
    // Timed (a silent clamd is given up within 5 s): alone on the cores.
    let _alone = crate::common::cpu_exclusive().await;
    // Gone: a clamd stopped on a unix socket of the test's own (a freed TCP port could be taken
    // by another process meanwhile).
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("clamd.sock");
    let clamd = Clamd::start_at(&socket, 100 << 20).unwrap();
    let scanner = ClamdScanner::new(ClamdAddress::Unix(socket), Duration::from_secs(30));
    let clean = scanner.scan(stream(b"a report".to_vec(), 1024)).await;
    assert_eq!(clean.unwrap(), Verdict::Clean, "it answered while it ran");
    drop(clamd);
    let gone = scanner.scan(stream(b"a report".to_vec(), 1024)).await;
    assert!(matches!(gone, Err(ScanError::Unavailable(_))), "{gone:?}");
    // A listener that takes the file and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut conn, _) = silent.accept().await.unwrap();
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut sink).await;
    });
    let slow = ClamdScanner::new(ClamdAddress::Tcp(address), Duration::from_millis(500));
    let started = Instant::now();
    let silent_answer = slow.scan(stream(b"a report".to_vec(), 1024)).await;
    assert!(
        matches!(silent_answer, Err(ScanError::Unavailable(_))),
        "{silent_answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
