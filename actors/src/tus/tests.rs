//! Resumable uploads through the broker on the in-memory adapters.

use crate::test_support::{hex, patch, published, setup};
use sha2::Digest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_hashed_while_they_stream_are_not_read_back_after_the_final() {
    let s = setup().await;
    let id = s.initialize(None).await;
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let pieces: Vec<&[u8]> = content.chunks(100_000).collect();
    let mut parts = Vec::new();
    for piece in &pieces {
        let part = s
            .broker
            .tus_create_part(&s.sender, id, Some(piece.len() as u64))
            .await
            .unwrap();
        parts.push(part);
    }
    // The last part first: it waits, hashed once the parts before it are.
    for (part, piece) in parts.iter().zip(&pieces).rev() {
        let offset = s
            .broker
            .tus_patch(&s.sender, id, Some(part), 0, patch(piece))
            .await
            .unwrap();
        assert_eq!(offset, piece.len() as u64);
    }
    let urls: Vec<String> = parts
        .iter()
        .map(|p| format!("/broker/api/v1/filetransfer/upload/tus/{id}/partial/{p}"))
        .collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    assert_eq!(
        s.broker.tus_finish(&s.sender, id, &urls).await.unwrap(),
        content.len() as u64
    );
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

/// A body of `bytes` in chunks of 64 KiB, as a socket delivers it.
fn chunked(
    bytes: &[u8],
) -> crate::tus::Patch<futures::stream::Iter<std::vec::IntoIter<Result<bytes::Bytes, String>>>> {
    let chunks: Vec<_> = bytes
        .chunks(64 << 10)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    crate::tus::Patch {
        body: futures::stream::iter(chunks),
        new_length: None,
        len: Some(bytes.len() as u64),
        checksum: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_sent_in_order_are_hashed_as_they_stream_and_never_read_back() {
    let s = setup().await;
    let id = s.initialize(None).await;
    let content: Vec<u8> = (0..(6u32 << 20)).map(|i| (i % 253) as u8).collect();
    let pieces: Vec<&[u8]> = content.chunks(3 << 20).collect();
    let mut urls = Vec::new();
    for piece in &pieces {
        let part = s
            .broker
            .tus_create_part(&s.sender, id, Some(piece.len() as u64))
            .await
            .unwrap();
        s.broker
            .tus_patch(&s.sender, id, Some(&part), 0, chunked(piece))
            .await
            .unwrap();
        urls.push(format!(
            "/broker/api/v1/filetransfer/upload/tus/{id}/partial/{part}"
        ));
    }
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    s.broker.tus_finish(&s.sender, id, &urls).await.unwrap();
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
