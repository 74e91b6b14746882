//! Uploads through the broker on a blob store that keeps an object store's rules (the strict
//! in-memory store): every way of uploading ends in an object the store accepts, so the object store
//! adapters that follow need no upload logic of their own.

use crate::ports::{BlobStore, ObjectKey, UploadSessions};
use crate::test_support::{chunked, hex, patch, published, setup_on_an_object_store, Setup};
use bytes::Bytes;
use futures::StreamExt;
use sha2::Digest;
use uuid::Uuid;

fn content(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| ((i * seed) % 251) as u8).collect()
}

async fn assert_stored(s: &Setup, id: Uuid, content: &[u8]) {
    let view = published(s, id).await;
    assert_eq!(
        view.sha256.as_deref(),
        Some(hex(&sha2::Sha256::digest(content)).as_str())
    );
    assert_eq!(
        view.checksum.as_deref(),
        Some(hex(&md5::Md5::digest(content)).as_str())
    );
    let file = ObjectKey::file(id);
    let from = content.len() as u64 / 3;
    let len = (content.len() as u64 - from).min(70_000);
    let mut range = s
        .blobs
        .read(&file, from, len)
        .await
        .expect("the file reads");
    let mut got = Vec::new();
    while let Some(chunk) = range.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, &content[from as usize..(from + len) as usize]);
}

async fn tus_create(s: &Setup, id: Uuid, length: Option<usize>) {
    s.broker
        .tus_create::<futures::stream::Empty<Result<Bytes, String>>, String>(
            &s.sender,
            id,
            length.map(|l| l as u64),
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_binary_upload_on_an_object_store_is_published_and_reads_by_range() {
    let s = setup_on_an_object_store().await;
    let bytes = content(300_000, 7);
    let id = s.publish(&bytes).await;
    assert_stored(&s, id, &bytes).await;
}

#[tokio::test]
async fn a_resumable_upload_in_patches_smaller_than_a_part_stages_each_tail_and_is_published() {
    let s = setup_on_an_object_store().await;
    let bytes = content(300_000, 11);
    let id = s.initialize(None).await;
    tus_create(&s, id, Some(bytes.len())).await;
    let (mut offset, mut tail) = (0usize, 0usize);
    for piece in bytes.chunks(10_000) {
        let moved = s
            .broker
            .tus_patch(&s.sender, id, None, offset as u64, patch(piece))
            .await
            .unwrap();
        offset += piece.len();
        tail += piece.len();
        assert_eq!(moved, offset as u64);
        if offset == bytes.len() {
            break;
        }
        let row = s.store.get(id, "").await.unwrap().unwrap();
        if tail >= 64 << 10 {
            assert_eq!(row.staged, None, "a part of the minimum size is not staged");
            tail = 0;
        } else {
            let staged = row.staged.expect("a tail smaller than a part is staged");
            assert_eq!(
                staged,
                &bytes[offset - tail..offset],
                "every byte since the last part"
            );
        }
    }
    assert_stored(&s, id, &bytes).await;
}

#[tokio::test]
async fn a_resumable_upload_resumed_on_a_new_broker_after_a_staged_tail_is_published() {
    let s = setup_on_an_object_store().await;
    let bytes = content(400_000, 13);
    let id = s.initialize(None).await;
    tus_create(&s, id, Some(bytes.len())).await;
    let sends = [(0, 150_000), (150_000, 155_000)];
    for (from, to) in sends {
        let body = chunked(&bytes[from..to]);
        s.broker
            .tus_patch(&s.sender, id, None, from as u64, body)
            .await
            .unwrap();
    }
    let row = s.store.get(id, "").await.unwrap().unwrap();
    assert_eq!(
        row.staged.as_deref(),
        Some(&bytes[150_000..155_000]),
        "the first PATCH made a whole part; the second's 5,000 bytes are staged"
    );
    let restarted = s.restart();
    restarted
        .broker
        .tus_patch(
            &restarted.sender,
            id,
            None,
            155_000,
            chunked(&bytes[155_000..]),
        )
        .await
        .unwrap();
    assert_stored(&restarted, id, &bytes).await;
    assert_eq!(
        restarted.blobs.file_bytes_read(),
        70_000,
        "nothing was read back but the range the test read (the hashes' state was kept)"
    );
}

#[tokio::test]
async fn a_deferred_length_upload_on_an_object_store_is_published() {
    let s = setup_on_an_object_store().await;
    let bytes = content(200_000, 17);
    let id = s.initialize(None).await;
    tus_create(&s, id, None).await;
    let mut offset = 0usize;
    let pieces: Vec<&[u8]> = bytes.chunks(30_000).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let mut body = patch(piece);
        if i + 1 == pieces.len() {
            body.new_length = Some(bytes.len() as u64);
        }
        s.broker
            .tus_patch(&s.sender, id, None, offset as u64, body)
            .await
            .unwrap();
        offset += piece.len();
    }
    assert_stored(&s, id, &bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_sent_in_parallel_to_an_object_store_compose_into_the_published_file() {
    let s = setup_on_an_object_store().await;
    let bytes = content(230_000, 19);
    let pieces: Vec<&[u8]> = vec![
        &bytes[..100_000],
        &bytes[100_000..200_000],
        &bytes[200_000..],
    ];
    let id = s.initialize(None).await;
    let parts = s.create_parts(id, &pieces).await;
    // The last piece first: it cannot be read before it is completed, and is hashed after the others.
    s.send_parts(id, parts.iter().zip(pieces.iter().copied()).rev())
        .await;
    assert_eq!(s.join_parts(id, &parts).await, bytes.len() as u64);
    assert_stored(&s, id, &bytes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_file_sent_in_pieces_smaller_than_a_part_is_published_from_a_copy() {
    let s = setup_on_an_object_store().await;
    let bytes = content(70_000, 23);
    let pieces: Vec<&[u8]> = vec![&bytes[..30_000], &bytes[30_000..60_000], &bytes[60_000..]];
    let id = s.initialize(None).await;
    let parts = s.create_parts(id, &pieces).await;
    s.send_parts(id, parts.iter().zip(pieces.iter().copied()))
        .await;
    assert_eq!(s.join_parts(id, &parts).await, bytes.len() as u64);
    assert_stored(&s, id, &bytes).await;
}
