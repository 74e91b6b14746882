//! ProblemDetails (RFC 9457) bodies and the one catalogue of `BRO-xxxxx` error codes with their HTTP status.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

macro_rules! catalogue {
    ($($name:ident = $code:expr, $status:expr, $message:expr;)+) => {
        /// Every application error Broker returns: Altinn's catalogue plus Broker's own (9000 and up).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($name),+ }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name),+];

            pub fn number(self) -> u32 { match self { $(ErrorCode::$name => $code),+ } }
            pub fn http_status(self) -> u16 { match self { $(ErrorCode::$name => $status),+ } }
            pub fn message(self) -> &'static str { match self { $(ErrorCode::$name => $message),+ } }
        }
    };
}

catalogue! {
    FileTransferNotFound = 1, 404, "The requested file transfer was not found";
    ServiceOwnerNotConfigured = 2, 400, "Service owner needs to be configured to use the broker API";
    NoFileUploaded = 3, 400, "No file uploaded yet";
    FileTransferAlreadyUploaded = 4, 409, "A file transfer has already been, or attempted to be, created. Create a new file transfer resource to try again.";
    ResourceNotRegistered = 5, 403, "The resource needs to be registered as an Altinn 3 resource and it has to be associated with a service owner";
    NoAccess = 6, 401, "You must use a bearer token that represents a system user with access to the resource in the Resource Rights Registry";
    FileNotReadyForDownload = 7, 403, "The requested file transfer's file is not ready for download. See file transfer status.";
    UploadFailed = 8, 500, "Error occurred while uploading file See /details for more information.";
    ChecksumMismatch = 9, 400, "The checksum of uploaded file did not match the checksum specified in initialize call.";
    ConfirmRequiresPublished = 10, 400, "A file transfer can only be confirmed to be downloaded when it is published. See file transfer status.";
    MaxSizeNegative = 11, 400, "Max file transfer size cannot be negative";
    MaxSizeZero = 12, 400, "Max file transfer size cannot be zero";
    MaxSizeAboveVirusScanLimit = 13, 400, "Max file transfer size cannot be set higher than 50GB in production unless the resource has been pre-approved for disabled virus scan (an operator approves it with approved_for_disabled_virus_scan = true in the registry file, registry.mode = \"file\").";
    InvalidTimeToLive = 14, 400, "Invalid file transfer time to live format. Should follow ISO8601 standard for duration. Example: 'P30D' for 30 days.";
    TimeToLiveTooLong = 15, 400, "Time to live cannot exceed 365 days";
    FileSizeExceedsMaximum = 16, 400, "File size exceeds maximum";
    InvalidGracePeriod = 17, 400, "Invalid grace period format. Should follow ISO8601 standard for duration. Example: 'PT2H' for 2 hours.";
    GracePeriodTooLong = 18, 400, "Grace period cannot exceed 24 hours";
    ConfirmBeforeDownload = 19, 400, "Cannot confirm before the files have been downloaded";
    VirusScanCannotBeDisabled = 20, 400, "In order to use file transfers without virus scan the service resource needs to be approved: an operator sets approved_for_disabled_virus_scan = true for it in the registry file (registry.mode = \"file\").";
    StorageProviderNotReady = 21, 503, "Storage provider is not ready yet. Please try again later.";
    MaxSizeAboveGlobalLimit = 22, 400, "Max file transfer size cannot be set higher than 100GB in production because it has not yet been tested for it.";
    ManifestShimNeedsServiceCode = 23, 400, "In order to use manifest file shim you need to provide external service code and edition code";
    ResourceOwnerNotConfigured = 24, 400, "The service owner associated with the resource has not been configured.";
    ResourceNotConfigured = 25, 400, "The resource has not been configured.";
    RequiredPartyMissing = 26, 400, "The resource requires the service owner party to be present as part of the transaction.";
    RequiredPartyOneRecipient = 27, 400, "When required party is specified and the required party is not the sender, the number of recipients can only be one.";
    RecipientsNotInAccessList = 28, 400, "All recipients need to be in the access list of the resource.";
    RangeNotSatisfiable = 29, 416, "The requested byte range is not satisfiable.";
    NotYetUploadProcessing = 30, 503, "File transfer is not yet in UploadProcessing. Retry when upload completion has been recorded.";
    NoFileTransfersForReport = 6001, 404, "No file transfers found for report generation";
    ReportGenerationFailed = 6002, 500, "Failed to generate statistics report";
    InvalidReportPeriod = 6003, 400, "Invalid year or month. Provide a valid year and a month between 1 and 12.";
    InvalidReportMonth = 6004, 400, "The requested report month is invalid.";
    ReportNeedsADimension = 6005, 400, "At least one of includeEndUser or includeVendor must be true.";
    CallerOrganizationUnknown = 7001, 400, "Caller organization id could not be determined";
    ServiceOwnerAlreadyExists = 7002, 409, "Service owner already exists";
    ServiceOwnerCouldNotBeInitialized = 7003, 500, "Service owner could not be initialized";
    ServiceOwnerNotFound = 7004, 404, "Service owner not found";
    // Broker's own codes.
    InsufficientStorage = 9001, 507, "The declared upload size exceeds the storage space the broker has free. Try again later or upload a smaller file.";
    IdempotencyKeyReused = 9003, 422, "The Idempotency-Key was already used for a different initialize request by this sender.";
    InternalError = 9004, 500, "An unexpected error occurred.";
    FileTransferExpired = 9005, 410, "The file transfer has expired and its file is no longer available.";
    ShuttingDown = 9006, 503, "The broker is shutting down. Retry against another node or in a moment.";
    TooManyUploads = 9007, 503, "Too many uploads are streaming at once. Retry in a moment.";
    RequestBodyTooLarge = 9008, 413, "The request body is larger than this endpoint accepts.";
    RequestBodyTooSlow = 9009, 408, "The request body arrived too slowly and was cut off. Retry the request.";
    TooManyConnections = 9010, 503, "The broker has too many open connections. Retry in a moment.";
    TooManyTusParts = 9011, 400, "The file transfer has as many partial uploads as the broker allows. Join or delete parts before creating more.";
    SubscriptionNotFound = 9013, 404, "The subscription was not found.";
    SubscriptionForOtherParty = 9014, 403, "A subscription's subject filters may only name the caller's own organisation (a service owner may subscribe to every event of its own resources).";
    EndpointNotAllowed = 9015, 400, "The endpoint must be an absolute http or https URL the broker may reach; loopback, link-local and private addresses are refused in production unless the operator allows them.";
    NotificationChannelMissing = 9016, 400, "This broker has no channel for that contact point configured (notify.smtp for e-mail, notify.sms for SMS).";
    InvalidContactPoint = 9017, 400, "A contact point needs exactly one of emailAddress (an e-mail address) and mobileNumber (8 to 15 digits, optionally after a +).";
    TooManyContactPoints = 9018, 400, "The organisation has as many contact points as the broker allows (20). Remove one before adding another.";
    TooManySubscriptions = 9019, 400, "The organisation has as many event subscriptions as the broker allows. Remove one before adding another.";
    ContactPointNotFound = 9020, 404, "The contact point was not found.";
    InvalidResourceId = 9021, 400, "A resource id may contain only letters, digits, '-' and '_', at most 255 of them (after an optional urn:altinn:resource: prefix).";
    FileTooLargeToScan = 9012, 400, "The file is larger than the malware scanner accepts, and this broker refuses files it cannot scan whole. Send a smaller file, or initialize the transfer with disableVirusScan where the resource allows it.";
}

