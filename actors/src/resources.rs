//! Service owners and resource configuration (spec 6): who owns a resource, its size limit, lifetime,
//! purge rules and legacy codes.

use crate::access::{Caller, MAX_FILE_SIZE, MAX_VIRUS_SCAN_SIZE};
use crate::error::{Error, Result};
use crate::ports::metadata::ResourceRow;
use crate::Broker;
use broker_protocol::duration::{format_timespan, parse_iso8601};
use broker_protocol::resource::{
    ResourceConfiguration, ResourceUpdate, ServiceOwnerOverview, StorageProvider,
};
use broker_protocol::transfer::{is_valid_resource_id, parse_org, strip_resource_urn};
use broker_protocol::ErrorCode;
use chrono::Duration;

impl Broker {
    /// Registers the caller's organisation as a service owner.
    pub async fn create_service_owner(&self, caller: &Caller, name: Option<String>) -> Result<()> {
        let org = caller
            .org
            .as_deref()
            .ok_or(ErrorCode::CallerOrganizationUnknown)?;
        let name = name
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| Error::field("Name", "The Name field is required."))?;
        if !self
            .ports()
            .metadata
            .create_service_owner(org, &name, self.now())
            .await?
        {
            return Err(ErrorCode::ServiceOwnerAlreadyExists.into());
        }
        Ok(())
    }

    /// The caller's service owner and its storage providers.
    pub async fn service_owner(&self, caller: &Caller) -> Result<ServiceOwnerOverview> {
        let org = caller
            .org
            .as_deref()
            .ok_or(ErrorCode::CallerOrganizationUnknown)?;
        let owner = self
            .ports()
            .metadata
            .service_owner(org)
            .await?
            .ok_or(ErrorCode::ServiceOwnerNotFound)?;
        let environment = if self.settings().production {
            "Production"
        } else {
            "Development"
        };
        // Storage is provisioned with the broker itself, so both providers are ready at once.
        let providers = ["AltinnAzure", "AltinnAzureWithoutVirusScan"]
            .iter()
            .map(|t| StorageProvider {
                type_: t.to_string(),
                deployment_status: "Ready".into(),
                deployment_environment: environment.into(),
            })
            .collect();
        Ok(ServiceOwnerOverview {
            name: owner.name,
            storage_providers: providers,
        })
    }

    /// Creates or changes a resource's configuration; only its service owner may.
    pub async fn configure_resource(
        &self,
        caller: &Caller,
        resource_id: &str,
        update: ResourceUpdate,
    ) -> Result<()> {
        let org = caller.org.clone().ok_or(ErrorCode::NoAccess)?;
        validate_update(&update)?;
        let resource_id = strip_resource_urn(resource_id).to_string();
        if !is_valid_resource_id(&resource_id) {
            return Err(ErrorCode::InvalidResourceId.into());
        }
        let metadata = &self.ports().metadata;
        let existing = metadata.resource(&resource_id).await?;
        let entry = self.ports().registry.lookup(
            &resource_id,
            existing.as_ref().map(|r| r.service_owner_id.as_str()),
            Some(&org),
        );
        let mut row = match existing {
            Some(row) if row.service_owner_id != org => return Err(ErrorCode::NoAccess.into()),
            Some(row) => row,
            None => {
                let entry = entry.as_ref().ok_or(ErrorCode::ResourceNotRegistered)?;
                if entry.owner != org {
                    return Err(ErrorCode::NoAccess.into());
                }
                if metadata.service_owner(&entry.owner).await?.is_none() {
                    return Err(ErrorCode::ResourceOwnerNotConfigured.into());
                }
                ResourceRow {
                    id: resource_id.clone(),
                    service_owner_id: entry.owner.clone(),
                    ..Default::default()
                }
            }
        };
        let approved = entry
            .as_ref()
            .is_some_and(|e| e.approved_for_disabled_virus_scan);
        apply_update(self.settings().production, &mut row, &update, approved)?;
        if !metadata.save_resource(row, self.now()).await? {
            // Another owner configured it between our read and our write.
            return Err(ErrorCode::NoAccess.into());
        }
        Ok(())
    }

    /// A resource's configuration, for its service owner.
    pub async fn resource(
        &self,
        caller: &Caller,
        resource_id: &str,
    ) -> Result<ResourceConfiguration> {
        let row = self
            .ports()
            .metadata
            .resource(strip_resource_urn(resource_id))
            .await?
            .ok_or(ErrorCode::ResourceNotConfigured)?;
        if caller.org.as_deref() != Some(row.service_owner_id.as_str()) {
            return Err(ErrorCode::NoAccess.into());
        }
        Ok(ResourceConfiguration {
            max_file_transfer_size: row.max_file_transfer_size,
            file_transfer_time_to_live: format_timespan(row.time_to_live()),
            purge_file_transfer_after_all_recipients_confirmed: row.purge_after_confirmed(),
            purge_file_transfer_grace_period: format_timespan(row.grace_period()),
            use_manifest_file_shim: row.use_manifest_file_shim.unwrap_or(false),
            external_service_code_legacy: row.external_service_code_legacy,
            external_service_edition_code_legacy: row.external_service_edition_code_legacy,
            required_party: row.required_party,
        })
    }
}

