//! Outgoing deliveries: signed webhook POSTs to subscribers' endpoints.

pub mod endpoint;
pub mod webhook;
