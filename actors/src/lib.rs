//! The file-transfer lifecycle: the application's commands and queries ([`Broker`]), the state machine,
//! the per-transfer supervisors that drive it, the upload pipeline, and the ports (traits) they need.
//! No HTTP, SQL or object-store types appear here.

pub mod access;
mod binary_upload;
pub mod broker;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
pub mod download;
pub mod error;
pub mod fanout;
pub mod form_upload;
pub mod hashing;
mod initialize;
mod job_runtime;
pub mod local_signals;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
mod notifications;
pub mod ports;
pub mod query;
pub mod reports;
mod resources;
mod scan;
pub mod state;
pub mod statistics;
mod subscriptions;
pub mod supervisor;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod tus;
pub mod upload;
pub mod upload_leases;

pub use access::{Caller, MAX_FILE_SIZE, MAX_VIRUS_SCAN_SIZE};
pub use broker::{Broker, Ports, Settings};
pub use error::{Error, TusRefusal};
pub use ports::{BlobStore, BlobWriter, Clock, SystemClock};
pub use scan::{LargeFiles, ScanSettings};
pub use state::{Phase, StoredFile, TransferState};
pub use supervisor::{Lifecycle, UploadLease};

#[cfg(test)]
mod object_store_tests;

#[cfg(test)]
mod conformance_tests {
    use crate::conformance::*;
    use crate::memory::{MemoryBlobs, MemoryJobs, MemoryStore};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_brokers_on_the_in_memory_adapters_agree_on_every_transfer() {
        two_brokers_suite(crate::memory::memory_ports()).await;
    }

    #[tokio::test]
    async fn the_in_memory_store_keeps_the_lease_rules_by_its_own_clock() {
        use futures::FutureExt;
        let store = MemoryStore::default();
        let clock = std::sync::Arc::new(crate::memory::ManualClock::default());
        store.use_clock(clock.clone());
        let pass = move |ms: u64| {
            clock.advance(chrono::Duration::milliseconds(ms as i64));
            async {}.boxed()
        };
        leases_suite(&store, 30_000, &pass).await;
    }

    #[tokio::test]
    async fn the_in_memory_rate_limits_keep_the_rate_limit_rules() {
        rate_limits_suite(&crate::memory::MemoryRateLimits::default()).await;
    }

    #[tokio::test]
    async fn the_in_memory_metadata_store_keeps_the_metadata_rules() {
        metadata_store_suite(&MemoryStore::default()).await;
    }

    #[tokio::test]
    async fn the_in_memory_store_keeps_the_upload_session_rules() {
        let store = MemoryStore::default();
        upload_sessions_suite(&store, &store).await;
        fenced_writes_suite(&store, &store, &store).await;
    }

    #[tokio::test]
    async fn the_in_memory_outbox_keeps_the_outbox_rules() {
        let store = MemoryStore::default();
        outbox_suite(&store, &store).await;
    }

    #[tokio::test]
    async fn the_in_memory_store_keeps_the_delivery_and_subscription_rules() {
        let store = MemoryStore::default();
        deliveries_suite(&store, &store, &store).await;
    }

    #[tokio::test]
    async fn the_in_memory_statistics_count_the_scripted_month_as_computed_by_hand() {
        let store = MemoryStore::default();
        statistics_suite(&store, &store).await;
    }

    #[tokio::test]
    async fn the_in_memory_blob_store_keeps_the_blob_rules() {
        blob_store_suite(&MemoryBlobs::default()).await;
    }

    #[tokio::test]
    async fn the_strict_in_memory_blob_store_keeps_the_blob_rules_and_an_object_stores() {
        blob_store_suite(&MemoryBlobs::strict(64 << 10, 16)).await;
    }

    #[tokio::test]
    async fn the_in_memory_job_store_keeps_the_job_rules() {
        jobs_suite(&MemoryJobs::default()).await;
    }

    #[tokio::test]
    async fn the_in_memory_store_schedules_jobs_with_its_transitions() {
        let store = MemoryStore::default();
        transfer_jobs_suite(&store, store.jobs().as_ref()).await;
        jobs_suite(store.jobs().as_ref()).await;
    }
}