fn apply_update(
    production: bool,
    row: &mut ResourceRow,
    update: &ResourceUpdate,
    approved_no_scan: bool,
) -> Result<()> {
    if let Some(max) = update.max_file_transfer_size {
        if max < 0 {
            return Err(ErrorCode::MaxSizeNegative.into());
        }
        if max == 0 {
            return Err(ErrorCode::MaxSizeZero.into());
        }
        if production && max > MAX_VIRUS_SCAN_SIZE && !approved_no_scan {
            return Err(ErrorCode::MaxSizeAboveVirusScanLimit.into());
        }
        if max > MAX_FILE_SIZE {
            return Err(ErrorCode::MaxSizeAboveGlobalLimit.into());
        }
        row.max_file_transfer_size = Some(max);
    }
    if let Some(ttl) = &update.file_transfer_time_to_live {
        let d = parse_iso8601(ttl).ok_or(ErrorCode::InvalidTimeToLive)?;
        if d > Duration::days(365) {
            return Err(ErrorCode::TimeToLiveTooLong.into());
        }
        row.file_transfer_time_to_live = Some(d);
    }
    if let Some(grace) = &update.purge_file_transfer_grace_period {
        let d = parse_iso8601(grace).ok_or(ErrorCode::InvalidGracePeriod)?;
        if d > Duration::hours(24) {
            return Err(ErrorCode::GracePeriodTooLong.into());
        }
        row.purge_grace_period = Some(d);
    }
    if let Some(p) = update.purge_file_transfer_after_all_recipients_confirmed {
        row.purge_after_all_confirmed = Some(p);
    }
    if let Some(code) = &update.external_service_code_legacy {
        row.external_service_code_legacy = Some(code.clone());
    }
    if let Some(edition) = update.external_service_edition_code_legacy {
        row.external_service_edition_code_legacy = Some(edition);
    }
    if let Some(party) = &update.required_party {
        row.required_party = if party.trim().is_empty() {
            None
        } else {
            Some(parse_org(party).ok_or_else(|| {
                Error::field(
                    "RequiredParty",
                    format!("'{party}' is not an organization number."),
                )
            })?)
        };
    }
    if let Some(shim) = update.use_manifest_file_shim {
        if shim {
            let has_code = row
                .external_service_code_legacy
                .as_deref()
                .is_some_and(|c| !c.is_empty());
            let has_edition = row
                .external_service_edition_code_legacy
                .is_some_and(|e| e != 0);
            if !(has_code && has_edition) {
                return Err(ErrorCode::ManifestShimNeedsServiceCode.into());
            }
        }
        row.use_manifest_file_shim = Some(shim);
    }
    Ok(())
}

fn validate_update(update: &ResourceUpdate) -> Result<()> {
    if update.use_manifest_file_shim != Some(true) {
        return Ok(());
    }
    let mut errors = std::collections::BTreeMap::new();
    let message = |field: &str| {
        vec![format!(
            "{field} must be set when UseManifestFileShim is true"
        )]
    };
    if update
        .external_service_code_legacy
        .as_deref()
        .is_some_and(|c| c.trim().is_empty())
    {
        errors.insert(
            "ExternalServiceCodeLegacy".to_string(),
            message("ExternalServiceCodeLegacy"),
        );
    }
    if update.external_service_edition_code_legacy == Some(0) {
        errors.insert(
            "ExternalServiceEditionCodeLegacy".to_string(),
            message("ExternalServiceEditionCodeLegacy"),
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Invalid(errors))
    }
}
