//! One conformance suite per port (metadata, upload sessions, blobs, outbox and deliveries, subscriptions, jobs, statistics): public functions an adapter's tests call with a fresh adapter, so
//! every adapter (in memory, SQLite, local disk; PostgreSQL and object stores later) keeps the same
//! rules. A suite panics, naming the rule, at the first one broken.

mod blobs;
mod deliveries;
mod jobs;
mod leases;
mod metadata;
mod nodes;
mod outbox;
mod rate_limits;
mod sessions;
mod statistics;

pub use blobs::blob_store_suite;
pub use deliveries::deliveries_suite;
pub use jobs::{jobs_suite, transfer_jobs_suite};
pub use leases::{leases_suite, PassTime};
pub use metadata::metadata_store_suite;
pub use nodes::{suite_settings, two_brokers_suite};
pub use outbox::outbox_suite;
pub use rate_limits::rate_limits_suite;
pub use sessions::{fenced_writes_suite, upload_sessions_suite};
pub use statistics::statistics_suite;

use crate::ports::metadata::{NewTransfer, ResourceRow};
use crate::ports::{MetadataStore, TransferChange};
use broker_protocol::time::Timestamp;
use broker_protocol::FileTransferStatus;
use uuid::Uuid;

pub const OWNER: &str = "0192:111111111";
pub const RECIPIENT: &str = "0192:222222222";

/// A fixed instant, so suites do not depend on the machine's clock.
pub fn t0() -> Timestamp {
    chrono::DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
        .expect("a valid instant")
        .with_timezone(&chrono::Utc)
}

/// Commits `change` at the transfer's current version (the suites test the status guard with it; the
/// version guard has its own rule).
pub async fn commit_current(
    store: &(impl MetadataStore + ?Sized),
    mut change: crate::ports::TransferChange,
) -> Result<(), crate::ports::StoreError> {
    if let Some(record) = store.load_transfer(change.id).await? {
        change.expected_version = record.version;
    }
    store.commit_change(change).await.map(|_| ())
}

/// A change moving the transfer from one status to another a minute after [`t0`], and nothing else.
pub(crate) fn status_change(
    id: uuid::Uuid,
    from: FileTransferStatus,
    to: FileTransferStatus,
) -> TransferChange {
    TransferChange {
        new_status: Some((to, None)),
        ..TransferChange::new(id, from, 0, t0() + chrono::Duration::minutes(1))
    }
}

/// Makes sure the service owner and the resource `resource` exist.
pub async fn resource(store: &dyn MetadataStore, resource: &str) {
    store
        .create_service_owner(OWNER, "Owner", t0())
        .await
        .expect("create service owner");
    let row = ResourceRow {
        id: resource.into(),
        service_owner_id: OWNER.into(),
        ..Default::default()
    };
    assert!(store.save_resource(row, t0()).await.expect("save resource"));
}

/// A new transfer on `resource` from [`OWNER`] to [`RECIPIENT`], created at `at`.
pub fn new_transfer(resource: &str, at: Timestamp) -> NewTransfer {
    NewTransfer {
        id: Uuid::new_v4(),
        resource_id: resource.into(),
        file_name: "report.pdf".into(),
        senders_reference: Some("ref".into()),
        sender: OWNER.into(),
        sender_org: OWNER.into(),
        sender_vendor: None,
        recipients: vec![RECIPIENT.into()],
        property_list: [("k".to_string(), "v".to_string())].into(),
        declared_checksum: None,
        use_virus_scan: false,
        created: at,
        expiration_time: at + chrono::Duration::days(30),
        idempotency: None,
    }
}
