//! CloudEvents 1.0 payloads of the `no.altinn.broker.*` event types.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Every event type Broker emits (spec section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    FileTransferInitialized,
    UploadProcessing,
    Published,
    UploadFailed,
    DownloadConfirmed,
    AllConfirmedDownloaded,
    FilePurged,
    FileNeverConfirmedDownloaded,
}

impl EventType {
    pub const ALL: &'static [EventType] = &[
        EventType::FileTransferInitialized,
        EventType::UploadProcessing,
        EventType::Published,
        EventType::UploadFailed,
        EventType::DownloadConfirmed,
        EventType::AllConfirmedDownloaded,
        EventType::FilePurged,
        EventType::FileNeverConfirmedDownloaded,
    ];

    /// The CloudEvent `type`, e.g. `no.altinn.broker.published`.
    pub fn type_name(self) -> &'static str {
        match self {
            EventType::FileTransferInitialized => "no.altinn.broker.filetransferinitialized",
            EventType::UploadProcessing => "no.altinn.broker.uploadprocessing",
            EventType::Published => "no.altinn.broker.published",
            EventType::UploadFailed => "no.altinn.broker.uploadfailed",
            EventType::DownloadConfirmed => "no.altinn.broker.downloadconfirmed",
            EventType::AllConfirmedDownloaded => "no.altinn.broker.allconfirmeddownloaded",
            EventType::FilePurged => "no.altinn.broker.filepurged",
            EventType::FileNeverConfirmedDownloaded => {
                "no.altinn.broker.fileneverconfirmeddownloaded"
            }
        }
    }
}

/// The party an event is addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventRole {
    Sender,
    Recipient,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventData {
    #[serde(rename = "Role")]
    pub role: EventRole,
}

/// A CloudEvent as Altinn Events receives it (property names lower-case).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CloudEvent {
    pub specversion: String,
    pub id: Uuid,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(with = "crate::time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub time: Timestamp,
    pub resource: String,
    pub resourceinstance: String,
    pub subject: String,
    /// Broker's addition, as Altinn Events adds it: `/organisation/{org}` of `subject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternativesubject: Option<String>,
    pub source: String,
    pub data: EventData,
}

/// Turns an org number in any accepted form into the 9-digit number events use in `subject`.
pub fn org_digits(org: &str) -> &str {
    org.rsplit(':').next().unwrap_or(org)
}

impl CloudEvent {
    /// Builds an event. `published` events get a deterministic id (Altinn Events drops duplicates);
    /// the others get a random one.
    pub fn new(
        event_type: EventType,
        file_transfer_id: Uuid,
        resource_id: &str,
        party: &str,
        role: EventRole,
        source: &str,
        time: Timestamp,
    ) -> CloudEvent {
        let digits = org_digits(party);
        let id = if event_type == EventType::Published {
            published_event_id(file_transfer_id, role, party)
        } else {
            Uuid::new_v4()
        };
        CloudEvent {
            specversion: "1.0".into(),
            id,
            type_: event_type.type_name().into(),
            time,
            resource: format!("urn:altinn:resource:{resource_id}"),
            resourceinstance: file_transfer_id.to_string(),
            subject: format!("urn:altinn:organization:identifier-no:{digits}"),
            alternativesubject: Some(format!("/organisation/{digits}")),
            source: source.into(),
            data: EventData { role },
        }
    }
}

/// A stable id for `published` events, computed as Altinn does: the first 16 bytes of
/// SHA-256(`published:{id}:{role}:{party}`) read as a .NET GUID (mixed-endian), so a re-publication
/// yields the same id and consumers can drop the duplicate.
pub fn published_event_id(file_transfer_id: Uuid, role: EventRole, party: &str) -> Uuid {
    use sha2::Digest;
    let name = format!("published:{file_transfer_id}:{role:?}:{party}");
    let digest = sha2::Sha256::digest(name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes_le(bytes)
}

/// One entry of the durable outbox (`GET /maintenance/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutboxEntry {
    pub sequence: i64,
    pub event: CloudEvent,
}
