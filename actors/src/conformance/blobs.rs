//! The blob port's rules: immutable parts named by their first byte and their grant, listed once
//! sealed; objects completed from a chain of them and read only then, whole or by range; the newest
//! grant's parts chosen over a stale holder's; pieces composed into a file; the store's part rules;
//! removal.

use crate::ports::blobs::{chain, complete_object};
use crate::ports::{BlobError, BlobStore, ObjectKey, PartName};
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use uuid::Uuid;

/// Runs every rule of the blob port against `blobs` (a fresh store).
pub async fn blob_store_suite(blobs: &dyn BlobStore) {
    sealed_parts_are_listed_and_nothing_reads_before_completion(blobs).await;
    a_completed_object_reads_whole_and_by_range_and_completing_again_changes_nothing(blobs).await;
    a_stale_holders_late_part_loses_to_the_newest_grant(blobs).await;
    a_chain_with_a_gap_is_refused_and_leaves_the_parts(blobs).await;
    the_stores_part_rules_hold(blobs).await;
    an_upload_read_before_completion_reads_its_parts_in_order_or_is_refused(blobs).await;
    completed_pieces_compose_into_the_file(blobs).await;
    aborted_and_deleted_objects_are_gone_and_removing_again_succeeds(blobs).await;
    blobs
        .check()
        .await
        .expect("the store answers its health check");
}

/// Bytes per part in the suite: at least the store's minimum, so every rule but the size rule can be
/// checked on stores that have one.
fn unit(blobs: &dyn BlobStore) -> usize {
    (blobs.rules().min_part as usize).max(4)
}

fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn batch(bytes: &[u8]) -> crate::ports::Batch {
    // Split in two chunks (one possibly empty) to exercise batches of several chunks.
    let half = bytes.len() / 2;
    Arc::new(vec![
        Bytes::copy_from_slice(&bytes[..half]),
        Bytes::new(),
        Bytes::copy_from_slice(&bytes[half..]),
    ])
}

async fn collect(stream: crate::ports::ByteStream) -> Vec<u8> {
    let mut stream = stream;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("a chunk reads"));
    }
    out
}

async fn read(blobs: &dyn BlobStore, key: &ObjectKey, start: u64, len: u64) -> Vec<u8> {
    collect(blobs.read(key, start, len).await.expect("the object reads")).await
}

/// Writes `pieces` as consecutive parts from `start` under `token` (one sync between each).
async fn write(blobs: &dyn BlobStore, key: &ObjectKey, start: u64, token: u64, pieces: &[&[u8]]) {
    let mut writer = blobs
        .write_parts(key, start, token)
        .await
        .expect("a writer opens");
    for (i, piece) in pieces.iter().enumerate() {
        if i > 0 {
            writer.sync().await.expect("a part is sealed");
        }
        writer.append(batch(piece)).await.expect("append");
    }
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    assert_eq!(
        writer.commit().await.expect("commit"),
        total as u64,
        "commit returns the bytes this writer wrote"
    );
}

fn name(start: usize, token: u64) -> PartName {
    PartName {
        start: start as u64,
        token,
    }
}

async fn sealed_parts_are_listed_and_nothing_reads_before_completion(blobs: &dyn BlobStore) {
    let key = ObjectKey::file(Uuid::new_v4());
    let u = unit(blobs);
    let data = content(3 * u, 1);
    let mut writer = blobs.write_parts(&key, 0, 7).await.unwrap();
    writer.append(batch(&data[..u])).await.unwrap();
    assert!(
        blobs.list_parts(&key).await.unwrap().is_empty(),
        "a part being written is not listed"
    );
    writer.sync().await.unwrap();
    writer.append(batch(&data[u..2 * u])).await.unwrap();
    writer.sync().await.unwrap();
    writer.append(batch(&data[2 * u..])).await.unwrap();
    drop(writer);
    let mut listed = blobs.list_parts(&key).await.unwrap();
    listed.sort_by_key(|p| p.name);
    let names: Vec<(PartName, u64)> = listed.iter().map(|p| (p.name, p.len)).collect();
    assert_eq!(
        names,
        vec![(name(0, 7), u as u64), (name(u, 7), u as u64)],
        "each sync seals a part named by its first byte and grant; a dropped writer's unsealed bytes are not listed"
    );
    assert!(
        blobs.read(&key, 0, 1).await.is_err(),
        "nothing is readable before the object is completed"
    );
    assert_eq!(blobs.completed_len(&key).await.unwrap(), None);
}

