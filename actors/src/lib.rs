//! The file-transfer lifecycle: the state machine, the per-transfer supervisors that drive it, the
//! upload pipeline, and the ports (traits) they need. No HTTP, SQL or object-store types appear here.

pub mod ports;
pub mod state;
pub mod supervisor;
pub mod upload;

pub use ports::{BlobStore, BlobWriter, Clock, LifecycleStore, SystemClock};
pub use state::{Phase, StoredFile, TransferState};
pub use supervisor::{Lifecycle, LifecycleError, UploadLease};