impl ErrorCode {
    /// `BRO-` followed by the number zero-padded to five digits.
    pub fn code(self) -> String {
        format!("BRO-{:05}", self.number())
    }

    pub fn from_code(code: &str) -> Option<Self> {
        let n: u32 = code.strip_prefix("BRO-")?.parse().ok()?;
        Self::ALL.iter().copied().find(|c| c.number() == n)
    }
}

/// The RFC 9110 section and reason phrase ASP.NET puts in `type` and `title` for a status.
pub fn type_and_title(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.1",
            "Bad Request",
        ),
        401 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.2",
            "Unauthorized",
        ),
        403 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.4",
            "Forbidden",
        ),
        404 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.5",
            "Not Found",
        ),
        406 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.7",
            "Not Acceptable",
        ),
        408 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.9",
            "Request Timeout",
        ),
        409 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.10",
            "Conflict",
        ),
        410 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.11",
            "Gone",
        ),
        413 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.14",
            "Content Too Large",
        ),
        415 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.16",
            "Unsupported Media Type",
        ),
        416 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.17",
            "Range Not Satisfiable",
        ),
        422 => (
            "https://tools.ietf.org/html/rfc9110#section-15.5.21",
            "Unprocessable Content",
        ),
        500 => (
            "https://tools.ietf.org/html/rfc9110#section-15.6.1",
            "Internal Server Error",
        ),
        502 => (
            "https://tools.ietf.org/html/rfc9110#section-15.6.3",
            "Bad Gateway",
        ),
        503 => (
            "https://tools.ietf.org/html/rfc9110#section-15.6.4",
            "Service Unavailable",
        ),
        507 => (
            "https://tools.ietf.org/html/rfc4918#section-11.5",
            "Insufficient Storage",
        ),
        _ => ("about:blank", "Error"),
    }
}