async fn a_completed_object_reads_whole_and_by_range_and_completing_again_changes_nothing(
    blobs: &dyn BlobStore,
) {
    let key = ObjectKey::file(Uuid::new_v4());
    let u = unit(blobs);
    let data = content(2 * u + 3, 2);
    write(blobs, &key, 0, 3, &[&data[..u], &data[u..]]).await;
    let parts = blobs.list_parts(&key).await.unwrap();
    let chosen = chain(&parts, data.len() as u64).expect("the parts make the object");
    let names: Vec<PartName> = chosen.iter().map(|p| p.name).collect();
    assert_eq!(
        blobs.complete(&key, &names).await.unwrap(),
        data.len() as u64,
        "complete returns the object's length"
    );
    assert_eq!(read(blobs, &key, 0, data.len() as u64).await, data);
    let (from, len) = (u as u64 - 2, 5u64);
    assert_eq!(
        read(blobs, &key, from, len).await,
        &data[from as usize..(from + len) as usize],
        "a range spans two parts"
    );
    assert!(read(blobs, &key, 3, 0).await.is_empty());
    assert_eq!(
        read(blobs, &key, data.len() as u64 - 2, 100).await,
        &data[data.len() - 2..],
        "a range past the end stops at the end"
    );
    assert_eq!(
        blobs.completed_len(&key).await.unwrap(),
        Some(data.len() as u64)
    );
    assert!(
        blobs.list_parts(&key).await.unwrap().is_empty(),
        "a completed object lists no parts"
    );
    assert_eq!(
        blobs.complete(&key, &names).await.unwrap(),
        data.len() as u64,
        "completing again changes nothing"
    );
    assert!(
        blobs.write_parts(&key, 0, 4).await.is_err(),
        "a completed object takes no more parts"
    );
    complete_object(blobs, &key, data.len() as u64)
        .await
        .expect("complete_object leaves a completed object of that length");
    let empty = ObjectKey::file(Uuid::new_v4());
    assert_eq!(blobs.complete(&empty, &[]).await.unwrap(), 0);
    assert!(
        read(blobs, &empty, 0, 10).await.is_empty(),
        "an object completed from no part is empty"
    );
}

async fn a_stale_holders_late_part_loses_to_the_newest_grant(blobs: &dyn BlobStore) {
    let key = ObjectKey::file(Uuid::new_v4());
    let u = unit(blobs);
    let (old, new) = (content(3 * u, 3), content(3 * u, 4));
    // Grant 5 acknowledged its first part, then stalled; grant 6 took over at byte u and finished.
    write(blobs, &key, 0, 5, &[&old[..u]]).await;
    write(blobs, &key, u as u64, 6, &[&new[u..2 * u], &new[2 * u..]]).await;
    // Grant 5 wakes up and writes where it had got to.
    write(blobs, &key, u as u64, 5, &[&old[u..2 * u], &old[2 * u..]]).await;
    complete_object(blobs, &key, 3 * u as u64)
        .await
        .expect("the newest grant's parts make the object");
    let mut expected = old[..u].to_vec();
    expected.extend_from_slice(&new[u..]);
    assert_eq!(
        read(blobs, &key, 0, 3 * u as u64).await,
        expected,
        "the late parts of the stale holder are not in the object"
    );
}

