//! Who may do what to a transfer: the caller's identity as its token told it, and the checks every
//! command makes before it acts (spec 0.3). Authentication itself is the transport's.

use crate::error::{Error, Result};
use crate::ports::metadata::{ResourceRow, TransferView};
use crate::Broker;
use broker_protocol::ErrorCode;
use std::collections::HashSet;
use uuid::Uuid;

/// Largest transfer with virus scanning (50 GB), and the global cap (32 MiB x 50,000 blocks).
pub const MAX_VIRUS_SCAN_SIZE: i64 = 50_000_000_000;
pub const MAX_FILE_SIZE: i64 = 32 * 50_000 * 1024 * 1024;

/// Who is calling, as far as the token tells.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The caller's organisation, normalised to `0192:NNNNNNNNN`, if the claims name one.
    pub org: Option<String>,
    pub scopes: HashSet<String>,
    /// The vendor whose system acts for `org`: `consumer.ID` of a system-user token, normalised (for
    /// statistics). `None` when the organisation calls with its own credentials.
    pub vendor: Option<String>,
}

impl Caller {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// The caller acts as the transfer's sender.
    pub(crate) fn require_sender(&self, view: &TransferView) -> Result<()> {
        match &self.org {
            Some(org) if *org == view.sender_org => Ok(()),
            _ => Err(ErrorCode::NoAccess.into()),
        }
    }

    /// The caller is one of the transfer's recipients; returns the caller's org.
    pub(crate) fn require_recipient(&self, view: &TransferView) -> Result<String> {
        match &self.org {
            Some(org) if view.is_recipient(org) => Ok(org.clone()),
            _ => Err(ErrorCode::NoAccess.into()),
        }
    }

    /// The caller is the sender or a recipient.
    pub(crate) fn require_party(&self, view: &TransferView) -> Result<()> {
        match &self.org {
            Some(org) if *org == view.sender_org || view.is_recipient(org) => Ok(()),
            _ => Err(ErrorCode::NoAccess.into()),
        }
    }
}

/// The largest file a transfer may hold: the global cap, the virus-scan cap when scanned, and the
/// resource's own maximum.
pub fn max_file_size(use_virus_scan: bool, resource: &ResourceRow) -> u64 {
    let mut limit = MAX_FILE_SIZE;
    if use_virus_scan {
        limit = limit.min(MAX_VIRUS_SCAN_SIZE);
    }
    if let Some(max) = resource.max_file_transfer_size {
        limit = limit.min(max);
    }
    limit.max(0) as u64
}

impl Broker {
    /// The transfer, or 404 `BRO-00001`.
    pub(crate) async fn view(&self, id: Uuid) -> Result<TransferView> {
        self.ports()
            .metadata
            .transfer(id)
            .await?
            .ok_or(Error::Refused(ErrorCode::FileTransferNotFound))
    }

    /// The resource and its service owner must still exist: 403 `5` and 400 `2` otherwise.
    pub(crate) async fn resource_of(&self, view: &TransferView) -> Result<ResourceRow> {
        let metadata = &self.ports().metadata;
        let resource = metadata
            .resource(&view.resource_id)
            .await?
            .ok_or(ErrorCode::ResourceNotRegistered)?;
        if metadata
            .service_owner(&resource.service_owner_id)
            .await?
            .is_none()
        {
            return Err(ErrorCode::ServiceOwnerNotConfigured.into());
        }
        Ok(resource)
    }

    /// The largest file this transfer may hold (no more than one scan window where larger scanned
    /// files are refused).
    pub(crate) async fn size_limit(&self, view: &TransferView) -> Result<u64> {
        let limit = max_file_size(view.use_virus_scan, &self.resource_of(view).await?);
        Ok(self.scannable_limit(view.use_virus_scan, limit))
    }

    /// The caller's transfer as its sender, while an upload may still go to it.
    pub(crate) async fn sender_transfer(&self, caller: &Caller, id: Uuid) -> Result<TransferView> {
        let view = self.view(id).await?;
        caller.require_sender(&view)?;
        if !view.stage().accepts_upload() {
            return Err(ErrorCode::FileTransferAlreadyUploaded.into());
        }
        Ok(view)
    }
}
