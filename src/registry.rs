//! The resource registry: a stand-in for Altinn's Resource Registry. In `open` mode the first service
//! owner to configure a resource id owns it; in `file` mode resources, owners, access lists and approvals
//! come from a TOML file.

use broker_protocol::transfer::parse_org;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// Altinn's `ttd` test organisation maps to this org number.
const TTD_ORG: &str = "0192:991825827";

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

pub enum Registry {
    Open,
    File(HashMap<String, RegistryEntry>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    resource: Vec<ResourceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceEntry {
    id: String,
    owner: String,
    #[serde(default, rename = "accessListMode")]
    access_list_mode: Option<String>,
    #[serde(default)]
    access_list: Vec<String>,
    #[serde(default)]
    allowed_senders: Vec<String>,
    #[serde(default)]
    approved_for_disabled_virus_scan: bool,
}

fn org(raw: &str) -> Result<String, String> {
    if raw.eq_ignore_ascii_case("ttd") {
        return Ok(TTD_ORG.to_string());
    }
    parse_org(raw).ok_or_else(|| format!("'{raw}' is not an organisation number"))
}

impl Registry {
    pub fn from_file(path: &Path) -> Result<Registry, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: RegistryFile =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut entries = HashMap::new();
        for r in file.resource {
            let list = |v: &[String]| v.iter().map(|o| org(o)).collect::<Result<Vec<_>, _>>();
            let entry = RegistryEntry {
                owner: org(&r.owner)?,
                access_list_enabled: r
                    .access_list_mode
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case("enabled")),
                access_list: list(&r.access_list)?,
                allowed_senders: list(&r.allowed_senders)?,
                approved_for_disabled_virus_scan: r.approved_for_disabled_virus_scan,
            };
            entries.insert(r.id, entry);
        }
        Ok(Registry::File(entries))
    }

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
