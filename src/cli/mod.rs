//! The command-line client: `send`, `fetch`, `list`, `status`, and a service owner's `serviceowner`
//! and `resource` against a Broker server.
//!
//! Every failure ends the process with a non-zero exit code and one line on stderr saying why.

mod admin;
mod digest;
mod fetch;
mod part_file;
mod progress;
mod query;
mod send;
mod send_state;

use anyhow::Context;
use broker_protocol::client::{BrokerClient, ClientError};
use broker_protocol::tus::TusError;
use std::path::PathBuf;

pub use admin::{ResourceCommand, ServiceOwnerCommand};
pub use fetch::FetchArgs;
pub use query::{ListArgs, StatusArgs};
pub use send::SendArgs;

/// Where the server is and who we are: shared by every client command.
#[derive(clap::Args, Clone, Debug)]
pub struct ClientArgs {
    /// The server's root URL, with its scheme.
    #[arg(long, env = "BROKER_URL", default_value = "http://127.0.0.1:8080", value_parser = parse_server_url)]
    pub url: String,
    /// The bearer token (else --token-file, else $BROKER_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// A file holding the bearer token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Print one JSON value on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A server URL must say http:// or https://: `127.0.0.1:8080` alone would be read as a relative
/// URL (or a scheme named `127.0.0.1`).
fn parse_server_url(text: &str) -> Result<String, String> {
    match reqwest::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
            Ok(text.to_string())
        }
        _ => Err(format!(
            "{text:?} is not a server URL: give its scheme and host, e.g. http://{}",
            text.split("://").last().unwrap_or(text)
        )),
    }
}

impl ClientArgs {
    /// A client for the server with the token from the flags, the token file or the environment.
    pub fn client(&self) -> anyhow::Result<BrokerClient> {
        let token = match (&self.token, &self.token_file) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the token file {}", path.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => std::env::var("BROKER_TOKEN").ok(),
        };
        let base = BrokerClient::new(&self.url);
        Ok(match token.filter(|t| !t.is_empty()) {
            Some(token) => base.with_token(token),
            None => base,
        })
    }
}

/// A client command, run by [`ClientCommand::run_and_exit`].
pub enum ClientCommand {
    Send(SendArgs),
    Fetch(FetchArgs),
    List(ListArgs),
    Status(StatusArgs),
    ServiceOwner(ServiceOwnerCommand),
    Resource(ResourceCommand),
}

impl ClientCommand {
    fn name(&self) -> &'static str {
        match self {
            ClientCommand::Send(_) => "send",
            ClientCommand::Fetch(_) => "fetch",
            ClientCommand::List(_) => "list",
            ClientCommand::Status(_) => "status",
            ClientCommand::ServiceOwner(_) => "serviceowner",
            ClientCommand::Resource(_) => "resource",
        }
    }

    /// Runs the command and exits: 0 on success, 1 with one line on stderr otherwise.
    pub async fn run_and_exit(self) -> ! {
        let name = self.name();
        let outcome = match self {
            ClientCommand::Send(args) => send::run(args).await,
            ClientCommand::Fetch(args) => fetch::run(args).await,
            ClientCommand::List(args) => query::list(args).await,
            ClientCommand::Status(args) => query::status(args).await,
            ClientCommand::ServiceOwner(command) => admin::service_owner(command).await,
            ClientCommand::Resource(command) => admin::resource(command).await,
        };
        match outcome {
            Ok(()) => std::process::exit(0),
            Err(e) => {
                let reason = format!("{e:#}").replace(['\n', '\r'], " ");
                eprintln!("broker: {name} failed: {reason}");
                std::process::exit(1)
            }
        }
    }
}

/// A server's refusal as one readable line: status, the ProblemDetails title/detail and the BRO code,
/// or the start of a plain-text body.
pub fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Status {
            status,
            problem,
            body,
        } => {
            let reason = reqwest::StatusCode::from_u16(*status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            let mut line = format!("HTTP {status} {reason}");
            match problem {
                Some(p) => {
                    line.push_str(": ");
                    line.push_str(p.detail.as_deref().unwrap_or(&p.title));
                    for (field, messages) in p.errors.iter().flatten() {
                        line.push_str(&format!(" [{field}: {}]", messages.join(" ")));
                    }
                    if let Some(code) = &p.code {
                        line.push_str(&format!(" ({code})"));
                    }
                }
                None if !body.trim().is_empty() => {
                    let text: String = body.trim().chars().take(300).collect();
                    line.push_str(&format!(": {text}"));
                }
                // The server answers these with an empty body, as the original does; say what to
                // check.
                None if *status == 401 => line.push_str(
                    ": no valid token: it is missing, expired or from an issuer the broker does not trust \
                     (give one with --token, --token-file or BROKER_TOKEN)",
                ),
                None if *status == 403 => line.push_str(
                    ": the token lacks the scope this needs (send: altinn:broker.write; fetch, list, \
                     status: altinn:broker.read) or its organisation is not a party to this",
                ),
                None => {}
            }
            line
        }
        ClientError::Http(e) => {
            // reqwest's own message is terse; its sources say what went wrong (refused, reset, …).
            let mut line = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                line.push_str(&format!(": {s}"));
                source = s.source();
            }
            line
        }
    }
}

/// A client error as an `anyhow::Error` carrying [`describe`]'s line.
pub fn api_error(error: ClientError) -> anyhow::Error {
    anyhow::anyhow!(describe(&error))
}

pub fn tus_error(error: TusError) -> anyhow::Error {
    match error {
        TusError::Client(e) => api_error(e),
        other => anyhow::anyhow!(other.to_string()),
    }
}

/// Prints `value` as one line of JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// The final report of `send` and `fetch` with `--json`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferReport {
    pub file_transfer_id: uuid::Uuid,
    pub path: PathBuf,
    pub bytes_total: u64,
    pub bytes_transferred: u64,
    pub resumed_from: u64,
    pub sha256: String,
}
