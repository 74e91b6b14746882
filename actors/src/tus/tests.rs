//! Resumable uploads through the broker on the in-memory adapters.

use crate::test_support::{hex, published, setup};
use sha2::Digest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_hashed_while_they_stream_are_not_read_back_after_the_final() {
    let s = setup().await;
    let id = s.initialize(None).await;
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let pieces: Vec<&[u8]> = content.chunks(100_000).collect();
    let parts = s.create_parts(id, &pieces).await;
    // The last part first: it waits, read back once the parts before it are hashed.
    s.send_parts(id, parts.iter().zip(pieces.iter().copied()).rev())
        .await;
    assert_eq!(s.join_parts(id, &parts).await, content.len() as u64);
    let view = published(&s, id).await;
    assert_eq!(
        view.sha256.as_deref(),
        Some(hex(&sha2::Sha256::digest(&content)).as_str())
    );
    assert_eq!(
        view.checksum.as_deref(),
        Some(hex(&md5::Md5::digest(&content)).as_str())
    );
    assert_eq!(
        s.blobs.file_reads(),
        0,
        "the joined file was not read back to hash it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_sent_in_order_are_hashed_as_they_stream_and_never_read_back() {
    let s = setup().await;
    let id = s.initialize(None).await;
    let content: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 253) as u8).collect();
    let pieces: Vec<&[u8]> = content.chunks(3 << 20).collect();
    let parts = s.create_parts(id, &pieces).await;
    s.send_parts(id, parts.iter().zip(pieces.iter().copied()))
        .await;
    s.join_parts(id, &parts).await;
    let view = published(&s, id).await;
    assert_eq!(
        view.checksum.as_deref(),
        Some(hex(&md5::Md5::digest(&content)).as_str())
    );
    assert_eq!(
        view.sha256.as_deref(),
        Some(hex(&sha2::Sha256::digest(&content)).as_str())
    );
    assert_eq!(s.blobs.file_reads(), 0, "the joined file was not read back");
    assert_eq!(
        s.blobs.part_bytes_read(),
        0,
        "no part was read back: each was hashed as it came"
    );
}
