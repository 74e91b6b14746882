//! Resumable uploads (tus 1.0.0, spec 4): creation (with upload, with deferred length), HEAD, PATCH,
//! termination, concatenation and expiration, and the verification that follows the last byte.
//!
//! Every PATCH holds the upload's lease in the store (the transfer's own through its supervisor, a part
//! its own), so one request on one node advances an upload at a time; a newer request asks the holder to
//! stop and is woken when it lets go. The offset moves only under the holder's grant (fenced). The bytes stream through the same pipeline as a binary upload,
//! continuing the upload's MD5 and SHA-256 state; the offset is acknowledged only once the bytes are
//! synced and the session's offset has moved (conditionally), in the same write as the hashes' state
//! at that offset: the next PATCH, on this process or another, continues the hashes without reading
//! the stored bytes back (only a state in an unknown format is rebuilt from the durable prefix).

mod append;
mod checksum;
mod concat;
mod expiry;
mod part_hashing;
mod session;
mod verify;

#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod tests;

pub use append::Patch;
pub use checksum::UploadChecksum;
pub use session::UploadState;
#[cfg(any(test, feature = "testing"))]
pub(crate) use verify::VERIFICATION_CLAIM;

/// What the broker keeps of resumable uploads between requests, in this process. Still to move behind
/// ports for several nodes: the part hashing position (a restart, or another node, hashes the joined
/// file by reading it back).
#[derive(Default)]
pub(crate) struct TusState {
    /// Concatenated uploads hashed in part order while their parts stream.
    pub(crate) part_hashing: part_hashing::PartHashing,
}
