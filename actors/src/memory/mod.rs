//! In-memory adapters for every port: for supervisor tests, for the conformance suites' own check, and
//! for anyone who wants to run the lifecycle without a disk. State lives in one process and is lost with
//! it; otherwise they keep every rule the durable adapters keep (conditional commits, idempotency keys,
//! the part limits), which the conformance suites check on both.

mod blobs;
mod clock;
mod deliveries;
mod jobs;
mod metadata;
mod notifier;
mod scanner;
mod sessions;
mod statistics;
mod webhooks;

pub use blobs::MemoryBlobs;
pub use clock::ManualClock;
pub use jobs::MemoryJobs;
pub use metadata::MemoryStore;
pub use notifier::MemoryNotifier;
pub use scanner::{MemoryScanner, EICAR, EICAR_SIGNATURE};
pub use webhooks::MemoryWebhooks;
