//! End-user notifications (the role Altinn Notifications plays for the original): an organisation's
//! contact points, each an e-mail address or a mobile number told of the events addressed to it.

use crate::json::WireFields;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// `POST /notifications/contactpoints` body: exactly one of `emailAddress` and `mobileNumber`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ContactPointRequest {
    #[serde(default)]
    pub email_address: Option<String>,
    /// International form, e.g. `+4799999999`.
    #[serde(default)]
    pub mobile_number: Option<String>,
    /// `urn:altinn:resource:{id}` (or the bare id) of a configured resource; none = every resource.
    #[serde(default)]
    pub resource_filter: Option<String>,
    /// One `no.altinn.broker.*` event type; none = every type.
    #[serde(default)]
    pub type_filter: Option<String>,
}

impl WireFields for ContactPointRequest {
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("emailAddress", "a string"),
        ("mobileNumber", "a string"),
        ("resourceFilter", "a string"),
        ("typeFilter", "a string"),
    ];
}

/// A contact point as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ContactPoint {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mobile_number: Option<String>,
    pub resource_filter: Option<String>,
    pub type_filter: Option<String>,
    #[serde(with = "crate::time")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created: Timestamp,
}

/// `GET /notifications/contactpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ContactPointList {
    pub count: usize,
    pub contact_points: Vec<ContactPoint>,
}