async fn a_chain_with_a_gap_is_refused_and_leaves_the_parts(blobs: &dyn BlobStore) {
    let key = ObjectKey::file(Uuid::new_v4());
    let u = unit(blobs);
    let data = content(3 * u, 5);
    write(blobs, &key, 0, 1, &[&data[..u]]).await;
    write(blobs, &key, 2 * u as u64, 1, &[&data[2 * u..]]).await;
    let gap = [name(0, 1), name(2 * u, 1)];
    assert!(
        blobs.complete(&key, &gap).await.is_err(),
        "parts that do not follow each other are refused"
    );
    assert!(
        blobs.complete(&key, &[name(0, 9)]).await.is_err(),
        "a part never sealed is refused"
    );
    assert!(complete_object(blobs, &key, 3 * u as u64).await.is_err());
    assert_eq!(blobs.completed_len(&key).await.unwrap(), None);
    assert_eq!(
        blobs.list_parts(&key).await.unwrap().len(),
        2,
        "a refused completion changes nothing"
    );
    write(blobs, &key, u as u64, 1, &[&data[u..2 * u]]).await;
    complete_object(blobs, &key, 3 * u as u64).await.unwrap();
    assert_eq!(read(blobs, &key, 0, 3 * u as u64).await, data);
}

async fn the_stores_part_rules_hold(blobs: &dyn BlobStore) {
    let rules = blobs.rules();
    let u = unit(blobs);
    if rules.min_part > 1 {
        let key = ObjectKey::file(Uuid::new_v4());
        let data = content(2 * u, 6);
        let short = rules.min_part as usize - 1;
        write(blobs, &key, 0, 1, &[&data[..short], &data[short..]]).await;
        let names = [name(0, 1), name(short, 1)];
        assert!(
            blobs.complete(&key, &names).await.is_err(),
            "a part but the last smaller than the minimum is refused"
        );
        let tail = ObjectKey::file(Uuid::new_v4());
        write(blobs, &tail, 0, 1, &[&data[..u], &data[u..u + 1]]).await;
        assert_eq!(
            blobs
                .complete(&tail, &[name(0, 1), name(u, 1)])
                .await
                .unwrap(),
            u as u64 + 1,
            "the last part may be small"
        );
    }
    if rules.max_parts < 1_000 {
        let key = ObjectKey::file(Uuid::new_v4());
        let data = content(u * (rules.max_parts + 1), 7);
        let pieces: Vec<&[u8]> = data.chunks(u).collect();
        write(blobs, &key, 0, 1, &pieces).await;
        assert!(
            complete_object(blobs, &key, data.len() as u64)
                .await
                .is_err(),
            "more parts than the store allows are refused"
        );
    }
}

async fn an_upload_read_before_completion_reads_its_parts_in_order_or_is_refused(
    blobs: &dyn BlobStore,
) {
    let key = ObjectKey::file(Uuid::new_v4());
    let u = unit(blobs);
    let data = content(2 * u, 8);
    write(blobs, &key, 0, 1, &[&data[..u], &data[u..]]).await;
    let parts = [name(0, 1), name(u, 1)];
    match blobs.read_parts(&key, &parts, 0, data.len() as u64).await {
        Ok(stream) => {
            assert!(blobs.rules().parts_readable);
            assert_eq!(collect(stream).await, data);
            let range = blobs
                .read_parts(&key, &parts, u as u64 - 1, 2)
                .await
                .unwrap();
            assert_eq!(
                collect(range).await,
                &data[u - 1..u + 1],
                "a range spans parts"
            );
        }
        Err(BlobError::Refused(_)) => assert!(
            !blobs.rules().parts_readable,
            "only a store whose rules say so may refuse"
        ),
        Err(e) => panic!("reading sealed parts failed: {e}"),
    }
}

