//! Outgoing deliveries: signed webhook POSTs to subscribers' endpoints, and e-mail and SMS to
//! contact points.

pub mod endpoint;
pub mod notify;
pub mod webhook;