/// An application error body (`application/problem+json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProblemDetails {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(rename = "traceId", default)]
    pub trace_id: String,
    /// Field validation errors (ValidationProblemDetails): field -> messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<BTreeMap<String, Vec<String>>>,
}

impl ProblemDetails {
    pub fn for_code(code: ErrorCode, trace_id: String) -> Self {
        let status = code.http_status();
        let (type_, title) = type_and_title(status);
        ProblemDetails {
            type_: type_.into(),
            title: title.into(),
            status,
            detail: Some(code.message().into()),
            code: Some(code.code()),
            instance: None,
            trace_id,
            errors: None,
        }
    }

    /// A problem outside the catalogue (no `code`), e.g. 415 or an unreadable body.
    pub fn plain(status: u16, detail: String, trace_id: String) -> Self {
        let (type_, title) = type_and_title(status);
        ProblemDetails {
            type_: type_.into(),
            title: title.into(),
            status,
            detail: Some(detail),
            code: None,
            instance: None,
            trace_id,
            errors: None,
        }
    }

    /// ASP.NET's ValidationProblemDetails: 400, a fixed title, the per-field messages and no `code`.
    pub fn validation(errors: BTreeMap<String, Vec<String>>, trace_id: String) -> Self {
        let (type_, _) = type_and_title(400);
        ProblemDetails {
            type_: type_.into(),
            title: "One or more validation errors occurred.".into(),
            status: 400,
            detail: None,
            code: None,
            instance: None,
            trace_id,
            errors: Some(errors),
        }
    }

    pub fn error_code(&self) -> Option<ErrorCode> {
        self.code.as_deref().and_then(ErrorCode::from_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_zero_padded_and_unique() {
        assert_eq!(ErrorCode::FileTransferNotFound.code(), "BRO-00001");
        assert_eq!(ErrorCode::ServiceOwnerNotFound.code(), "BRO-07004");
        let mut numbers: Vec<u32> = ErrorCode::ALL.iter().map(|c| c.number()).collect();
        numbers.sort();
        numbers.dedup();
        assert_eq!(numbers.len(), ErrorCode::ALL.len());
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(&c.code()), Some(*c));
        }
    }
}
