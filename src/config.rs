//! Typed, layered configuration: defaults -> TOML file -> `BROKER__SECTION__KEY` env -> command-line flags.

mod events;
mod layers;
mod notify;
pub mod reference;
mod scan;
mod statistics;

pub use events::{EventsConfig, MetricsConfig, WebhookContentType};
pub use notify::{NotifyConfig, SmsConfig, SmtpConfig, SmtpTls, DEFAULT_SMS_TEMPLATE};
pub use scan::{LargeFileScan, ScanConfig, ScanKind};
use serde::{Deserialize, Serialize};
pub use statistics::StatisticsConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub registry: RegistryConfig,
    pub limits: LimitsConfig,
    pub scan: ScanConfig,
    pub events: EventsConfig,
    pub metrics: MetricsConfig,
    pub statistics: StatisticsConfig,
    pub notify: NotifyConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// The URL clients reach this server at; used as the CloudEvent `source` prefix.
    /// Defaults to `http://{listen}`.
    pub public_url: Option<String>,
    /// A request body slower than this (bytes/s, averaged) after the grace period is cut off.
    pub min_data_rate: u64,
    pub min_data_rate_grace_secs: u64,
    /// A request body (an upload, mostly) that sends nothing for this long is cut off (its slot frees
    /// up for a retry).
    pub upload_idle_timeout_secs: u64,
    /// Open connections at most. At the cap a new connection closes the oldest one that is idle or has
    /// not finished its request head; only when every connection is busy is it refused (503).
    pub max_connections: usize,
    /// Time a client has to send a complete request head (from connecting, or from its first byte after
    /// an idle period), as Kestrel's RequestHeadersTimeout.
    pub header_read_timeout_secs: u64,
    /// An idle connection between requests is closed after this long.
    pub keep_alive_timeout_secs: u64,
    /// A response the client stops reading (nothing more fits in its socket) is cut after this long.
    pub send_timeout_secs: u64,
    /// The largest request head (request line and headers). A tus `final` POST lists every part's
    /// URL in one header, about 115 bytes each.
    pub max_header_bytes: usize,
    /// Uploads streaming at once; more get 503 `BRO-09007` (retryable).
    pub max_concurrent_uploads: usize,
    /// A resumable (tus) upload untouched this long expires: its bytes are removed (sliding, 24 h).
    pub tus_upload_expiry_secs: u64,
    /// How often expired resumable uploads are looked for.
    pub tus_sweep_interval_secs: u64,
    /// Browser origins allowed to call the API (CORS), e.g. `["https://app.example"]`, or `["*"]`;
    /// empty (the default) sends no CORS headers.
    pub cors_allowed_origins: Vec<String>,
    /// How long a shutdown waits for in-flight requests before cutting uploads (left retryable).
    pub shutdown_grace_secs: u64,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` / `X-Real-IP` name the client for
    /// per-client limits; empty (the default): the peer address is the client.
    pub trusted_proxies: Vec<String>,
}

/// Bounds on what one request may ask for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Recipients one transfer may name (as sent, before duplicates are merged).
    pub max_recipients: usize,
    /// Partial uploads (tus concatenation) one transfer may have at once.
    pub max_tus_parts: usize,
    /// The largest JSON request body; larger ones get 413 `BRO-09008`.
    pub max_json_body_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_recipients: 1000,
            max_tus_parts: 1000,
            max_json_body_bytes: 16 << 20,
        }
    }
}

/// The most recipients `limits.max_recipients` may allow: bodies are parsed no further than this.
pub const RECIPIENTS_CEILING: usize = broker_protocol::transfer::RECIPIENTS_CEILING;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StorageKind {
    /// Files on the local disk under `data_dir/blobs`.
    Local,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub kind: StorageKind,
    pub data_dir: PathBuf,
    /// Space kept free on the data disk: an upload whose declared length would eat into it is refused.
    pub reserve_bytes: u64,
    /// Files up to this size that arrive in one request are kept in the metadata database, written
    /// in the same transaction as the upload's transition (no file, no inode); 0 keeps every file on
    /// disk.
    pub inline_max_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseKind {
    /// Embedded SQLite in `data_dir/broker.db` (or `path`).
    Sqlite,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub kind: DatabaseKind,
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The development issuer: a signing key in the data dir, tokens minted by `broker token`.
    pub dev_issuer: bool,
    pub dev_issuer_name: String,
    /// Allow the development issuer on a non-loopback address (never do this in production).
    pub allow_dev_issuer_on_public_address: bool,
    /// Seconds a token is still accepted past its expiry (Altinn checks lifetime with no skew).
    pub clock_skew_secs: u64,
    pub issuers: Vec<IssuerConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` claim this issuer's tokens carry.
    pub issuer: String,
    /// A PEM public key (RSA or EC P-256).
    pub public_key_file: Option<PathBuf>,
    /// A JWKS document on disk.
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL, refetched when a token names an unknown `kid`.
    pub jwks_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryMode {
    /// The first service owner to configure a resource id owns it.
    Open,
    /// Resources, owners and access lists come from `registry.file`.
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    pub mode: RegistryMode,
    pub file: Option<PathBuf>,
    pub environment: Environment,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            public_url: None,
            min_data_rate: 100,
            min_data_rate_grace_secs: 10,
            upload_idle_timeout_secs: 120,
            max_connections: 8192,
            header_read_timeout_secs: 30,
            keep_alive_timeout_secs: 120,
            send_timeout_secs: 60,
            max_header_bytes: 128 << 10,
            max_concurrent_uploads: 256,
            tus_upload_expiry_secs: 86_400,
            tus_sweep_interval_secs: 60,
            cors_allowed_origins: vec![],
            shutdown_grace_secs: 10,
            trusted_proxies: vec![],
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: StorageKind::Local,
            data_dir: "./broker-data".into(),
            reserve_bytes: 256 << 20,
            inline_max_bytes: 64 << 10,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            kind: DatabaseKind::Sqlite,
            path: None,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            dev_issuer: true,
            dev_issuer_name: "broker-dev".into(),
            allow_dev_issuer_on_public_address: false,
            clock_skew_secs: 0,
            issuers: vec![],
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            mode: RegistryMode::Open,
            file: None,
            environment: Environment::Development,
        }
    }
}

