//! Broker: a managed file-transfer service, wire-compatible with the Altinn 3 Broker v1 API.
//!
//! One entry point, [`serve`]: `main` parses the configuration, binds and calls it; tests and examples
//! call it on port 0.

pub mod auth;
pub mod blob;
pub mod config;
pub mod daily_report;
pub mod db;
pub mod deliver;
pub mod http;
pub mod metrics;
pub mod registry;
pub mod scan;
pub mod util;

use crate::auth::dev_issuer::DevIssuer;
use crate::auth::Authenticator;
use crate::config::{Config, RegistryMode};
use crate::http::app::AppState;
use crate::registry::Registry;

use anyhow::Context;
use broker_actors::{Broker, Ports, Settings, SystemClock};
use std::future::Future;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The CloudEvent `source` of this deployment.
pub fn event_source(config: &Config) -> String {
    let base = config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.server.listen));
    format!("{}/broker/api/v1/filetransfer", base.trim_end_matches('/'))
}

/// Creates the data dir private (0700). An existing directory keeps its mode (it may be a directory
/// the operator chose on purpose), with a warning when others can read it.
fn create_data_dir(config: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = &config.storage.data_dir;
    if let Ok(meta) = std::fs::metadata(dir) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(dir = %dir.display(), "the data dir is accessible to other users; consider chmod 700");
        }
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    // The umask may have narrowed the mode further, never widened it; set it exactly.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict the data dir {}", dir.display()))?;
    Ok(())
}

/// Builds the application: storage, authentication, registry and the lifecycle.
pub async fn build(config: Config) -> anyhow::Result<Arc<AppState>> {
    create_data_dir(&config)?;
    let store = Arc::new(
        db::sqlite::SqliteStore::open(&config.database_path())
            .await
            .with_context(|| {
                format!(
                    "cannot open the database {}",
                    config.database_path().display()
                )
            })?,
    );
    let disk = Arc::new(blob::local::LocalBlobStore::open(&config.storage.data_dir)?);
    let blobs = Arc::new(blob::inline::InlineBlobStore::new(
        disk,
        store.clone(),
        config.storage.inline_max_bytes,
    ));
    let mut auth = Authenticator::new(config.auth.clock_skew_secs);
    if config.auth.dev_issuer {
        let dev = DevIssuer::ensure(&config.storage.data_dir, &config.auth.dev_issuer_name)
            .map_err(anyhow::Error::msg)?;
        auth.add_issuer_key(
            &dev.name,
            Some(dev.kid.clone()),
            dev.decoding_key().map_err(anyhow::Error::msg)?,
            jsonwebtoken::Algorithm::ES256,
        );
        tracing::warn!(
            issuer = %dev.name,
            "DEVELOPMENT TOKEN ISSUER ENABLED: anyone who can read {} can mint tokens. Disable auth.dev_issuer in production.",
            auth::dev_issuer::key_path(&config.storage.data_dir).display()
        );
    }
    for (i, issuer) in config.auth.issuers.iter().enumerate() {
        auth.add_configured(issuer)
            .await
            .map_err(|e| anyhow::anyhow!("auth.issuers[{i}] (issuer {:?}): {e}", issuer.issuer))?;
    }
    let registry = match config.registry.mode {
        RegistryMode::Open => Registry::Open,
        RegistryMode::File => {
            let path = config
                .registry
                .file
                .as_ref()
                .context("registry.file is not set")?;
            registry::from_file(path).map_err(|e| anyhow::anyhow!("registry.file: {e}"))?
        }
    };
    let clock = Arc::new(SystemClock);
    let ports = Ports {
        metadata: store.clone(),
        sessions: store.clone(),
        outbox: store.clone(),
        blobs: blobs.clone(),
        clock: clock.clone(),
        registry: Arc::new(registry),
        jobs: store.clone(),
        scanner: scanner(&config.scan)?,
        subscriptions: store.clone(),
        statistics: store.clone(),
        notifier: Arc::new(deliver::notify::Notifiers::new(&config.notify)?),
        leases: store.clone(),
        // One process holds the embedded database: its wake-ups stay in the process.
        signals: Arc::new(broker_actors::local_signals::LocalSignals::default()),
        webhooks: Arc::new(deliver::webhook::HttpWebhooks::new(
            std::time::Duration::from_millis(config.events.timeout_ms),
            config.events.per_host,
            config.events.allow_internal_endpoints
                || config.registry.environment != config::Environment::Production,
        )?),
    };
    let shutdown = CancellationToken::new();
    let broker = Broker::new(ports, settings(&config), shutdown.clone());
    let development = config.registry.environment == config::Environment::Development;
    let daily_summary_limit = http::rate_limit::RateLimiter::new(
        store.clone(),
        config
            .statistics
            .rate_limit_requests
            .unwrap_or(if development { 5 } else { 10 }),
        std::time::Duration::from_secs(config.statistics.rate_limit_window_secs),
    );
    let trusted_proxies =
        http::client_address::TrustedProxies::parse(&config.server.trusted_proxies)
            .map_err(anyhow::Error::msg)?;
    Ok(Arc::new(AppState {
        trusted_proxies,
        config,
        broker,
        auth,
        shutdown,
        daily_summary_limit,
    }))
}

