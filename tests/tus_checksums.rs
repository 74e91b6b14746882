//! tus's checksum extension: a PATCH whose Upload-Checksum does not match its body is 460 and moves
//! nothing; an algorithm the server does not offer is 400.

use crate::common::*;
use crate::tus::*;

#[tokio::test]
async fn a_chunk_checksum_mismatch_is_460_and_the_offset_does_not_move() {
    let f = Fixture::new().await;
    let content = payload(300_000, 31);
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, content.len() as u64).await;
    let first = &content[..100_000];
    let r = patch_with_checksum(&f, id, 0, first, &upload_checksum("sha1", first)).await;
    assert_eq!(r.status(), 204);
    let second = &content[100_000..200_000];
    let wrong = patch_with_checksum(
        &f,
        id,
        100_000,
        second,
        &upload_checksum("md5", &content[..10]),
    )
    .await;
    assert_eq!(wrong.status(), 460);
    assert_eq!(head_offset(&f, id).await, 100_000);
    let r = patch_with_checksum(&f, id, 100_000, second, &upload_checksum("sha256", second)).await;
    assert_eq!(r.status(), 204);
    let r = patch_with_checksum(
        &f,
        id,
        200_000,
        &content[200_000..],
        &upload_checksum("md5", &content[200_000..]),
    )
    .await;
    assert_eq!(r.status(), 204);
    let overview = f.recipient.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.sha256.as_deref(),
        Some(sha256_hex(&content).as_str())
    );
    f.assert_recipient_downloads(id, &content).await;
}

#[tokio::test]
async fn an_unsupported_checksum_algorithm_is_400() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, 10).await;
    let r = patch_with_checksum(&f, id, 0, &[0; 10], "crc32 AAAA").await;
    assert_eq!(r.status(), 400);
    assert_eq!(head_offset(&f, id).await, 0);
}
