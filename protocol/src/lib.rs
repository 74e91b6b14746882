//! Wire types of the Altinn 3 Broker v1 API as Broker speaks it.
//!
//! Everything here is pure data and grammar: JSON bodies, status enums, the error catalogue, CloudEvent
//! payloads and the HTTP Range grammar. The optional `client` feature adds the HTTP client used by the
//! CLI, the benchmark and the black-box tests, a tus 1.0 upload client and a shared rate limiter.

pub mod duration;
pub mod events;
pub mod json;
pub mod notifications;
pub mod problem;
pub mod range;
pub mod resource;
pub mod size;
pub mod status;
pub mod subscriptions;
pub mod time;
pub mod transfer;
pub mod tus_headers;
pub mod webhooks;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod rate;
#[cfg(feature = "client")]
pub mod tus;

pub use problem::{ErrorCode, ProblemDetails};
pub use status::{FileTransferStatus, RecipientStatus};

/// Every API route starts with this prefix.
pub const API_BASE: &str = "/broker/api/v1";

/// The tus protocol version of resumable uploads (`Tus-Resumable`).
pub const TUS_VERSION: &str = "1.0.0";
/// The content type of a tus PATCH body.
pub const TUS_OFFSET_CONTENT_TYPE: &str = "application/offset+octet-stream";

/// OAuth scopes of the Altinn Broker API.
pub mod scopes {
    pub const WRITE: &str = "altinn:broker.write";
    pub const READ: &str = "altinn:broker.read";
    pub const SERVICE_OWNER: &str = "altinn:serviceowner";
    pub const MAINTENANCE: &str = "altinn:broker.maintenance";
    /// Altinn Events' scope for managing subscriptions.
    pub const EVENTS_SUBSCRIBE: &str = "altinn:events.subscribe";
}