/// Overrides given on the command line (applied last).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("invalid config file {0}: {1}")]
    Parse(PathBuf, String),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the layers in order; `env` is the process environment (passed in so tests stay hermetic).
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut tree = toml::Value::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
            let layer: toml::Value = toml::from_str(&text)
                .map_err(|e| ConfigError::Parse(path.into(), e.to_string()))?;
            layers::merge(&mut tree, layer);
        }
        layers::apply_env(&mut tree, env);
        let mut config: Config = tree
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        if let Some(listen) = overrides.listen {
            config.server.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            config.storage.data_dir = dir.clone();
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        let server = &self.server;
        if server.max_connections == 0 {
            return invalid("server.max_connections must be at least 1".into());
        }
        if server.header_read_timeout_secs == 0
            || server.keep_alive_timeout_secs == 0
            || server.send_timeout_secs == 0
        {
            return invalid(
                "server.header_read_timeout_secs, keep_alive_timeout_secs and send_timeout_secs must be at least 1"
                    .into(),
            );
        }
        if server.max_header_bytes < 4096 {
            return invalid("server.max_header_bytes must be at least 4096".into());
        }
        crate::http::client_address::TrustedProxies::parse(&server.trusted_proxies)
            .map_err(ConfigError::Invalid)?;
        let limits = &self.limits;
        if limits.max_recipients == 0 || limits.max_recipients > RECIPIENTS_CEILING {
            return invalid(format!(
                "limits.max_recipients must be between 1 and {RECIPIENTS_CEILING}"
            ));
        }
        if limits.max_tus_parts == 0 {
            return invalid("limits.max_tus_parts must be at least 1".into());
        }
        if limits.max_json_body_bytes < 1024 {
            return invalid("limits.max_json_body_bytes must be at least 1024".into());
        }
        let scan = &self.scan;
        if scan.kind == ScanKind::Clamd {
            match scan
                .address
                .as_deref()
                .map(str::parse::<crate::scan::clamd::ClamdAddress>)
            {
                Some(Ok(_)) => {}
                Some(Err(e)) => return invalid(format!("scan.address: {e}")),
                None => return invalid("scan.kind = \"clamd\" needs scan.address".into()),
            }
        }
        if scan.window_bytes < 1 << 20 || scan.overlap_bytes >= scan.window_bytes / 2 {
            return invalid(
                "scan.window_bytes must be at least 1 MiB, and scan.overlap_bytes less than half of it"
                    .into(),
            );
        }
        if scan.max_concurrent == 0 || scan.timeout_secs == 0 {
            return invalid("scan.max_concurrent and scan.timeout_secs must be at least 1".into());
        }
        self.events.validate().map_err(ConfigError::Invalid)?;
        self.statistics.validate().map_err(ConfigError::Invalid)?;
        self.notify.validate().map_err(ConfigError::Invalid)?;
        if self.registry.mode == RegistryMode::File && self.registry.file.is_none() {
            return Err(ConfigError::Invalid(
                "registry.mode = \"file\" needs registry.file".into(),
            ));
        }
        for issuer in &self.auth.issuers {
            let sources = [
                issuer.public_key_file.is_some(),
                issuer.jwks_file.is_some(),
                issuer.jwks_url.is_some(),
            ];
            if sources.iter().filter(|s| **s).count() != 1 {
                return Err(ConfigError::Invalid(format!(
                    "issuer {} needs exactly one of public_key_file, jwks_file, jwks_url",
                    issuer.issuer
                )));
            }
        }
        if !self.auth.dev_issuer && self.auth.issuers.is_empty() {
            return Err(ConfigError::Invalid(
                "no token issuer: enable auth.dev_issuer or configure auth.issuers".into(),
            ));
        }
        Ok(())
    }

    pub fn database_path(&self) -> PathBuf {
        self.database
            .path
            .clone()
            .unwrap_or_else(|| self.storage.data_dir.join("broker.db"))
    }

    /// The configuration as a commented TOML template (every key; secrets redacted unless
    /// `show_secrets`).
    pub fn to_template(&self, show_secrets: bool) -> String {
        reference::render(self, show_secrets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_beat_the_file_and_flags_beat_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:9000\"\nmin_data_rate = 5\n",
        )
        .unwrap();
        let env = vec![
            ("BROKER__SERVER__MIN_DATA_RATE".to_string(), "7".to_string()),
            (
                "BROKER__STORAGE__DATA_DIR".to_string(),
                "/tmp/x".to_string(),
            ),
            ("BROKER_URL".to_string(), "ignored".to_string()),
        ];
        let flags = Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: None,
        };
        let c = Config::load(Some(&file), env, &flags).unwrap();
        assert_eq!(c.server.min_data_rate, 7);
        assert_eq!(c.server.listen.port(), 0);
        assert_eq!(c.storage.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn a_list_in_the_environment_may_be_comma_separated_or_toml() {
        let env = vec![
            (
                "BROKER__SERVER__CORS_ALLOWED_ORIGINS".to_string(),
                "http://a.example, http://b.example".to_string(),
            ),
            (
                "BROKER__SERVER__TRUSTED_PROXIES".to_string(),
                r#"["10.0.0.0/8", "::1"]"#.to_string(),
            ),
            (
                "BROKER__STATISTICS__STATUS_MESSAGE_RESOURCES".to_string(),
                "one".to_string(),
            ),
        ];
        let c = Config::load(None, env, &Overrides::default()).unwrap();
        assert_eq!(
            c.server.cors_allowed_origins,
            ["http://a.example", "http://b.example"]
        );
        assert_eq!(c.server.trusted_proxies, ["10.0.0.0/8", "::1"]);
        assert_eq!(c.statistics.status_message_resources, ["one"]);
    }

    #[test]
    fn an_unknown_key_is_a_clear_error() {
        let env = vec![("BROKER__SERVER__LISTN".to_string(), "x".to_string())];
        let err = Config::load(None, env, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }
}