/// The scanner the configuration names, or none (said loudly: uploads are then published unscanned).
fn scanner(
    config: &config::ScanConfig,
) -> anyhow::Result<Option<Arc<dyn broker_actors::ports::Scanner>>> {
    match config.kind {
        config::ScanKind::None => {
            tracing::warn!("MALWARE SCANNING IS OFF (scan.kind = \"none\"): uploads are published unscanned and say useVirusScan: false. Set scan.kind = \"clamd\" and scan.address to scan them");
            Ok(None)
        }
        config::ScanKind::Clamd => {
            let address = config
                .address
                .as_deref()
                .context("scan.kind = \"clamd\" needs scan.address")?
                .parse()
                .map_err(anyhow::Error::msg)?;
            tracing::info!(
                ?address,
                window_bytes = config.window_bytes,
                "uploads are scanned by clamd"
            );
            Ok(Some(Arc::new(scan::clamd::ClamdScanner::new(
                address,
                std::time::Duration::from_secs(config.timeout_secs),
            ))))
        }
    }
}

/// What the application needs of the configuration.
fn settings(config: &Config) -> Settings {
    Settings {
        production: config.registry.environment == config::Environment::Production,
        max_recipients: config.limits.max_recipients,
        max_tus_parts: config.limits.max_tus_parts,
        tus_upload_expiry: chrono::Duration::seconds(config.server.tus_upload_expiry_secs as i64),
        reserve_bytes: config.storage.reserve_bytes,
        max_concurrent_uploads: config.server.max_concurrent_uploads,
        event_source: event_source(config),
        tus_sweep_interval: chrono::Duration::seconds(
            config.server.tus_sweep_interval_secs.max(1) as i64
        ),
        scan: broker_actors::ScanSettings {
            window_bytes: config.scan.window_bytes,
            overlap_bytes: config.scan.overlap_bytes,
            max_concurrent: config.scan.max_concurrent,
            large_files: match config.scan.large_files {
                config::LargeFileScan::Windows => broker_actors::LargeFiles::Windows,
                config::LargeFileScan::Refuse => broker_actors::LargeFiles::Refuse,
            },
        },
        deliveries: config.events.settings(),
    }
}

/// Serves the API on `listener` until `shutdown` completes; prints `listening on http://ADDR` when ready. Streaming uploads are then stopped (and
/// stay retryable); other requests get `shutdown_grace_secs` to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    config.server.listen = local;
    if config.auth.dev_issuer
        && !util::is_loopback(local.ip())
        && !config.auth.allow_dev_issuer_on_public_address
    {
        anyhow::bail!(
            "refusing to serve the development token issuer on the non-loopback address {local}: \
             listen on 127.0.0.1, disable auth.dev_issuer, or set auth.allow_dev_issuer_on_public_address = true"
        );
    }
    let grace = std::time::Duration::from_secs(config.server.shutdown_grace_secs);
    let open_files = http::connections::raise_open_file_limit();
    let server = &config.server;
    let limits = http::connections::Limits {
        max_connections: http::connections::effective_max_connections(
            server.max_connections,
            open_files,
            // Outgoing deliveries: those in flight and as many idle kept-alive ones.
            2 * config.events.max_in_flight as u64,
        ),
        header_read_timeout: std::time::Duration::from_secs(server.header_read_timeout_secs),
        keep_alive_timeout: std::time::Duration::from_secs(server.keep_alive_timeout_secs),
        max_header_bytes: server.max_header_bytes,
        send_timeout: std::time::Duration::from_secs(server.send_timeout_secs),
        min_data_rate: server.min_data_rate,
        min_data_rate_grace: std::time::Duration::from_secs(server.min_data_rate_grace_secs),
        body_idle_timeout: std::time::Duration::from_secs(server.upload_idle_timeout_secs),
    };
    let app = build(config).await?;
    if metrics::handle().is_none() {
        tracing::warn!("another metrics recorder is installed; /metrics answers 503");
    }
    // Printed once everything is ready, so scripts can wait for this line and then mint tokens.
    println!("listening on http://{local}");
    let stopping = app.shutdown.clone();
    let jobs = tokio::spawn(app.broker.clone().run_job_runtime());
    let mut fan_out = tokio::spawn(app.broker.clone().run_fan_out());
    app.broker.recover_unverified_uploads().await;
    app.broker.ensure_tus_sweep().await?;
    app.broker.ensure_statistics_jobs().await?;
    app.broker
        .ensure_forwarding(app.config.events.forward_url.as_deref())
        .await?;
    let router = http::router(app);
    let signal = stopping.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down");
        signal.cancel();
    });
    let server = http::connections::serve(listener, router, limits, stopping.clone());
    let outcome = tokio::select! {
        () = server => Ok(()),
        _ = async move { stopping.cancelled_owned().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("requests still running after the shutdown grace period; stopping anyway");
            Ok(())
        }
    };
    jobs.abort();
    // The delivery workers finish their attempts in flight (each bounded by its timeout).
    if tokio::time::timeout(grace, &mut fan_out).await.is_err() {
        fan_out.abort();
    }
    outcome
}
