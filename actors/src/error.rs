//! The application's errors: one enum for everything the actors crate refuses or fails at. Only the
//! transports know what an error looks like on the wire (`src/http/error.rs` holds the one table).

use broker_protocol::ErrorCode;
use std::collections::BTreeMap;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Refused with a code of the catalogue (`BRO-xxxxx`).
    #[error("refused: {0:?}")]
    Refused(ErrorCode),
    /// Input that names the properties at fault, with a message for each.
    #[error("invalid input: {0:?}")]
    Invalid(BTreeMap<String, Vec<String>>),
    /// A tus protocol rule refused the request (tus clients expect plain statuses, not ProblemDetails).
    #[error("tus: {0:?}")]
    Tus(TusRefusal),
    /// The request could not be read (a body that broke off, a form that breaks its grammar); the text
    /// says what to do. Nothing of it was published.
    #[error("{0}")]
    Unreadable(String),
    /// The transfer changed concurrently (another request or node moved it first).
    #[error("the transfer changed concurrently")]
    Conflict,
    /// Our side failed (storage, the metadata store, a task).
    #[error("internal failure: {0}")]
    Internal(String),
}

/// Why a tus request was refused (spec 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TusRefusal {
    /// `Tus-Resumable` is missing or not 1.0.0.
    VersionUnsupported,
    /// A tus header breaks its grammar, or a rule about headers; the text says which.
    BadRequest(String),
    /// `PATCH` without `Content-Type: application/offset+octet-stream`.
    ContentType,
    /// No upload was created for this transfer (or part).
    NoUpload,
    /// No such part of this transfer's concatenated upload.
    NoSuchPart,
    /// `Upload-Offset` is not the upload's offset.
    OffsetMismatch { sent: u64, actual: u64 },
    /// Another request moved the offset while this one waited for the upload.
    OffsetMoved,
    /// The body ran past the upload's length: nothing of it was kept.
    TooLong,
    /// The body did not match its `Upload-Checksum`: nothing of it was kept.
    ChecksumMismatch,
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Self {
        Error::Refused(code)
    }
}

impl From<TusRefusal> for Error {
    fn from(r: TusRefusal) -> Self {
        Error::Tus(r)
    }
}

impl From<crate::ports::StoreError> for Error {
    fn from(e: crate::ports::StoreError) -> Self {
        match e {
            crate::ports::StoreError::Conflict | crate::ports::StoreError::LeaseLost => {
                Error::Conflict
            }
            crate::ports::StoreError::LeaseHeld => {
                Error::Refused(ErrorCode::FileTransferAlreadyUploaded)
            }
            crate::ports::StoreError::Failure(m) => Error::Internal(m),
        }
    }
}

impl From<crate::ports::BlobError> for Error {
    fn from(e: crate::ports::BlobError) -> Self {
        Error::Internal(e.to_string())
    }
}

impl Error {
    /// One invalid property.
    pub fn field(field: &str, message: impl Into<String>) -> Error {
        Error::Invalid(BTreeMap::from([(field.to_string(), vec![message.into()])]))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
