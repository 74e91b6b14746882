//! File-transfer request and response bodies.

use crate::json::{bounded_string_map, bounded_strings, WireFields};
use crate::status::{FileTransferStatus, RecipientStatus};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// `POST /filetransfer` body (`FileTransferInitalizeExt`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FileTransferInitialize {
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub resource_id: Option<String>,
    /// Omitted, it is `""` (which fails validation, as in Altinn); an explicit `null` means none.
    #[serde(default = "omitted_reference")]
    pub senders_file_transfer_reference: Option<String>,
    #[serde(default)]
    pub sender: Option<String>,
    /// At most [`RECIPIENTS_CEILING`] + 1 are read from a body; the configured maximum is lower.
    #[serde(default, deserialize_with = "bounded_strings::<_, RECIPIENTS_CEILING>")]
    pub recipients: Option<Vec<String>>,
    #[serde(default, deserialize_with = "bounded_string_map::<_, MAX_PROPERTIES>")]
    pub property_list: Option<BTreeMap<String, String>>,
    /// Optional MD5 of the file: 32 lower-case hex characters.
    #[serde(default)]
    pub checksum: Option<String>,
    #[serde(default)]
    pub disable_virus_scan: Option<bool>,
}

fn omitted_reference() -> Option<String> {
    Some(String::new())
}

/// The most recipients a broker may be configured to accept on one transfer.
pub const RECIPIENTS_CEILING: usize = 100_000;
/// Properties one transfer may carry (spec 1.2).
pub const MAX_PROPERTIES: usize = 10;

impl WireFields for FileTransferInitialize {
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("fileName", "a string"),
        ("resourceId", "a string"),
        ("sendersFileTransferReference", "a string"),
        ("sender", "a string"),
        ("recipients", "an array of strings"),
        ("propertyList", "an object with string values"),
        ("checksum", "a string"),
        ("disableVirusScan", "a boolean"),
    ];
}

/// True for `dddd:ddddddddd` or `urn:altinn:organization:identifier-no:ddddddddd`.
pub fn is_valid_org_number(s: &str) -> bool {
    let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = s.strip_prefix("urn:altinn:organization:identifier-no:") {
        return digits(rest, 9);
    }
    match s.split_once(':') {
        Some((a, b)) => digits(a, 4) && digits(b, 9),
        None => false,
    }
}

/// Reads an organisation number in any form Altinn uses (`dddd:ddddddddd`,
/// `urn:altinn:organization:identifier-no:ddddddddd`, or the bare nine digits) as `0192:ddddddddd`.
pub fn parse_org(s: &str) -> Option<String> {
    let s = s.trim();
    let digits = if is_valid_org_number(s) {
        crate::events::org_digits(s)
    } else {
        s
    };
    (digits.len() == 9 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("0192:{digits}"))
}

/// Normalises an org number that passed validation to the stored `0192:NNNNNNNNN` form.
pub fn normalize_org(s: &str) -> String {
    parse_org(s).unwrap_or_else(|| s.to_string())
}

/// The resource id without its optional `urn:altinn:resource:` prefix.
pub fn strip_resource_urn(s: &str) -> &str {
    s.strip_prefix("urn:altinn:resource:").unwrap_or(s)
}

/// The longest resource id (after its optional prefix), as the original's pattern allows.
pub const MAX_RESOURCE_ID_LEN: usize = 255;

