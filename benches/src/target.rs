//! The broker under test: a child process on a fresh data dir (the default), or one running elsewhere.

use anyhow::{bail, Context};
use broker_protocol::client::BrokerClient;
use broker_protocol::resource::ResourceUpdate;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const OWNER_ORG: &str = "0192:991825827";
pub const SENDER_ORG: &str = "0192:111111111";
pub const RECIPIENT_ORG: &str = "0192:222222222";

/// Where the broker comes from.
#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// Start `broker serve` from this binary on a fresh temporary data dir (SQLite + local disk),
    /// with `env` set for it (`BROKER__…` settings).
    Spawn {
        broker_bin: PathBuf,
        env: Vec<(String, String)>,
    },
    /// A broker already running at `url`; tokens given, or minted from its data dir with `broker_bin`.
    Remote {
        url: String,
        sender_token: Option<String>,
        recipient_token: Option<String>,
        owner_token: Option<String>,
        data_dir: Option<PathBuf>,
        broker_bin: PathBuf,
    },
}

pub struct Target {
    pub url: String,
    pub resource: String,
    pub owner: Option<BrokerClient>,
    pub sender: BrokerClient,
    pub recipient: BrokerClient,
    child: Option<Child>,
    data_dir: Option<tempfile::TempDir>,
    /// How a broker this tool started was started, to start it again.
    spawned: Option<(PathBuf, Vec<(String, String)>)>,
}

/// Starts `broker serve` on `listen` and `data_dir`; returns it and the URL it listens on.
fn spawn_broker(
    broker_bin: &Path,
    env: &[(String, String)],
    listen: &str,
    data_dir: &Path,
) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(broker_bin)
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (cargo build --release --bin broker, or --broker-bin PATH)",
                broker_bin.display()
            )
        })?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    match line.trim().strip_prefix("listening on ") {
        Some(url) => Ok((child, url.to_string())),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the broker did not start (first line: {line:?})")
        }
    }
}

/// The `broker` binary beside this executable (as `cargo build` lays them out).
pub fn default_broker_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("broker")))
        .unwrap_or_else(|| PathBuf::from("broker"))
}

fn mint(bin: &Path, data_dir: &Path, org: &str, scope: &str) -> anyhow::Result<String> {
    let out = Command::new(bin)
        .args([
            "token",
            "--ttl",
            "24h",
            "--org",
            org,
            "--scope",
            scope,
            "--data-dir",
        ])
        .arg(data_dir)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "broker token failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

impl Target {
    pub async fn start(spec: &TargetSpec, resource: &str) -> anyhow::Result<Target> {
        let target = match spec {
            TargetSpec::Spawn { broker_bin, env } => {
                let data_dir = tempfile::Builder::new().prefix("broker-bench-").tempdir()?;
                let (child, url) = spawn_broker(broker_bin, env, "127.0.0.1:0", data_dir.path())?;
                let token = |org, scope| mint(broker_bin, data_dir.path(), org, scope);
                let base = BrokerClient::new(&url);
                Target {
                    owner: Some(base.with_token(token(OWNER_ORG, "altinn:serviceowner")?)),
                    sender: base
                        .with_token(token(SENDER_ORG, "altinn:broker.write altinn:broker.read")?),
                    recipient: base.with_token(token(RECIPIENT_ORG, "altinn:broker.read")?),
                    url,
                    resource: resource.to_string(),
                    child: Some(child),
                    data_dir: Some(data_dir),
                    spawned: Some((broker_bin.clone(), env.clone())),
                }
            }
            TargetSpec::Remote {
                url,
                sender_token,
                recipient_token,
                owner_token,
                data_dir,
                broker_bin,
            } => {
                let token =
                    |given: &Option<String>, org, scope| -> anyhow::Result<Option<String>> {
                        match (given, data_dir) {
                            (Some(t), _) => Ok(Some(t.clone())),
                            (None, Some(dir)) => mint(broker_bin, dir, org, scope).map(Some),
                            (None, None) => Ok(None),
                        }
                    };
                let base = BrokerClient::new(url);
                let sender = token(
                    sender_token,
                    SENDER_ORG,
                    "altinn:broker.write altinn:broker.read",
                )?
                .context("--token-sender (or --data-dir to mint tokens) is needed with --url")?;
                let recipient = token(recipient_token, RECIPIENT_ORG, "altinn:broker.read")?
                    .context(
                        "--token-recipient (or --data-dir to mint tokens) is needed with --url",
                    )?;
                Target {
                    owner: token(owner_token, OWNER_ORG, "altinn:serviceowner")?
                        .map(|t| base.with_token(t)),
                    sender: base.with_token(sender),
                    recipient: base.with_token(recipient),
                    url: url.clone(),
                    resource: resource.to_string(),
                    child: None,
                    data_dir: None,
                    spawned: None,
                }
            }
        };
        target.setup().await?;
        Ok(target)
    }

    /// Registers the service owner and the resource (both idempotent), when an owner token is at hand.
    async fn setup(&self) -> anyhow::Result<()> {
        let Some(owner) = &self.owner else {
            return Ok(());
        };
        match owner.create_service_owner("broker-bench").await {
            Ok(()) => {}
            Err(e) if e.status() == Some(409) => {}
            Err(e) => return Err(e).context("cannot register the service owner"),
        }
        owner
            .configure_resource(&self.resource, &ResourceUpdate::default())
            .await
            .context("cannot configure the resource")?;
        Ok(())
    }

    /// The broker's process id when this tool started it (CPU and RSS are sampled only then).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILLs the broker this tool started and starts it again on the same data dir and address
    /// (so clients and their tokens carry on); returns how long it took to listen again.
    pub async fn kill_and_restart(&mut self) -> anyhow::Result<std::time::Duration> {
        let (Some(child), Some(data_dir), Some((bin, env))) =
            (&mut self.child, &self.data_dir, &self.spawned)
        else {
            bail!("only a broker this tool started can be restarted");
        };
        child.kill()?;
        child.wait()?;
        let started = std::time::Instant::now();
        let listen = self.url.trim_start_matches("http://").to_string();
        let mut tries = 0;
        let child = loop {
            match spawn_broker(bin, env, &listen, data_dir.path()) {
                Ok((child, _)) => break child,
                // The old process's listening socket may take a moment to go.
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e),
            }
        };
        self.child = Some(child);
        Ok(started.elapsed())
    }

    /// A client for `org` with `scope`, its token minted from the data dir of a broker this tool
    /// started.
    pub fn client_for(&self, org: &str, scope: &str) -> anyhow::Result<BrokerClient> {
        let (Some(data_dir), Some((bin, _))) = (&self.data_dir, &self.spawned) else {
            bail!("tokens for other scopes are minted only for a broker this tool started");
        };
        let token = mint(bin, data_dir.path(), org, scope)?;
        Ok(BrokerClient::new(&self.url).with_token(token))
    }

    /// The data dir of a broker this tool started (the disk the anchors write to).
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_ref().map(|d| d.path())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
