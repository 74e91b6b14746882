//! In-memory adapters for every port: for supervisor tests, for the conformance suites' own check, and
//! for anyone who wants to run the lifecycle without a disk. State lives in one process and is lost with
//! it; otherwise they keep every rule the durable adapters keep (conditional commits, idempotency keys,
//! the part limits), which the conformance suites check on both.

mod blobs;
mod clock;
mod deliveries;
mod jobs;
mod leases;
mod metadata;
mod notifier;
mod rate_limits;
mod scanner;
mod sessions;
mod statistics;
mod webhooks;

pub use blobs::MemoryBlobs;
pub use clock::ManualClock;
pub use jobs::MemoryJobs;
pub use metadata::MemoryStore;
pub use notifier::MemoryNotifier;
pub use rate_limits::MemoryRateLimits;
pub use scanner::{MemoryScanner, EICAR, EICAR_SIGNATURE};
pub use webhooks::MemoryWebhooks;

/// Every port on fresh in-memory adapters (one store for the metadata, sessions, outbox, jobs,
/// subscriptions and statistics), with the machine's clock, an open registry and no scanner.
pub fn memory_ports() -> crate::Ports {
    let store = std::sync::Arc::new(MemoryStore::default());
    crate::Ports {
        metadata: store.clone(),
        sessions: store.clone(),
        outbox: store.clone(),
        blobs: std::sync::Arc::new(MemoryBlobs::default()),
        clock: std::sync::Arc::new(crate::ports::SystemClock),
        registry: std::sync::Arc::new(crate::ports::Registry::Open),
        jobs: store.jobs(),
        scanner: None,
        subscriptions: store.clone(),
        webhooks: std::sync::Arc::new(MemoryWebhooks::default()),
        statistics: store.clone(),
        notifier: std::sync::Arc::new(MemoryNotifier::default()),
        leases: store.clone(),
        signals: std::sync::Arc::new(crate::local_signals::LocalSignals::default()),
    }
}
