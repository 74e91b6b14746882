//! The layers under the typed configuration: a file's TOML merged over the defaults, then
//! `BROKER__SECTION__KEY` environment values set into the tree.

/// Sets each `BROKER__SECTION__KEY` of `env` into `tree`; other variables are ignored.
pub fn apply_env(tree: &mut toml::Value, env: impl IntoIterator<Item = (String, String)>) {
    for (key, value) in env {
        let Some(rest) = key.strip_prefix("BROKER__") else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let mut parsed = parse_env_value(&value);
        // A list may also be given comma-separated (`a,b`), not only as TOML (`["a", "b"]`).
        if is_list(tree, &path) && !parsed.is_array() {
            parsed = toml::Value::Array(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| toml::Value::String(item.to_string()))
                    .collect(),
            );
        }
        set_path(tree, &path, parsed);
    }
}

/// Whether the key at `path` holds a list in the defaults.
fn is_list(tree: &toml::Value, path: &[String]) -> bool {
    path.iter()
        .try_fold(tree, |node, part| node.get(part.as_str()))
        .is_some_and(toml::Value::is_array)
}

/// Merges `layer` over `base`, table by table; any other value replaces the one below.
pub fn merge(base: &mut toml::Value, layer: toml::Value) {
    match (base, layer) {
        (toml::Value::Table(b), toml::Value::Table(l)) => {
            for (k, v) in l {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, l) => *b = l,
    }
}

fn set_path(tree: &mut toml::Value, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = tree;
    for p in parents {
        let toml::Value::Table(t) = node else { return };
        node = t
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    if let toml::Value::Table(t) = node {
        t.insert(last.clone(), value);
    }
}

/// An env value is read as a TOML value when it parses as one (numbers, booleans, arrays), else as a string.
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}
