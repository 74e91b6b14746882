//! Resource and service-owner bodies.

use crate::json::{option_i32_lenient, option_i64_lenient, WireFields};
use serde::{Deserialize, Serialize};

/// `PUT /resource/{resourceId}` body; every field optional, only those sent are updated.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResourceUpdate {
    #[serde(default, deserialize_with = "option_i64_lenient")]
    pub max_file_transfer_size: Option<i64>,
    /// ISO-8601 duration, e.g. `P30D`.
    #[serde(default)]
    pub file_transfer_time_to_live: Option<String>,
    #[serde(default)]
    pub purge_file_transfer_after_all_recipients_confirmed: Option<bool>,
    /// ISO-8601 duration, e.g. `PT2H`.
    #[serde(default)]
    pub purge_file_transfer_grace_period: Option<String>,
    #[serde(default)]
    pub use_manifest_file_shim: Option<bool>,
    #[serde(default)]
    pub external_service_code_legacy: Option<String>,
    #[serde(default, deserialize_with = "option_i32_lenient")]
    pub external_service_edition_code_legacy: Option<i32>,
    #[serde(default)]
    pub required_party: Option<String>,
}

impl WireFields for ResourceUpdate {
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("maxFileTransferSize", "an integer"),
        ("fileTransferTimeToLive", "an ISO-8601 duration string"),
        ("purgeFileTransferAfterAllRecipientsConfirmed", "a boolean"),
        (
            "purgeFileTransferGracePeriod",
            "an ISO-8601 duration string",
        ),
        ("useManifestFileShim", "a boolean"),
        ("externalServiceCodeLegacy", "a string"),
        ("externalServiceEditionCodeLegacy", "a 32-bit integer"),
        ("requiredParty", "a string"),
    ];
}

/// `GET /resource/{resourceId}`: durations in .NET `TimeSpan` format (`30.00:00:00`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResourceConfiguration {
    pub max_file_transfer_size: Option<i64>,
    pub file_transfer_time_to_live: String,
    pub purge_file_transfer_after_all_recipients_confirmed: bool,
    pub purge_file_transfer_grace_period: String,
    pub use_manifest_file_shim: bool,
    pub external_service_code_legacy: Option<String>,
    pub external_service_edition_code_legacy: Option<i32>,
    pub required_party: Option<String>,
}

/// `POST /serviceowner` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceOwnerInitialize {
    #[serde(default)]
    pub name: Option<String>,
}

impl WireFields for ServiceOwnerInitialize {
    const FIELDS: &'static [(&'static str, &'static str)] = &[("name", "a string")];
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StorageProvider {
    #[serde(rename = "type")]
    pub type_: String,
    pub deployment_status: String,
    pub deployment_environment: String,
}

/// `GET /serviceowner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ServiceOwnerOverview {
    pub name: String,
    pub storage_providers: Vec<StorageProvider>,
}
