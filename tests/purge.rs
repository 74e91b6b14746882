//! Purges in real time (spec 7.2): a resource whose files live five seconds sees them Purged within
//! moments of their expiration, also when the broker was stopped across that time.

use crate::common::*;
use crate::support::*;
use broker_protocol::resource::ResourceUpdate;
use broker_protocol::FileTransferStatus;
use std::time::{Duration, Instant};

async fn live_five_seconds(f: &Fixture) {
    let update = ResourceUpdate {
        file_transfer_time_to_live: Some("PT5S".into()),
        ..Default::default()
    };
    f.owner.configure_resource(RESOURCE, &update).await.unwrap();
}

#[tokio::test]
async fn a_file_of_a_resource_with_a_five_second_ttl_is_purged_moments_after_it_expires() {
    // Timed (purged within moments of its expiry): alone on the cores.
    let _alone = cpu_exclusive().await;
    let f = Fixture::new().await;
    live_five_seconds(&f).await;
    let started = Instant::now();
    let id = f.publish(&[RECIPIENT], b"five seconds to live").await;
    let overview = wait_for_status(
        &f.sender,
        id,
        FileTransferStatus::Purged,
        Duration::from_secs(20),
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(4),
        "not before its expiration: {took:?}"
    );
    assert!(
        took < Duration::from_secs(9),
        "within moments of it: {took:?}"
    );
    assert_eq!(
        overview.summary.file_transfer_status,
        FileTransferStatus::Purged
    );
    let events = event_types_of(&f.maintenance, id).await;
    assert!(events.contains(&"filepurged".to_string()), "{events:?}");
    assert!(
        events.contains(&"fileneverconfirmeddownloaded".to_string()),
        "{events:?}"
    );
    let refused = f.recipient.download(id, None).await.unwrap_err();
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(403), Some("BRO-00007")),
        "a purged file is not ready for download (spec 1.8)"
    );
}

#[tokio::test]
async fn a_purge_due_while_the_broker_was_stopped_runs_when_it_starts_again() {
    // Timed (purged within 3 s of the start): alone on the cores.
    let _alone = cpu_exclusive().await;
    let f = Fixture::new().await;
    live_five_seconds(&f).await;
    let id = f
        .publish(&[RECIPIENT], b"expires while the broker is down")
        .await;
    let server = f
        .server
        .restart_after(tokio::time::sleep(Duration::from_secs(6)))
        .await;
    let f = Fixture::clients(server);
    let started = Instant::now();
    wait_for_status(
        &f.sender,
        id,
        FileTransferStatus::Purged,
        Duration::from_secs(20),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "purged right after the start: {:?}",
        started.elapsed()
    );
    let events = event_types_of(&f.maintenance, id).await;
    assert_eq!(
        events.iter().filter(|e| *e == "filepurged").count(),
        1,
        "{events:?}"
    );
}
