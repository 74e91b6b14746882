//! Every configuration key with a one-line description, an example for keys that have no default,
//! and whether it is a secret: the one source `broker config` prints its template from, and the
//! README's table is checked against (tests/config_reference.rs).

use super::Config;

/// One key of the configuration file.
pub struct Key {
    /// The TOML table it sits in, e.g. `server` or `notify.smtp`.
    pub section: &'static str,
    pub name: &'static str,
    /// The value printed (commented out) when the key has no value: for keys without a default,
    /// and for every key of a section that is not configured.
    pub example: &'static str,
    /// Printed only with `--show-secrets`.
    pub secret: bool,
    pub doc: &'static str,
}

const fn entry(
    section: &'static str,
    name: &'static str,
    example: &'static str,
    secret: bool,
    doc: &'static str,
) -> Key {
    Key {
        section,
        name,
        example,
        secret,
        doc,
    }
}

/// A key with a default (never unset).
const fn key(section: &'static str, name: &'static str, doc: &'static str) -> Key {
    entry(section, name, "", false, doc)
}

/// A key that may be unset, with the value shown for it then.
const fn example(
    section: &'static str,
    name: &'static str,
    example: &'static str,
    doc: &'static str,
) -> Key {
    entry(section, name, example, false, doc)
}

/// A secret: printed only with `--show-secrets`.
const fn secret(
    section: &'static str,
    name: &'static str,
    example: &'static str,
    doc: &'static str,
) -> Key {
    entry(section, name, example, true, doc)
}

/// The array of tables whose entries are trusted token issuers.
pub const ISSUERS: &str = "auth.issuers";