/// Whether `id` (without its prefix) is a resource id Altinn's Resource Registry could hold: 1 to 255
/// letters, digits, `-` and `_`. Nothing else can reach a report, a header or a log line through it.
pub fn is_valid_resource_id(id: &str) -> bool {
    (1..=MAX_RESOURCE_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_valid_md5(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FileTransferInitialize {
    /// Field validation (ASP.NET data annotations): field name -> messages. Empty when valid.
    pub fn validate(&self) -> BTreeMap<String, Vec<String>> {
        let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut fail =
            |field: &str, msg: String| errors.entry(field.to_string()).or_default().push(msg);
        match self.file_name.as_deref() {
            None => fail("FileName", "The FileName field is required.".into()),
            Some(n) if n.is_empty() || n.chars().count() > 255 => {
                fail("FileName", "The field FileName must be a string with a minimum length of 1 and a maximum length of 255.".into())
            }
            _ => {}
        }
        match self.resource_id.as_deref() {
            None => fail("ResourceId", "The ResourceId field is required.".into()),
            Some(r) => {
                let bare = strip_resource_urn(r);
                if bare.is_empty() || bare.chars().count() > 255 || bare.contains(':') {
                    fail("ResourceId", "The field ResourceId must match the regular expression '^(?:urn:altinn:resource:)?[^:]{1,255}$'.".into())
                }
            }
        }
        if let Some(r) = self.senders_file_transfer_reference.as_deref() {
            if r.is_empty() || r.chars().count() > 4096 {
                fail("SendersFileTransferReference", "The field SendersFileTransferReference must be a string with a minimum length of 1 and a maximum length of 4096.".into())
            }
        }
        match self.sender.as_deref() {
            None => fail("Sender", "The Sender field is required.".into()),
            Some(s) if !is_valid_org_number(s) => fail(
                "Sender",
                "Organization numbers should be on the form countrycode:organizationnumber, for instance 0192:910753614".into(),
            ),
            _ => {}
        }
        match self.recipients.as_deref() {
            None => fail("Recipients", "The Recipients field is required.".into()),
            Some([]) => fail(
                "Recipients",
                "The Recipients field must have at least one recipient.".into(),
            ),
            Some(list) => {
                if list.iter().any(|r| !is_valid_org_number(r)) {
                    fail("Recipients", "Each recipient must be an organization number on the form countrycode:organizationnumber, for instance 0192:910753614".into())
                }
            }
        }
        if let Some(props) = &self.property_list {
            if props.len() > MAX_PROPERTIES {
                fail(
                    "PropertyList",
                    "PropertyList can contain at most 10 properties".into(),
                );
            }
            if props.keys().any(|k| k.chars().count() > 50) {
                fail(
                    "PropertyList",
                    "PropertyList Key can not be longer than 50".into(),
                );
            }
            if props.values().any(|v| v.chars().count() > 3000) {
                fail(
                    "PropertyList",
                    "PropertyList Value can not be longer than 3000".into(),
                );
            }
        }
        if let Some(c) = self.checksum.as_deref() {
            if !c.trim().is_empty() && !is_valid_md5(c) {
                fail("Checksum", "The checksum, if used, must be a MD5 hash with a length of 32 characters consisting of lowercase hexadecimal characters.".into())
            }
        }
        errors
    }

    /// The declared checksum, with "empty or whitespace" meaning none.
    pub fn declared_checksum(&self) -> Option<&str> {
        self.checksum.as_deref().filter(|c| !c.trim().is_empty())
    }
}

/// `{"fileTransferId": "…"}`, the reply of initialize and the uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FileTransferInitializeResponse {
    pub file_transfer_id: Uuid,
}

/// One recipient's current status in the overview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RecipientFileTransferStatus {
    pub recipient: String,
    pub current_recipient_file_transfer_status_code: RecipientStatus,
    pub current_recipient_file_transfer_status_text: String,
    #[serde(with = "crate::time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub current_recipient_file_transfer_status_changed: Timestamp,
}

/// The fields the overview and the details share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FileTransferSummary {
    pub file_transfer_id: Uuid,
    pub resource_id: String,
    pub file_name: String,
    pub senders_file_transfer_reference: Option<String>,
    pub checksum: Option<String>,
    /// Broker extension: the SHA-256 (hex) of the stored file, once stored.
    pub sha256: Option<String>,
    pub use_virus_scan: bool,
    pub file_transfer_size: i64,
    pub file_transfer_status: FileTransferStatus,
    pub file_transfer_status_text: String,
    #[serde(with = "crate::time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub file_transfer_status_changed: Timestamp,
    #[serde(with = "crate::time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created: Timestamp,
    #[serde(with = "crate::time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expiration_time: Timestamp,
    pub sender: String,
    pub recipients: Vec<RecipientFileTransferStatus>,
    pub property_list: BTreeMap<String, String>,
}

/// `GET /filetransfer/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FileTransferOverview {
    #[serde(flatten)]
    pub summary: FileTransferSummary,
    #[serde(with = "crate::time::option", default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub published: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FileTransferStatusEntry {
    pub file_transfer_status: FileTransferStatus,
    pub file_transfer_status_text: String,
    #[serde(with = "crate::time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub file_transfer_status_changed: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RecipientStatusEntry {
    pub recipient: String,
    pub recipient_file_transfer_status_code: RecipientStatus,
    pub recipient_file_transfer_status_text: String,
    #[serde(with = "crate::time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub recipient_file_transfer_status_changed: Timestamp,
}

/// `GET /filetransfer/{id}/details`: the overview without `published`, plus both histories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FileTransferDetails {
    #[serde(flatten)]
    pub summary: FileTransferSummary,
    pub file_transfer_status_history: Vec<FileTransferStatusEntry>,
    pub recipient_file_transfer_status_history: Vec<RecipientStatusEntry>,
}
