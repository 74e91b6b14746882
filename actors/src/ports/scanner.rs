//! The malware scanner (spec 1.3, 7.1): a stored file's bytes in, a verdict out. The adapter (clamd
//! over TCP or a unix socket) reads through the blob port's stream, so it works the same on object
//! storage; concurrency permits and timeouts belong to the caller.

use super::ByteStream;
use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The signatures the scanner found, as it names them.
    Infected(Vec<String>),
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The scanner could not be reached or did not answer: retried later, never taken as clean.
    #[error("the scanner is unavailable: {0}")]
    Unavailable(String),
    /// The scanner answered with an error (for a file larger than its stream limit, among others).
    #[error("the scanner refused the file: {0}")]
    Refused(String),
    /// The file's bytes could not be read.
    #[error("the file could not be read: {0}")]
    Unreadable(String),
}

#[async_trait]
pub trait Scanner: Send + Sync + 'static {
    /// Scans `file`, which streams the whole stored file.
    async fn scan(&self, file: ByteStream) -> Result<Verdict, ScanError>;
}
