//! The ports the lifecycle needs, one file each: where transfers live (metadata), resumable upload
//! sessions, bytes (blobs), the event outbox and its deliveries, event subscriptions, durable jobs, the virus scanner, the resource registry and
//! the clock. Adapters (SQLite, PostgreSQL, local disk, object stores, clamd) live in the server crate;
//! each port has an in-memory adapter and a conformance suite here (feature `testing`).

pub mod blobs;
pub mod clock;
pub mod jobs;
pub mod leases;
pub mod metadata;
pub mod notifier;
pub mod outbox;
pub mod rate_limits;
pub mod registry;
pub mod scanner;
pub mod signals;
pub mod statistics;
pub mod subscriptions;
pub mod upload_sessions;
pub mod webhooks;

pub use blobs::{
    complete_object, Batch, BlobError, BlobStore, BlobWriter, ByteStream, ObjectKey, PartName,
    PartRules, StoredPart,
};
pub use clock::{Clock, SystemClock};
pub use jobs::{ClaimedJob, JobKey, JobKind, Jobs};
pub use leases::{Acquired, Grant, Leases, Renewal};
pub use metadata::{MetadataStore, TransferChange, TransferRecord};
pub use notifier::{Channel, Notification, Notifier};
pub use outbox::{Attempt, AttemptOutcome, ClaimedDelivery, DeliveryRow, Outbox};
pub use rate_limits::{RateDecision, RateLimits};
pub use registry::{Registry, RegistryEntry};
pub use scanner::{ScanError, Scanner, Verdict};
pub use signals::{Signals, Wakeup};
pub use statistics::{DailyRow, RecipientType, Statistics};
pub use subscriptions::{NewSubscription, SubscriptionApi, SubscriptionRow, Subscriptions};
pub use upload_sessions::UploadSessions;
pub use webhooks::{WebhookAnswer, WebhookRequest, WebhookSender};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the transfer's status changed concurrently")]
    Conflict,
    #[error("the upload's lease was taken over")]
    LeaseLost,
    #[error("another request holds the upload's lease")]
    LeaseHeld,
    #[error("metadata store failure: {0}")]
    Failure(String),
}
