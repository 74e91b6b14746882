//! Downloads on the in-memory adapters with a clock the test moves: ranges of one recipient are
//! recorded once per window, and a file past its expiration time is refused.

use super::*;
use crate::ports::MetadataStore;
use crate::test_support::setup;
use crate::Error;
use broker_protocol::RecipientStatus;

async fn download_started_rows(s: &crate::test_support::Setup, id: Uuid) -> usize {
    let rows = s.store.recipient_history(id, 0, 1000).await.unwrap();
    rows.iter()
        .filter(|(_, r)| r.recipient_file_transfer_status_code == RecipientStatus::DownloadStarted)
        .count()
}

#[tokio::test]
async fn ranges_of_one_recipient_are_recorded_once_per_window_of_the_injected_clock() {
    let s = setup().await;
    let id = s.publish(b"a file read in ranges").await;
    let recipient = s.recipient();
    let download = s.broker.open_download(&recipient, id).await.unwrap();
    for start in [0, 5, 10] {
        s.broker
            .read_download(&download, start, 5, true, true)
            .await
            .unwrap();
        s.clock.advance(chrono::Duration::minutes(1));
    }
    assert_eq!(
        download_started_rows(&s, id).await,
        1,
        "three ranges within the window"
    );
    s.clock.advance(chrono::Duration::minutes(5));
    s.broker
        .read_download(&download, 15, 5, true, true)
        .await
        .unwrap();
    assert_eq!(
        download_started_rows(&s, id).await,
        2,
        "a range after the window"
    );
    s.broker
        .read_download(&download, 0, 20, false, true)
        .await
        .unwrap();
    assert_eq!(
        download_started_rows(&s, id).await,
        3,
        "a whole download is always recorded"
    );
}

#[tokio::test]
async fn a_file_past_its_expiration_time_on_the_injected_clock_is_refused() {
    let s = setup().await;
    let id = s.publish(b"soon expired").await;
    let recipient = s.recipient();
    assert!(s.broker.open_download(&recipient, id).await.is_ok());
    s.clock.advance(chrono::Duration::days(400));
    let refused = s.broker.open_download(&recipient, id).await;
    assert!(
        matches!(refused, Err(Error::Refused(ErrorCode::FileTransferExpired))),
        "{refused:?}"
    );
}
