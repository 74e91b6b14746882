//! The blob port's rules: ordered appends, reads of any range, appends that cut off unacknowledged
//! bytes, parts joined without copying, and removal.

use crate::ports::{BlobError, BlobStore};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use uuid::Uuid;

/// Runs every rule of the blob port against `blobs` (a fresh store).
pub async fn blob_store_suite(blobs: &dyn BlobStore) {
    a_written_file_reads_back_whole_and_by_range(blobs).await;
    an_append_cuts_off_what_was_stored_past_its_offset(blobs).await;
    joined_parts_read_as_one_file(blobs).await;
    a_removed_file_is_gone_and_removing_it_again_succeeds(blobs).await;
    blobs
        .check()
        .await
        .expect("the store answers its health check");
}

fn batch(chunks: &[&[u8]]) -> crate::ports::Batch {
    Arc::new(chunks.iter().map(|c| Bytes::copy_from_slice(c)).collect())
}

async fn read(blobs: &dyn BlobStore, id: Uuid, start: u64, len: u64) -> Vec<u8> {
    let mut stream = blobs.read(id, start, len).await.expect("the file reads");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("a chunk reads"));
    }
    out
}

async fn write(blobs: &dyn BlobStore, id: Uuid, part: Option<&str>, offset: u64, bytes: &[u8]) {
    let mut writer = blobs
        .open_append(id, part, offset)
        .await
        .expect("open for append");
    writer.append(batch(&[bytes])).await.expect("append");
    writer.commit().await.expect("commit");
}

async fn a_written_file_reads_back_whole_and_by_range(blobs: &dyn BlobStore) {
    let id = Uuid::new_v4();
    let mut writer = blobs.create(id).await.unwrap();
    writer
        .append(batch(&[b"hello ", b"", b"wor"]))
        .await
        .unwrap();
    writer.sync().await.unwrap();
    writer.append(batch(&[b"ld"])).await.unwrap();
    assert_eq!(
        writer.commit().await.unwrap(),
        11,
        "commit returns the stored size"
    );
    assert_eq!(read(blobs, id, 0, 11).await, b"hello world");
    assert_eq!(read(blobs, id, 6, 5).await, b"world");
    assert_eq!(read(blobs, id, 4, 3).await, b"o w");
    assert!(read(blobs, id, 3, 0).await.is_empty());
    let mut again = blobs.create(id).await.unwrap();
    again.append(batch(&[b"new"])).await.unwrap();
    assert_eq!(
        again.commit().await.unwrap(),
        3,
        "create starts the file over"
    );
    assert_eq!(read(blobs, id, 0, 3).await, b"new");
}

async fn an_append_cuts_off_what_was_stored_past_its_offset(blobs: &dyn BlobStore) {
    let id = Uuid::new_v4();
    write(blobs, id, None, 0, b"0123456789").await;
    write(blobs, id, None, 4, b"ab").await;
    assert_eq!(read(blobs, id, 0, 6).await, b"0123ab");
    let beyond = blobs.open_append(id, None, 100).await;
    assert!(
        beyond.is_err(),
        "an offset past the stored bytes is refused"
    );
}

async fn joined_parts_read_as_one_file(blobs: &dyn BlobStore) {
    let id = Uuid::new_v4();
    write(blobs, id, Some("b"), 0, b"world").await;
    write(blobs, id, Some("a"), 0, b"hello ").await;
    write(blobs, id, Some("a"), 6, b"").await;
    let mut part = blobs.read_part(id, "b", 1, 3).await.expect("a part reads");
    let mut out = Vec::new();
    while let Some(chunk) = part.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(out, b"orl", "one part reads by range before the join");
    blobs
        .concat(id, &["a".to_string(), "b".to_string()])
        .await
        .unwrap();
    assert_eq!(read(blobs, id, 0, 11).await, b"hello world");
    assert_eq!(
        read(blobs, id, 4, 4).await,
        b"o wo",
        "a range spans the parts"
    );
    let lone = Uuid::new_v4();
    write(blobs, lone, Some("x"), 0, b"xyz").await;
    blobs.delete_part(lone, "x").await.unwrap();
    blobs.delete_part(lone, "x").await.unwrap();
    write(blobs, lone, Some("x"), 0, b"q").await;
    blobs.concat(lone, &["x".to_string()]).await.unwrap();
    assert_eq!(
        read(blobs, lone, 0, 1).await,
        b"q",
        "a removed part starts over"
    );
}

async fn a_removed_file_is_gone_and_removing_it_again_succeeds(blobs: &dyn BlobStore) {
    let id = Uuid::new_v4();
    write(blobs, id, None, 0, b"bytes").await;
    blobs.delete(id).await.unwrap();
    assert!(matches!(
        blobs.read(id, 0, 5).await.err(),
        Some(BlobError::NotFound | BlobError::Io(_))
    ));
    blobs
        .delete(id)
        .await
        .expect("removing a missing file succeeds");
    let joined = Uuid::new_v4();
    write(blobs, joined, Some("p"), 0, b"part").await;
    blobs.concat(joined, &["p".to_string()]).await.unwrap();
    blobs.delete(joined).await.unwrap();
    assert!(
        blobs.read(joined, 0, 4).await.is_err(),
        "a joined file goes with its parts"
    );
}
