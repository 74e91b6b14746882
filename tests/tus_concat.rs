//! tus concatenation: partial uploads sent in parallel and joined by a final POST, in any order of
//! creation, with the hashes of the whole.

use crate::common::*;
use crate::tus::*;
use broker_protocol::FileTransferStatus;

#[tokio::test]
async fn parallel_parts_are_concatenated_in_order_and_the_final_needs_every_part_complete() {
    let f = Fixture::new().await;
    let content = payload(2_500_000, 88);
    let id = f.initialize(&[RECIPIENT]).await;
    let (a, b) = content.split_at(1_000_000);
    let first = create_partial(&f, id, a.len()).await;
    let second = create_partial(&f, id, b.len()).await;
    assert!(first.contains("/partial/") && first != second);
    // The parts stream in parallel, second half first.
    let (r1, r2) = tokio::join!(
        patch_url(&f, &second, 0, &b[..700_000]),
        patch_url(&f, &first, 0, a)
    );
    assert_eq!((r1.status().as_u16(), r2.status().as_u16()), (204, 204));
    // A final upload over an incomplete part is refused and changes nothing.
    assert_eq!(finish(&f, id, &[&first, &second]).await.status(), 400);
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::UploadStarted
    );
    assert_eq!(
        patch_url(&f, &second, 700_000, &b[700_000..])
            .await
            .status(),
        204
    );
    let done = finish(&f, id, &[&first, &second]).await;
    assert_eq!(done.status(), 201);
    assert_eq!(
        done.headers()["upload-length"],
        content.len().to_string().as_str()
    );
    f.assert_published(id, &content).await;
    // Ranges span the parts.
    let r = f
        .recipient
        .download(id, Some("bytes=999990-1000009"))
        .await
        .unwrap();
    assert_eq!(
        r.bytes().await.unwrap().as_ref(),
        &content[999_990..1_000_010]
    );
}

#[tokio::test]
async fn a_final_upload_cannot_use_another_transfers_parts() {
    let f = Fixture::new().await;
    let other = f.initialize(&[RECIPIENT]).await;
    let part = create_partial(&f, other, 10).await;
    assert_eq!(patch_url(&f, &part, 0, &[1; 10]).await.status(), 204);
    let id = f.initialize(&[RECIPIENT]).await;
    create(&f, id, 10).await;
    expect_tus_refusal(
        finish(&f, id, &[&part]).await,
        400,
        "is not a partial upload of this file transfer",
    )
    .await;
    // The other transfer's part is untouched: its ten bytes are there, and it joins them.
    assert_eq!(part_state(&f, &part).await, (10, 10));
    assert_eq!(finish(&f, other, &[&part]).await.status(), 201);
    f.assert_published(other, &[1; 10]).await;
    assert_eq!(
        f.sender
            .overview(id)
            .await
            .unwrap()
            .summary
            .file_transfer_status,
        FileTransferStatus::UploadStarted
    );
}

#[tokio::test]
async fn parts_created_at_the_same_time_all_get_their_own_upload() {
    let f = Fixture::new().await;
    let id = f.initialize(&[RECIPIENT]).await;
    let parts = futures::future::join_all((0..6).map(|_| create_partial(&f, id, 1000))).await;
    let distinct: std::collections::HashSet<_> = parts.iter().collect();
    assert_eq!(distinct.len(), 6);
}

#[tokio::test]
async fn parts_joined_in_another_order_than_created_still_publish_the_right_hashes() {
    let f = Fixture::new().await;
    let content = payload(3_000_000, 17);
    let id = f.initialize(&[RECIPIENT]).await;
    let (head, tail) = content.split_at(1_000_000);
    // Created tail first: the broker starts hashing it, then the final puts it last.
    let second = create_partial(&f, id, tail.len()).await;
    let first = create_partial(&f, id, head.len()).await;
    assert_eq!(patch_url(&f, &second, 0, tail).await.status(), 204);
    assert_eq!(patch_url(&f, &first, 0, head).await.status(), 204);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(finish(&f, id, &[&first, &second]).await.status(), 201);
    f.assert_published(id, &content).await;
}

#[tokio::test]
async fn many_parts_sent_in_pieces_publish_the_hashes_of_the_whole_in_part_order() {
    let f = Fixture::new().await;
    let content = payload(4_000_000, 29);
    let id = f.initialize(&[RECIPIENT]).await;
    let pieces: Vec<&[u8]> = content.chunks(1_000_000).collect();
    let mut urls = Vec::new();
    for piece in &pieces {
        urls.push(create_partial(&f, id, piece.len()).await);
    }
    // Each part in two PATCHes, the last part first.
    for (url, piece) in urls.iter().zip(&pieces).rev() {
        let (a, b) = piece.split_at(400_000);
        assert_eq!(patch_url(&f, url, 0, a).await.status(), 204);
        assert_eq!(patch_url(&f, url, a.len() as u64, b).await.status(), 204);
    }
    let listed: Vec<&str> = urls.iter().map(String::as_str).collect();
    assert_eq!(finish(&f, id, &listed).await.status(), 201);
    f.assert_published(id, &content).await;
}
