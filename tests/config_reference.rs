//! `broker config` is a complete template: every key of the configuration (checked against the
//! configuration types and against the README's table), secrets redacted unless asked for, and the
//! shipped production example loads.

use broker::config::reference::{Key, ISSUERS, KEYS};
use broker::config::{Config, Environment, Overrides, ScanKind};
use std::collections::BTreeSet;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_broker");

fn dotted(k: &Key) -> String {
    format!("{}.{}", k.section, k.name)
}

fn reference_keys() -> BTreeSet<String> {
    KEYS.iter().map(dotted).collect()
}

/// A TOML document that sets every key of the reference: its example, else its default.
fn every_key_set() -> toml::Value {
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let mut tree = toml::Table::new();
    for k in KEYS {
        let value = if k.example.is_empty() {
            k.section
                .split('.')
                .chain([k.name])
                .try_fold(&defaults, |node, part| node.get(part))
                .unwrap_or_else(|| panic!("{} has neither an example nor a default", dotted(k)))
                .clone()
        } else {
            toml::from_str::<toml::Table>(&format!("v = {}", k.example))
                .unwrap_or_else(|e| panic!("the example of {} is not TOML: {e}", dotted(k)))
                .remove("v")
                .unwrap()
        };
        let mut node = &mut tree;
        for part in k.section.split('.') {
            node = node
                .entry(part)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap();
        }
        node.insert(k.name.to_string(), value);
    }
    // The issuers are an array of tables.
    let auth = tree.get_mut("auth").unwrap().as_table_mut().unwrap();
    let issuer = auth.remove("issuers").unwrap();
    auth.insert("issuers".into(), toml::Value::Array(vec![issuer]));
    toml::Value::Table(tree)
}

/// The dotted path of every field a JSON form of the configuration has (an array of objects counts
/// as its objects' fields).
fn leaf_paths(value: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_paths(v, &path, out);
            }
        }
        serde_json::Value::Array(items) if items.iter().any(|i| i.is_object()) => {
            for item in items {
                leaf_paths(item, prefix, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

#[test]
fn the_reference_names_every_key_of_the_configuration_and_no_other() {
    // deny_unknown_fields: a key the reference names but the configuration lacks is refused here.
    let config: Config = every_key_set()
        .try_into()
        .unwrap_or_else(|e| panic!("the reference names a key the configuration lacks: {e}"));
    // Every field serializes (an unset option as null): none may be missing from the reference.
    let mut fields = BTreeSet::new();
    leaf_paths(&serde_json::to_value(&config).unwrap(), "", &mut fields);
    assert_eq!(fields, reference_keys());
}

/// The keys `broker config` printed, set or commented out, by section.
fn printed_keys(text: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines() {
        let bare = line.trim_start_matches("# ").trim();
        if bare.starts_with('[') && bare.ends_with(']') {
            section = bare.trim_matches(['[', ']']).to_string();
        } else if let Some((name, _)) = bare.split_once(" = ") {
            if !name.contains(' ') && !section.is_empty() {
                keys.insert(format!("{section}.{name}"));
            }
        }
    }
    keys
}

/// `broker config` with `env` as its only `BROKER__` settings (the test command itself sets some,
/// e.g. `BROKER__STORAGE__INLINE_MAX_BYTES=0` for its second integration run).
fn broker_config(args: &[&str], env: &[(String, String)]) -> String {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("BROKER__")) {
        command.env_remove(key);
    }
    let out = command
        .arg("config")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn broker_config_prints_every_key_with_a_comment_and_reads_back_as_the_same_configuration() {
    let text = broker_config(&[], &[]);
    assert_eq!(printed_keys(&text), reference_keys(), "{text}");
    for k in KEYS {
        assert!(
            text.contains(&format!("# {}\n", k.doc)),
            "{} has its one-line comment",
            dotted(k)
        );
    }
    // The template is itself a configuration file: as printed, it is the defaults.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broker.toml");
    std::fs::write(&file, &text).unwrap();
    let loaded = Config::load(Some(&file), Vec::new(), &Overrides::default()).unwrap();
    assert_eq!(
        toml::Value::try_from(&loaded).unwrap(),
        toml::Value::try_from(Config::default()).unwrap()
    );
}

#[test]
fn the_readme_table_documents_exactly_the_configuration_keys() {
    let readme = include_str!("../README.md");
    let table = readme
        .split("| section | key | default | meaning |")
        .nth(1)
        .expect("the README has the configuration table");
    let mut documented = BTreeSet::new();
    for row in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for key in cells[2].split(", ") {
            documented.insert(format!("{}.{key}", cells[1]));
        }
    }
    // The README names the issuers' array once; the reference each of its fields.
    let expected: BTreeSet<String> = KEYS
        .iter()
        .map(|k| match k.section {
            ISSUERS => ISSUERS.to_string(),
            _ => dotted(k),
        })
        .collect();
    assert_eq!(documented, expected);
}

#[test]
fn every_secret_is_redacted_unless_asked_for() {
    let secrets: Vec<&Key> = KEYS.iter().filter(|k| k.secret).collect();
    assert!(
        secrets.len() >= 5,
        "the secrets are marked in the reference"
    );
    let env_name = |section: &str, name: &str| {
        format!(
            "BROKER__{}__{}",
            section.replace('.', "__").to_uppercase(),
            name.to_uppercase()
        )
    };
    let mut env: Vec<(String, String)> = secrets
        .iter()
        .map(|k| {
            (
                env_name(k.section, k.name),
                format!("s3cret-{}-value", k.name),
            )
        })
        .collect();
    // What the sections holding secrets need besides them.
    for (section, name, value) in [
        ("notify.smtp", "host", "smtp.example.no"),
        ("notify.smtp", "username", "broker"),
        ("notify.sms", "url", "https://sms.example.no/send"),
        ("events", "forward_url", "https://events.example.no"),
    ] {
        env.push((env_name(section, name), value.to_string()));
    }
    let shown = broker_config(&["--show-secrets"], &env);
    let redacted = broker_config(&[], &env);
    for k in secrets {
        let value = format!("s3cret-{}-value", k.name);
        assert!(
            shown.contains(&format!("{} = \"{value}\"", k.name)),
            "--show-secrets prints {}",
            dotted(k)
        );
        assert!(
            !redacted.contains(&value),
            "{} is printed without --show-secrets",
            dotted(k)
        );
        assert!(
            redacted.contains(&format!(
                "# {} = \"(set; redacted: broker config --show-secrets prints it)\"",
                k.name
            )),
            "{} is marked as set and redacted",
            dotted(k)
        );
    }
    assert!(
        redacted.contains("host = \"smtp.example.no\""),
        "{redacted}"
    );
}

#[test]
fn the_production_example_loads_with_a_real_issuer_scanning_and_the_production_rules() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/production.toml");
    let config = Config::load(Some(file.as_ref()), Vec::new(), &Overrides::default()).unwrap();
    assert!(!config.auth.dev_issuer);
    assert_eq!(config.auth.issuers.len(), 1);
    assert_eq!(config.registry.environment, Environment::Production);
    assert_eq!(config.scan.kind, ScanKind::Clamd);
    assert!(config.metrics.token.is_some());
    assert!(config.notify.smtp.is_some());
}
