//! Metadata adapters: the metadata, upload-session and outbox ports on an embedded SQLite database
//! (PostgreSQL follows on the same ports).

pub mod sqlite;

pub use async_trait::async_trait;
pub use broker_actors::ports::jobs::JobKey;
pub use broker_actors::ports::metadata::*;
pub use broker_actors::ports::upload_sessions::{Advance, PartAdmission, SessionRow};
pub use broker_actors::ports::StoreError;
pub use broker_protocol::events::{CloudEvent, OutboxEntry};
pub use broker_protocol::status::Role;
pub use broker_protocol::time::Timestamp;
pub use broker_protocol::transfer::{FileTransferStatusEntry, RecipientStatusEntry};
pub use broker_protocol::{FileTransferStatus, RecipientStatus};
pub use chrono::Duration;
pub use uuid::Uuid;
