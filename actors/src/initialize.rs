//! Initialize (spec 1.2): every check in the spec's order, then the transfer is created through the
//! supervisors' initialize transition (Initialized, event `filetransferinitialized`) in one transaction.

use crate::access::{max_file_size, Caller};
use crate::error::{Error, Result};
use crate::ports::metadata::{Created, NewTransfer};
use crate::Broker;
use broker_protocol::transfer::{normalize_org, strip_resource_urn, FileTransferInitialize};
use broker_protocol::ErrorCode;
use uuid::Uuid;

/// A transfer that passed every check of initialize, not written yet.
pub struct PreparedTransfer {
    pub(crate) new: NewTransfer,
    /// The largest file it may hold.
    pub(crate) size_limit: u64,
}

impl Broker {
    /// Initializes a transfer; with an `Idempotency-Key` used before for the same request, the earlier
    /// transfer's id.
    pub async fn initialize(
        &self,
        caller: &Caller,
        request: FileTransferInitialize,
        idempotency_key: Option<String>,
    ) -> Result<Uuid> {
        let prepared = self.prepare(caller, request, idempotency_key).await?;
        self.create(prepared.new).await
    }

    /// Every check of initialize (spec 1.2, in its order), without writing anything: the form-data upload
    /// runs them before it stores a byte, and again once it has read the whole form.
    pub(crate) async fn prepare(
        &self,
        caller: &Caller,
        request: FileTransferInitialize,
        idempotency_key: Option<String>,
    ) -> Result<PreparedTransfer> {
        let mut errors = request.validate();
        let max_recipients = self.settings().max_recipients;
        if request
            .recipients
            .as_ref()
            .is_some_and(|r| r.len() > max_recipients)
        {
            errors.entry("Recipients".into()).or_default().push(format!(
                "The Recipients field can contain at most {max_recipients} recipients."
            ));
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let fingerprint =
            crate::upload::sha256_hex(&serde_json::to_vec(&request).unwrap_or_default());
        let resource_id =
            strip_resource_urn(request.resource_id.as_deref().unwrap_or_default()).to_string();
        let sender = request.sender.clone().unwrap_or_default();
        let sender_org = normalize_org(&sender);
        // The same organisation named twice (perhaps in two forms) is one recipient.
        let mut seen = std::collections::HashSet::new();
        let recipients: Vec<String> = request
            .recipients
            .iter()
            .flatten()
            .map(|r| normalize_org(r))
            .filter(|r| seen.insert(r.clone()))
            .collect();
        let metadata = &self.ports().metadata;
        let resource = metadata.resource(&resource_id).await?;
        let entry = self.ports().registry.lookup(
            &resource_id,
            resource.as_ref().map(|r| r.service_owner_id.as_str()),
            None,
        );
        // 1. Policy: the caller acts for the sender, and the registry lets that sender use the resource.
        let permitted = caller.org.as_deref() == Some(sender_org.as_str())
            && entry.as_ref().is_none_or(|e| e.allows_sender(&sender_org));
        if !permitted {
            return Err(ErrorCode::NoAccess.into());
        }
        // 2-3. The resource is configured for Broker and its service owner exists.
        let resource = resource.ok_or(ErrorCode::ResourceNotConfigured)?;
        if metadata
            .service_owner(&resource.service_owner_id)
            .await?
            .is_none()
        {
            return Err(ErrorCode::ServiceOwnerNotConfigured.into());
        }
        // 4. Turning the scan off needs an approval in production.
        let disable_scan = request.disable_virus_scan.unwrap_or(false);
        if disable_scan
            && self.settings().production
            && !entry
                .as_ref()
                .is_some_and(|e| e.approved_for_disabled_virus_scan)
        {
            return Err(ErrorCode::VirusScanCannotBeDisabled.into());
        }
        // 6-7. Registered in the registry; recipients on its access list.
        let entry = entry.ok_or(ErrorCode::ResourceNotRegistered)?;
        if !recipients.iter().all(|r| entry.allows_recipient(r)) {
            return Err(ErrorCode::RecipientsNotInAccessList.into());
        }
        // 8. A required party must take part: as sender, or as the only recipient.
        if let Some(required) = resource.required_party.as_deref().map(normalize_org) {
            if required != sender_org {
                if recipients.len() > 1 {
                    return Err(ErrorCode::RequiredPartyOneRecipient.into());
                }
                if recipients.first() != Some(&required) {
                    return Err(ErrorCode::RequiredPartyMissing.into());
                }
            }
        }
        // Scanned unless the sender turned it off (allowed above) or the broker has no scanner.
        let use_virus_scan = !disable_scan && self.ports().scanner.is_some();
        let now = self.now();
        let new = NewTransfer {
            id: Uuid::new_v4(),
            resource_id,
            file_name: request.file_name.clone().unwrap_or_default(),
            senders_reference: request.senders_file_transfer_reference.clone(),
            sender,
            sender_org,
            sender_vendor: caller.vendor.clone(),
            recipients,
            property_list: request.property_list.clone().unwrap_or_default(),
            declared_checksum: request.declared_checksum().map(str::to_string),
            use_virus_scan,
            created: now,
            expiration_time: now + resource.time_to_live(),
            idempotency: idempotency_key.map(|k| (k, fingerprint)),
        };
        Ok(PreparedTransfer {
            new,
            size_limit: self
                .scannable_limit(use_virus_scan, max_file_size(use_virus_scan, &resource)),
        })
    }

    /// Writes a prepared transfer (Initialized, event `filetransferinitialized`); with an idempotency
    /// key used before for the same request, the earlier transfer's id.
    pub(crate) async fn create(&self, new: NewTransfer) -> Result<Uuid> {
        match self.lifecycle().initialize(new).await? {
            Created::New(id) | Created::Existing(id) => Ok(id),
            Created::KeyReused => Err(ErrorCode::IdempotencyKeyReused.into()),
        }
    }

    /// The transfer an Idempotency-Key already names for this request, if any (422 if for another).
    pub(crate) async fn idempotent_replay(&self, new: &NewTransfer) -> Result<Option<Uuid>> {
        let Some((key, fingerprint)) = &new.idempotency else {
            return Ok(None);
        };
        let since = new.created - chrono::Duration::hours(24);
        match self
            .ports()
            .metadata
            .idempotent_transfer(&new.sender_org, key, since)
            .await?
        {
            None => Ok(None),
            Some((id, hash)) if hash.as_deref() == Some(fingerprint.as_str()) => Ok(Some(id)),
            Some(_) => Err(ErrorCode::IdempotencyKeyReused.into()),
        }
    }
}
