//! The resource registry (a stand-in for Altinn's Resource Registry): who owns a resource, who may send
//! on it and receive from it. In open mode the first service owner to configure a resource owns it; a
//! registry file (read by the server crate) lists resources, owners, access lists and approvals.

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct RegistryEntry {
    /// Owner org (`0192:NNN`).
    pub owner: String,
    pub access_list_enabled: bool,
    pub access_list: Vec<String>,
    /// Broker extension: orgs allowed to send on the resource; empty = any.
    pub allowed_senders: Vec<String>,
    pub approved_for_disabled_virus_scan: bool,
}

#[derive(Debug, Clone)]
pub enum Registry {
    Open,
    File(HashMap<String, RegistryEntry>),
}

impl Registry {
    /// The registry's entry for a resource. In open mode every resource exists, owned by
    /// `configured_owner` (the owner stored when it was first configured) or else by `claimant`.
    pub fn lookup(
        &self,
        resource_id: &str,
        configured_owner: Option<&str>,
        claimant: Option<&str>,
    ) -> Option<RegistryEntry> {
        match self {
            Registry::File(entries) => entries.get(resource_id).cloned(),
            Registry::Open => Some(RegistryEntry {
                owner: configured_owner.or(claimant)?.to_string(),
                access_list_enabled: false,
                access_list: vec![],
                allowed_senders: vec![],
                approved_for_disabled_virus_scan: false,
            }),
        }
    }
}

impl RegistryEntry {
    pub fn allows_sender(&self, sender_org: &str) -> bool {
        self.allowed_senders.is_empty() || self.allowed_senders.iter().any(|s| s == sender_org)
    }

    pub fn allows_recipient(&self, recipient_org: &str) -> bool {
        !self.access_list_enabled || self.access_list.iter().any(|s| s == recipient_org)
    }
}
