//! Blob storage adapters.

pub mod local;
