//! Event subscriptions and webhook deliveries, shaped like Altinn Events' subscription API so
//! subscriber code written for Altinn Events works against Broker by changing its base URL.

use crate::json::WireFields;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The CloudEvent type of the event that validates a new subscription's endpoint.
pub const VALIDATION_EVENT_TYPE: &str = "platform.events.validatesubscription";

/// `POST /subscriptions` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRequest {
    /// Where matching events are POSTed (http or https).
    #[serde(default)]
    pub end_point: Option<String>,
    /// Only events whose `source` starts with this.
    #[serde(default)]
    pub source_filter: Option<String>,
    /// `urn:altinn:resource:{id}`: a resource configured for Broker (required).
    #[serde(default)]
    pub resource_filter: Option<String>,
    /// `urn:altinn:organization:identifier-no:{org}`; defaults to the caller's organisation.
    #[serde(default)]
    pub subject_filter: Option<String>,
    /// `/organisation/{org}`; defaults to the caller's organisation.
    #[serde(default)]
    pub alternative_subject_filter: Option<String>,
    /// One `no.altinn.broker.*` event type; none = every type.
    #[serde(default)]
    pub type_filter: Option<String>,
    /// Altinn Events' flag for events of the subject's subunits too; kept and returned as given
    /// (Broker has no unit register, so it widens no match). Default false.
    #[serde(default)]
    pub include_subunits: Option<bool>,
}

impl WireFields for SubscriptionRequest {
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("endPoint", "a string"),
        ("sourceFilter", "a string"),
        ("resourceFilter", "a string"),
        ("subjectFilter", "a string"),
        ("alternativeSubjectFilter", "a string"),
        ("typeFilter", "a string"),
        ("includeSubunits", "a boolean"),
    ];
}

/// A subscription as the API returns it: fields without a value are left out, as Altinn Events
/// leaves them out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: i64,
    pub end_point: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_filter: Option<String>,
    pub resource_filter: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternative_subject_filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_filter: Option<String>,
    #[serde(default)]
    pub include_subunits: bool,
    /// `/organisation/{org}` of the subscriber.
    pub consumer: String,
    pub created_by: String,
    #[serde(with = "crate::time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created: Timestamp,
    /// The endpoint answered the validation event; events are delivered only once it has.
    pub validated: bool,
    /// The signing secret (`whsec_…`): returned once, when the subscription is created or its secret
    /// rotated; never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `GET /subscriptions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionList {
    pub count: usize,
    pub subscriptions: Vec<Subscription>,
}

/// Where one event's delivery to one subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DeliveryState {
    /// Waiting for its next attempt (or for the subscription to validate).
    Pending,
    Delivered,
    /// Given up after the retry period; `redeliver` sends it again.
    DeadLettered,
}

/// `GET /subscriptions/{id}/deliveries`: one event's delivery history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The event's outbox sequence number.
    pub sequence: i64,
    pub event_id: uuid::Uuid,
    #[serde(rename = "type")]
    pub type_: String,
    pub resourceinstance: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// HTTP status of the last attempt; none when it got no answer.
    pub last_status: Option<u16>,
    pub last_latency_ms: Option<u64>,
    pub last_error: Option<String>,
    #[serde(default, with = "crate::time::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_attempt: Option<Timestamp>,
    #[serde(default, with = "crate::time::option")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub next_attempt: Option<Timestamp>,
}

/// `POST /subscriptions/{id}/redeliver` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Redelivered {
    /// Dead-lettered deliveries queued again.
    pub requeued: u64,
}

/// The Altinn Events alternative subject of an organisation number in any accepted form.
pub fn alternative_subject(org: &str) -> String {
    format!("/organisation/{}", crate::events::org_digits(org))
}

/// The `subject` URN of an organisation number in any accepted form.
pub fn subject_urn(org: &str) -> String {
    format!(
        "urn:altinn:organization:identifier-no:{}",
        crate::events::org_digits(org)
    )
}
