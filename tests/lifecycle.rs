//! The whole lifecycle through the public API.

use crate::common::*;
use broker_protocol::{FileTransferStatus, RecipientStatus};

#[tokio::test]
async fn a_file_travels_from_sender_to_recipient_and_is_confirmed() {
    let f = Fixture::new().await;
    let content = payload(300_000, 7);
    let id = f.publish(&[RECIPIENT], &content).await;

    let overview = f.recipient.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Published
    );
    assert_eq!(overview.summary.file_transfer_size, content.len() as i64);
    assert_eq!(
        overview.summary.checksum.as_deref(),
        Some(md5_hex(&content).as_str())
    );
    assert_eq!(
        overview.summary.sha256.as_deref(),
        Some(sha256_hex(&content).as_str())
    );
    assert!(overview.published.is_some());
    assert!(!overview.summary.use_virus_scan);

    let found = f
        .recipient
        .search(&[
            ("resourceId", RESOURCE),
            ("status", "Published"),
            ("recipientStatus", "Initialized"),
        ])
        .await
        .unwrap();
    assert_eq!(found, vec![id]);

    let body = f
        .recipient
        .download(id, None)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&body), sha256_hex(&content));

    f.recipient.confirm_download(id).await.unwrap();
    let overview = f.sender.overview(id).await.unwrap();
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::AllConfirmedDownloaded
    );
    assert_eq!(
        overview.summary.recipients[0].current_recipient_file_transfer_status_code,
        RecipientStatus::DownloadConfirmed
    );
}
