//! Resumable uploads (tus 1.0.0, spec 4): the state the broker keeps for them between requests.

pub mod hashes;
