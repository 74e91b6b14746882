//! The `broker` command: `serve`, `token` (mint a development token) and `config`, plus the client
//! commands `send`, `fetch`, `list`, `status`, `serviceowner` and `resource` (in `cli/`).

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
        /// Organisation the token acts for: 0192:NNNNNNNNN or the 9-digit organisation number.
        #[arg(long, value_parser = parse_org_number)]
        org: String,
        /// Space-separated scopes, e.g. "altinn:broker.write altinn:broker.read".
        #[arg(long)]
        scope: String,
        /// Lifetime: e.g. 1h, 30m, 90s, 2d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Print the resolved configuration as a commented TOML template: every key, with its value or
    /// commented out with an example; secrets redacted.
    Config {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print secrets (passwords, tokens, API keys) instead of redacting them.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Send a file: initialize a transfer, upload it resumably (tus), wait until it is published.
    Send(cli::SendArgs),
    /// Download a transfer's file (resumable, verified), optionally confirming the download.
    Fetch(cli::FetchArgs),
    /// List the transfers the caller sent or received.
    List(cli::ListArgs),
    /// Show a transfer's overview.
    Status(cli::StatusArgs),
    /// Register or show the token's service owner.
    #[command(subcommand)]
    Serviceowner(cli::ServiceOwnerCommand),
    /// Configure or show a resource (as its service owner).
    #[command(subcommand)]
    Resource(cli::ResourceCommand),
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

/// An organisation number as `broker token` takes it, in any form the API takes (`0192:NNNNNNNNN`,
/// its URN) or the bare nine digits, whose last must be the mod-11 check digit of the Norwegian
/// register (a typo is caught here, not as a token for an organisation that does not exist).
fn parse_org_number(text: &str) -> Result<String, String> {
    let org = broker_protocol::transfer::parse_org(text).ok_or_else(|| {
        format!("{text:?} is not an organisation number: use 0192:NNNNNNNNN or the nine digits, e.g. 0192:991825827")
    })?;
    let d: Vec<u32> = broker_protocol::events::org_digits(&org)
        .bytes()
        .map(|b| u32::from(b - b'0'))
        .collect();
    let sum: u32 = [3, 2, 7, 6, 5, 4, 3, 2]
        .iter()
        .zip(&d)
        .map(|(w, n)| w * n)
        .sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        c => c,
    };
    if check != d[8] {
        return Err(format!(
            "{text:?} is not an organisation number: its check digit (mod 11) does not match"
        ));
    }
    Ok(org)
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

/// Connections the kernel completes and queues before the broker accepts them (capped by
/// `net.core.somaxconn`). Tokio's default is 1,024: a flood of connections while the accept loop
/// is busy fills that, and a new client's SYN is then dropped and retried only after a second.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As TcpListener::bind does: a restart may bind while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
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

/// Runs the command; a failure is one line on stderr and exit status 1, never a backtrace (it is
/// the user's configuration or invocation, not a bug; panics still print theirs).
#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Colour in log lines only for a person at a terminal, and never with `NO_COLOR` set
/// (no-color.org): a log file or a pipe gets plain text.
fn log_colours() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,tower_http=warn,sqlx=warn".into()),
                )
                .with_ansi(log_colours())
                .with_writer(std::io::stderr)
                .init();
            let config = load(&args)?;
            let listener = listen(config.server.listen)
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
        Command::Config {
            config,
            show_secrets,
        } => {
            print!("{}", load(&config)?.to_template(show_secrets));
            Ok(())
        }
        Command::Send(args) => cli::ClientCommand::Send(args).run_and_exit().await,
        Command::Fetch(args) => cli::ClientCommand::Fetch(args).run_and_exit().await,
        Command::List(args) => cli::ClientCommand::List(args).run_and_exit().await,
        Command::Status(args) => cli::ClientCommand::Status(args).run_and_exit().await,
        Command::Serviceowner(command) => {
            cli::ClientCommand::ServiceOwner(command)
                .run_and_exit()
                .await
        }
        Command::Resource(command) => cli::ClientCommand::Resource(command).run_and_exit().await,
    }
}
