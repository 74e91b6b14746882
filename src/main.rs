//! The `broker` command: `serve`, `token` (mint a development token) and `config`, plus the client
//! commands `send`, `fetch`, `list` and `status` (in `cli/`).

mod cli;

use anyhow::Context;
use broker::auth::dev_issuer::DevIssuer;
use broker::config::{Config, Overrides};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "broker",
    version,
    about = "A managed file-transfer broker (Altinn 3 Broker v1 API)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory for the database, files and the development signing key.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(ConfigArgs),
    /// Mint a token with the development issuer's key (prints only the token).
    Token {
        #[command(flatten)]
        config: ConfigArgs,
        /// Organisation the token acts for: 0192:NNNNNNNNN or the 9-digit number.
        #[arg(long)]
        org: String,
        /// Space-separated scopes, e.g. "altinn:broker.write altinn:broker.read".
        #[arg(long)]
        scope: String,
        /// Lifetime: e.g. 1h, 30m, 90s, 2d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Print the resolved configuration.
    Config(ConfigArgs),
    /// Send a file: initialize a transfer, upload it resumably (tus), wait until it is published.
    Send(cli::SendArgs),
    /// Download a transfer's file (resumable, verified), optionally confirming the download.
    Fetch(cli::FetchArgs),
    /// List the transfers the caller sent or received.
    List(cli::ListArgs),
    /// Show a transfer's overview.
    Status(cli::StatusArgs),
}

fn load(args: &ConfigArgs) -> anyhow::Result<Config> {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
    };
    Ok(Config::load(
        args.config.as_deref(),
        std::env::vars(),
        &overrides,
    )?)
}

fn parse_ttl(text: &str) -> anyhow::Result<chrono::Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = number
        .parse()
        .with_context(|| format!("invalid --ttl {text:?}"))?;
    Ok(match unit {
        "s" | "" => chrono::Duration::seconds(n),
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => anyhow::bail!("invalid --ttl {text:?}: use s, m, h or d"),
    })
}

/// Installs the SIGINT/SIGTERM handlers now (before the server reports it is ready) and returns the
/// future that completes on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,tower_http=warn,sqlx=warn".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            let config = load(&args)?;
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.server.listen))?;
            broker::serve(listener, config, shutdown_signal()?).await
        }
        Command::Token {
            config,
            org,
            scope,
            ttl,
        } => {
            let config = load(&config)?;
            let issuer = DevIssuer::load(&config.storage.data_dir, &config.auth.dev_issuer_name)
                .map_err(anyhow::Error::msg)?;
            println!(
                "{}",
                issuer
                    .mint(&org, &scope, parse_ttl(&ttl)?)
                    .map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
        Command::Config(args) => {
            print!("{}", load(&args)?.to_toml());
            Ok(())
        }
        Command::Send(args) => cli::ClientCommand::Send(args).run_and_exit().await,
        Command::Fetch(args) => cli::ClientCommand::Fetch(args).run_and_exit().await,
        Command::List(args) => cli::ClientCommand::List(args).run_and_exit().await,
        Command::Status(args) => cli::ClientCommand::Status(args).run_and_exit().await,
    }
}