/// Every key, in the order `broker config` prints them.
pub const KEYS: &[Key] = &[
    key("server", "listen", "address to serve on (port 0 picks a free port)"),
    example("server", "public_url", "\"https://broker.example.no\"", "the URL clients reach the broker at, used in event sources and links (default http://{listen})"),
    key("server", "min_data_rate", "bytes/s a request body must average after the grace period, else it is cut off"),
    key("server", "min_data_rate_grace_secs", "seconds before min_data_rate applies to a request body"),
    key("server", "upload_idle_timeout_secs", "a request body that sends nothing for this long is cut off (the upload stays retryable)"),
    key("server", "max_connections", "open connections at most (lowered to fit the open-file limit)"),
    key("server", "header_read_timeout_secs", "time to send a complete request head"),
    key("server", "keep_alive_timeout_secs", "an idle connection between requests is closed after this long"),
    key("server", "send_timeout_secs", "a response the client stops reading is cut after this long"),
    key("server", "max_header_bytes", "the largest request head"),
    key("server", "max_concurrent_uploads", "uploads streaming at once; more get 503 BRO-09007"),
    key("server", "tus_upload_expiry_secs", "a resumable upload untouched this long expires (sliding)"),
    key("server", "tus_sweep_interval_secs", "how often expired resumable uploads are looked for"),
    key("server", "cors_allowed_origins", "browser origins allowed to call the API, e.g. [\"https://app.example\"] or [\"*\"]; empty: no CORS"),
    key("server", "shutdown_grace_secs", "time in-flight requests get on SIGINT/SIGTERM"),
    key("server", "trusted_proxies", "proxies (addresses or CIDR blocks) whose X-Forwarded-For / X-Real-IP name the client"),
    key("storage", "kind", "where files live: local (data_dir/blobs)"),
    key("storage", "data_dir", "the database, files, reports and the development signing key"),
    key("storage", "reserve_bytes", "free space kept back: an upload that would eat into it gets 507 BRO-09001"),
    key("storage", "inline_max_bytes", "files up to this size sent in one request are kept in the database; 0 keeps all on disk"),
    key("database", "kind", "sqlite (embedded)"),
    example("database", "path", "\"/var/lib/broker/broker.db\"", "the SQLite file (default data_dir/broker.db)"),
    key("auth", "dev_issuer", "the development token issuer (key in data_dir, tokens from `broker token`); never in production"),
    key("auth", "dev_issuer_name", "the `iss` claim of development tokens"),
    key("auth", "allow_dev_issuer_on_public_address", "allow the development issuer on a non-loopback address"),
    key("auth", "clock_skew_secs", "seconds a token is still accepted past its expiry (Altinn allows none)"),
    example(ISSUERS, "issuer", "\"https://platform.altinn.no/authentication/api/v1/openid/\"", "the `iss` claim this issuer's tokens carry"),
    example(ISSUERS, "public_key_file", "\"/etc/broker/issuer.pem\"", "its PEM public key (RSA or P-256); or one of the two below"),
    example(ISSUERS, "jwks_file", "\"/etc/broker/issuer-jwks.json\"", "its JWKS document on disk"),
    example(ISSUERS, "jwks_url", "\"https://platform.altinn.no/authentication/api/v1/openid/.well-known/openid-configuration/jwks\"", "its JWKS URL, fetched again on an unknown kid"),
    key("registry", "mode", "open: the first service owner to configure a resource owns it; file: resources from registry.file"),
    example("registry", "file", "\"/etc/broker/resources.toml\"", "the resources file of mode = \"file\""),
    key("registry", "environment", "development or production (the 50 GB and disabled-virus-scan approvals, SSRF rules)"),
    key("limits", "max_recipients", "recipients one transfer may name"),
    key("limits", "max_tus_parts", "partial uploads one transfer may have; more get 400 BRO-09011"),
    key("limits", "max_json_body_bytes", "the largest JSON body; larger get 413 BRO-09008"),
    key("scan", "kind", "none (published unscanned) or clamd"),
    example("scan", "address", "\"tcp:127.0.0.1:3310\"", "clamd's address: tcp:HOST:PORT or unix:PATH"),
    key("scan", "timeout_secs", "the longest one window's scan may take"),
    key("scan", "max_concurrent", "scans running at once"),
    key("scan", "window_bytes", "the most bytes one scan sends (at most clamd's StreamMaxLength)"),
    key("scan", "overlap_bytes", "how much consecutive windows of a larger file overlap"),
    key("scan", "large_files", "windows: scan a file larger than one window in windows; refuse: 400 BRO-09012"),
    key("events", "allow_internal_endpoints", "in production, allow deliveries to loopback, private and other internal addresses"),
    key("events", "webhook_content_type", "the media type webhook bodies are sent as: application/json (as Altinn) or application/cloudevents+json"),
    key("events", "timeout_ms", "the longest one delivery attempt may take"),
    key("events", "retry_base_ms", "delay after a delivery's first failure, doubled per further failure"),
    key("events", "retry_max_secs", "the longest delay between attempts"),
    key("events", "retry_for_secs", "how long a delivery is retried before it is dead-lettered"),
    key("events", "per_endpoint", "attempts in flight at once per subscription"),
    key("events", "per_host", "attempts in flight at once per destination host"),
    key("events", "max_in_flight", "attempts in flight at once on this node"),
    key("events", "max_subscriptions_per_org", "webhook subscriptions one organisation may have"),
    key("events", "poll_ms", "how often the fan-out looks for deliveries that came due unannounced"),
    key("events", "secret_overlap_secs", "how long a rotated-out signing secret keeps signing beside the new one"),
    example("events", "forward_url", "\"https://platform.altinn.no\"", "also publish every event to this Altinn Events-compatible publisher"),
    secret("events", "forward_token", "\"…\"", "the bearer token events are forwarded with"),
    secret("metrics", "token", "\"…\"", "the bearer token /metrics requires (without one, loopback peers only)"),
    secret("statistics", "api_key", "\"…\"", "the X-API-Key the daily summary endpoints require (without one, they refuse every call)"),
    example("statistics", "rate_limit_requests", "10", "daily summary calls per client and window (default 10; 5 in development)"),
    key("statistics", "rate_limit_window_secs", "the daily summary's rate-limit window"),
    key("statistics", "status_message_resources", "resources whose transfers with statusmessage=true the daily summary leaves out"),
    example("statistics", "environment", "\"production\"", "the environment the daily summary names (default the registry's)"),
    example("notify.smtp", "host", "\"smtp.example.no\"", "the SMTP server e-mail to contact points goes through (without [notify.smtp], e-mail contact points are refused)"),
    example("notify.smtp", "port", "587", "its port"),
    example("notify.smtp", "tls", "\"starttls\"", "none, starttls or tls"),
    example("notify.smtp", "from", "\"Broker <broker@localhost>\"", "the sender address"),
    example("notify.smtp", "username", "\"broker\"", "the login (with password)"),
    secret("notify.smtp", "password", "\"…\"", "the login's password"),
    example("notify.smtp", "timeout_secs", "30", "the longest one message may take"),
    example("notify.smtp", "ca_file", "\"/etc/broker/smtp-ca.pem\"", "certificate authorities trusted for the server besides the public roots"),
    example("notify.sms", "url", "\"https://sms.example.no/send\"", "the SMS gateway each text is POSTed to (without [notify.sms], SMS contact points are refused)"),
    example("notify.sms", "body_template", r#"'{"to": "{to}", "message": "{message}"}'"#, "the JSON body, with {to} and {message} replaced"),
    secret("notify.sms", "token", "\"…\"", "sent as Authorization: Bearer"),
    example("notify.sms", "timeout_ms", "10000", "the longest one request to the gateway may take"),
];

/// The configuration as a TOML template: every key with its one-line description, set keys with
/// their values, the rest commented out with their example. Secrets are printed commented out and
/// redacted unless `show_secrets`.
pub fn render(config: &Config, show_secrets: bool) -> String {
    let tree = toml::Value::try_from(config).unwrap_or(toml::Value::Table(Default::default()));
    let mut out = String::from(
        "# Broker configuration (`broker config`): every key with a one-line description. Keys with a\n\
         # value show it (defaults included); the others are commented out with an example. Secrets are\n\
         # redacted unless `broker config --show-secrets`. Each key can also be set in the environment as\n\
         # BROKER__SECTION__KEY (lists as TOML, [\"a\", \"b\"], or comma-separated, a,b).\n",
    );
    let mut sections: Vec<&str> = vec![];
    for k in KEYS {
        if !sections.contains(&k.section) {
            sections.push(k.section);
        }
    }
    for section in sections {
        let keys: Vec<&Key> = KEYS.iter().filter(|k| k.section == section).collect();
        if section == ISSUERS {
            let issuers = lookup(&tree, section)
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default();
            if issuers.is_empty() {
                out.push_str(&format!("\n# [[{section}]]\n"));
                for k in &keys {
                    push_key(&mut out, k, None, show_secrets);
                }
            }
            for issuer in &issuers {
                out.push_str(&format!("\n[[{section}]]\n"));
                for k in &keys {
                    push_key(&mut out, k, issuer.get(k.name), show_secrets);
                }
            }
            continue;
        }
        let table = lookup(&tree, section);
        out.push_str(&match table {
            Some(_) => format!("\n[{section}]\n"),
            None => format!("\n# [{section}]\n"),
        });
        for k in keys {
            push_key(&mut out, k, table.and_then(|t| t.get(k.name)), show_secrets);
        }
    }
    out
}

fn lookup<'a>(tree: &'a toml::Value, dotted: &str) -> Option<&'a toml::Value> {
    dotted
        .split('.')
        .try_fold(tree, |node, part| node.get(part))
}

fn push_key(out: &mut String, key: &Key, value: Option<&toml::Value>, show_secrets: bool) {
    out.push_str(&format!("# {}\n", key.doc));
    match value {
        Some(_) if key.secret && !show_secrets => out.push_str(&format!(
            "# {} = \"(set; redacted: broker config --show-secrets prints it)\"\n",
            key.name
        )),
        Some(v) => out.push_str(&format!("{} = {v}\n", key.name)),
        None => out.push_str(&format!("# {} = {}\n", key.name, key.example)),
    }
}