async fn completed_pieces_compose_into_the_file(blobs: &dyn BlobStore) {
    let id = Uuid::new_v4();
    let u = unit(blobs);
    let (a, b) = (content(u + 1, 9), content(3, 10));
    let (ka, kb) = (ObjectKey::piece(id, "a"), ObjectKey::piece(id, "b"));
    // The second piece is written first: pieces stream in parallel.
    write(blobs, &kb, 0, 2, &[&b]).await;
    write(blobs, &ka, 0, 1, &[&a]).await;
    assert!(
        blobs.read(&ka, 0, 1).await.is_err(),
        "a piece is not read before it is completed"
    );
    complete_object(blobs, &ka, a.len() as u64).await.unwrap();
    complete_object(blobs, &kb, b.len() as u64).await.unwrap();
    assert_eq!(
        read(blobs, &kb, 1, 2).await,
        &b[1..],
        "a completed piece reads by range"
    );
    let pieces = ["a".to_string(), "b".to_string()];
    let total = (a.len() + b.len()) as u64;
    assert_eq!(blobs.compose(id, &pieces).await.unwrap(), total);
    let file = ObjectKey::file(id);
    let mut whole = a.clone();
    whole.extend_from_slice(&b);
    assert_eq!(read(blobs, &file, 0, total).await, whole);
    assert_eq!(
        read(blobs, &file, u as u64 - 1, 4).await,
        &whole[u - 1..u + 3],
        "a range spans the pieces"
    );
    assert_eq!(blobs.completed_len(&file).await.unwrap(), Some(total));
    assert_eq!(
        blobs.compose(id, &pieces).await.unwrap(),
        total,
        "composing a completed file again changes nothing"
    );
    let missing = Uuid::new_v4();
    assert!(
        blobs.compose(missing, &["x".to_string()]).await.is_err(),
        "a piece not completed cannot be composed"
    );
}

async fn aborted_and_deleted_objects_are_gone_and_removing_again_succeeds(blobs: &dyn BlobStore) {
    let id = Uuid::new_v4();
    let u = unit(blobs);
    let data = content(u, 11);
    let piece = ObjectKey::piece(id, "p");
    write(blobs, &piece, 0, 1, &[&data]).await;
    blobs.abort(&piece).await.unwrap();
    assert!(blobs.list_parts(&piece).await.unwrap().is_empty());
    blobs.abort(&piece).await.expect("aborting again succeeds");
    write(blobs, &piece, 0, 2, &[&data[..1]]).await;
    complete_object(blobs, &piece, 1).await.unwrap();
    assert_eq!(
        read(blobs, &piece, 0, 10).await,
        &data[..1],
        "an aborted piece starts over"
    );
    blobs.abort(&piece).await.unwrap();
    assert!(
        blobs.read(&piece, 0, 1).await.is_err(),
        "aborting removes a completed object too"
    );

    let file = ObjectKey::file(id);
    write(blobs, &file, 0, 3, &[&data]).await;
    complete_object(blobs, &file, u as u64).await.unwrap();
    write(blobs, &ObjectKey::piece(id, "q"), 0, 3, &[&data]).await;
    blobs.delete(id).await.unwrap();
    assert!(matches!(
        blobs.read(&file, 0, 1).await.err(),
        Some(BlobError::NotFound | BlobError::Io(_))
    ));
    assert!(blobs
        .list_parts(&ObjectKey::piece(id, "q"))
        .await
        .unwrap()
        .is_empty());
    blobs
        .delete(id)
        .await
        .expect("removing a missing transfer succeeds");
    let composed = Uuid::new_v4();
    let p = ObjectKey::piece(composed, "p");
    write(blobs, &p, 0, 1, &[&data]).await;
    complete_object(blobs, &p, u as u64).await.unwrap();
    blobs.compose(composed, &["p".to_string()]).await.unwrap();
    blobs.delete(composed).await.unwrap();
    assert!(
        blobs.read(&ObjectKey::file(composed), 0, 1).await.is_err(),
        "a composed file goes with its pieces"
    );
}
