//! The outbox port's rules: events committed with a transition read back once each, in order.

use super::{new_transfer, resource, t0, OWNER};
use crate::ports::metadata::TransferChange;
use crate::ports::{MetadataStore, Outbox};
use broker_protocol::events::{CloudEvent, EventRole, EventType};
use broker_protocol::FileTransferStatus;

/// Runs every rule of the outbox port against `outbox`, whose events `metadata` writes.
pub async fn outbox_suite(metadata: &dyn MetadataStore, outbox: &dyn Outbox) {
    resource(metadata, "o").await;
    let before = outbox.events_after(0, 1000).await.unwrap();
    let after = before.last().map_or(0, |e| e.sequence);
    let new = new_transfer("o", t0());
    let id = new.id;
    let event = |t| CloudEvent::new(t, id, "o", OWNER, EventRole::Sender, "test", t0());
    metadata
        .create_transfer(new, vec![event(EventType::FileTransferInitialized)], vec![])
        .await
        .unwrap();
    let change = TransferChange {
        new_status: Some((FileTransferStatus::UploadStarted, None)),
        events: vec![
            event(EventType::Published),
            event(EventType::UploadProcessing),
        ],
        ..TransferChange::new(id, FileTransferStatus::Initialized, 0, t0())
    };
    super::commit_current(metadata, change).await.unwrap();
    let refused = TransferChange {
        expected_status: FileTransferStatus::Initialized,
        expected_version: 0, // set by commit_current
        events: vec![event(EventType::FilePurged)],
        ..metadata_change(id)
    };
    assert!(super::commit_current(metadata, refused).await.is_err());
    let events = outbox.events_after(after, 1000).await.unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event.type_.clone()).collect();
    let expected: Vec<_> = [
        EventType::FileTransferInitialized,
        EventType::Published,
        EventType::UploadProcessing,
    ]
    .iter()
    .map(|t| event(*t).type_)
    .collect();
    assert_eq!(types, expected, "a refused change's events are not kept");
    assert!(events.windows(2).all(|w| w[0].sequence < w[1].sequence));
    let page = outbox.events_after(after, 2).await.unwrap();
    assert_eq!(page.len(), 2);
    let rest = outbox.events_after(page[1].sequence, 1000).await.unwrap();
    assert_eq!(rest.len(), 1);
}

fn metadata_change(id: uuid::Uuid) -> TransferChange {
    TransferChange {
        new_status: Some((FileTransferStatus::Published, None)),
        ..TransferChange::new(id, FileTransferStatus::Initialized, 0, t0())
    }
}
