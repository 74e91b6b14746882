//! Blob storage adapters.

pub mod inline;
pub mod local;
