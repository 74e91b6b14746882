//! The resource registry: a stand-in for Altinn's Resource Registry. In `open` mode the first service
//! owner to configure a resource id owns it; in `file` mode resources, owners, access lists and approvals
//! come from a TOML file.

use broker_protocol::transfer::parse_org;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

/// Altinn's `ttd` test organisation maps to this org number.
const TTD_ORG: &str = "0192:991825827";

pub use broker_actors::ports::{Registry, RegistryEntry};

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

/// Reads a registry file (TOML: `[[resource]]` entries).
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
        let id = broker_protocol::transfer::strip_resource_urn(&r.id);
        if !broker_protocol::transfer::is_valid_resource_id(id) {
            return Err(format!(
                "{}: '{}' is not a resource id (1 to 255 letters, digits, '-' and '_')",
                path.display(),
                r.id
            ));
        }
        entries.insert(id.to_string(), entry);
    }
    Ok(Registry::File(entries))
}
