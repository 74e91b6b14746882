//! The test harness: a server on a fresh (or reused) data dir, tokens from the development issuer,
//! and a fixture with a service owner, a resource, a sender, two recipients and a third party.

#![allow(dead_code)]

use broker::auth::dev_issuer::DevIssuer;
use broker::config::Config;
use broker_protocol::client::BrokerClient;
use broker_protocol::resource::ResourceUpdate;
use broker_protocol::transfer::FileTransferInitialize;
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;
use uuid::Uuid;

pub const SERVICE_OWNER: &str = "0192:991825827";
pub const SENDER: &str = "0192:111111111";
pub const RECIPIENT: &str = "0192:222222222";
pub const RECIPIENT_2: &str = "0192:333333333";
pub const THIRD_PARTY: &str = "0192:444444444";
pub const RESOURCE: &str = "test-resource";

pub const WRITE: &str = "altinn:broker.write";
pub const READ: &str = "altinn:broker.read";
pub const SO_SCOPE: &str = "altinn:serviceowner";
pub const MAINTENANCE: &str = "altinn:broker.maintenance";

pub struct TestServer {
    pub url: String,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.storage.data_dir = data_dir.to_path_buf();
    config.storage.reserve_bytes = 0;
    config.server.shutdown_grace_secs = 2;
    // The suite runs twice: with small files inline (the default) and with every file on disk
    // (scripts/test.sh sets this to 0), as a broker started from the binary would read it too.
    if let Ok(value) = std::env::var("BROKER__STORAGE__INLINE_MAX_BYTES") {
        config.storage.inline_max_bytes = value
            .parse()
            .expect("BROKER__STORAGE__INLINE_MAX_BYTES is a number of bytes");
    }
    config
}

impl TestServer {
    /// A server on a fresh temporary data dir.
    pub async fn start() -> TestServer {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().to_path_buf();
        let mut server = Self::start_with(test_config(&dir)).await;
        server._temp = Some(temp);
        server
    }

    /// A server with the given configuration (its data dir is not removed afterwards).
    pub async fn start_with(config: Config) -> TestServer {
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let data_dir = config.storage.data_dir.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(broker::serve(listener, config, async move {
            let _ = stopped.await;
        }));
        let server = TestServer {
            url,
            data_dir,
            _temp: None,
            stop: Some(stop),
            task: Some(task),
        };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&self) {
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(format!("{}/health", self.url)).await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the server did not become healthy");
    }

    /// Stops the server gracefully and starts a new one on the same data dir.
    pub async fn restart(self) -> TestServer {
        self.restart_after(async {}).await
    }

    /// Stops the server, awaits `between` (which may change the stopped server's files), and starts a
    /// new one on the same data dir.
    pub async fn restart_after(self, between: impl std::future::Future<Output = ()>) -> TestServer {
        let config = test_config(&self.data_dir);
        self.restart_after_with(config, between).await
    }

    /// Stops the server, awaits `between`, and starts a new one with `config`.
    pub async fn restart_after_with(
        mut self,
        config: Config,
        between: impl std::future::Future<Output = ()>,
    ) -> TestServer {
        let temp = self._temp.take();
        self.stop().await;
        between.await;
        let mut next = Self::start_with(config).await;
        next._temp = temp;
        next
    }

    /// Stops the server gracefully and starts a new one with `config` (on the same data dir).
    pub async fn restart_with(mut self, config: Config) -> TestServer {
        let temp = self._temp.take();
        self.stop().await;
        let mut next = Self::start_with(config).await;
        next._temp = temp;
        next
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// A token from the development issuer of this server's data dir.
    pub fn token(&self, org: &str, scopes: &str) -> String {
        DevIssuer::load(&self.data_dir, "broker-dev")
            .unwrap()
            .mint(org, scopes, chrono::Duration::hours(1))
            .unwrap()
    }

    pub fn client(&self, org: &str, scopes: &str) -> BrokerClient {
        BrokerClient::new(&self.url).with_token(self.token(org, scopes))
    }

    /// A client with no token.
    pub fn anonymous(&self) -> BrokerClient {
        BrokerClient::new(&self.url)
    }

    pub fn api(&self, path: &str) -> String {
        format!("{}/broker/api/v1{}", self.url, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A server with a service owner, a configured resource and clients for every party.
pub struct Fixture {
    pub server: TestServer,
    pub owner: BrokerClient,
    pub sender: BrokerClient,
    pub recipient: BrokerClient,
    pub recipient_2: BrokerClient,
    pub third_party: BrokerClient,
    pub maintenance: BrokerClient,
}

impl Fixture {
    pub async fn new() -> Fixture {
        Self::on(TestServer::start().await).await
    }

    /// Sets up the parties on `server` (registering the service owner and resource).
    pub async fn on(server: TestServer) -> Fixture {
        let fixture = Self::clients(server);
        fixture
            .owner
            .create_service_owner("Test service owner")
            .await
            .unwrap();
        fixture
            .owner
            .configure_resource(RESOURCE, &ResourceUpdate::default())
            .await
            .unwrap();
        fixture
    }

    /// Clients for every party on `server`, without setting anything up.
    pub fn clients(server: TestServer) -> Fixture {
        Fixture {
            owner: server.client(SERVICE_OWNER, SO_SCOPE),
            sender: server.client(SENDER, &format!("{WRITE} {READ}")),
            recipient: server.client(RECIPIENT, READ),
            recipient_2: server.client(RECIPIENT_2, READ),
            third_party: server.client(THIRD_PARTY, &format!("{WRITE} {READ}")),
            maintenance: server.client(SERVICE_OWNER, MAINTENANCE),
            server,
        }
    }

    pub fn initialize_body(&self, recipients: &[&str]) -> FileTransferInitialize {
        FileTransferInitialize {
            file_name: Some("report.pdf".into()),
            resource_id: Some(RESOURCE.into()),
            senders_file_transfer_reference: Some("ref-1".into()),
            sender: Some(SENDER.into()),
            recipients: Some(recipients.iter().map(|r| r.to_string()).collect()),
            ..Default::default()
        }
    }

    /// Initializes a transfer from SENDER to the given recipients.
    pub async fn initialize(&self, recipients: &[&str]) -> Uuid {
        self.sender
            .initialize(&self.initialize_body(recipients))
            .await
            .unwrap()
    }

    /// The first recipient downloads the transfer and gets exactly `content`.
    pub async fn assert_recipient_downloads(&self, id: Uuid, content: &[u8]) {
        let downloaded = self
            .recipient
            .download(id, None)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            sha256_hex(&downloaded),
            sha256_hex(content),
            "downloaded bytes differ from those sent"
        );
    }

    /// Waits (up to 30 s) until the transfer is Published, then checks that its SHA-256 and MD5 are
    /// those of `content` and that the first recipient downloads exactly `content`.
    pub async fn assert_published(&self, id: Uuid, content: &[u8]) {
        let overview = crate::support::wait_for_status(
            &self.sender,
            id,
            broker_protocol::FileTransferStatus::Published,
            std::time::Duration::from_secs(30),
        )
        .await;
        assert_eq!(
            overview.summary.sha256.as_deref(),
            Some(sha256_hex(content).as_str())
        );
        assert_eq!(
            overview.summary.checksum.as_deref(),
            Some(md5_hex(content).as_str())
        );
        self.assert_recipient_downloads(id, content).await;
    }

    /// The sender sees no transfer on the resource: a refused request created nothing.
    pub async fn assert_no_transfers(&self) {
        let found = self
            .sender
            .search(&[("resourceId", RESOURCE)])
            .await
            .unwrap();
        assert!(found.is_empty(), "transfers were created: {found:?}");
    }

    /// Sets the resource's maximum file size.
    pub async fn limit_size(&self, max: i64) {
        let update = ResourceUpdate {
            max_file_transfer_size: Some(max),
            ..Default::default()
        };
        self.owner
            .configure_resource(RESOURCE, &update)
            .await
            .unwrap();
    }

    /// Initializes and uploads `content`; the transfer ends Published.
    pub async fn publish(&self, recipients: &[&str], content: &[u8]) -> Uuid {
        let id = self.initialize(recipients).await;
        self.sender.upload(id, content.to_vec()).await.unwrap();
        id
    }
}

/// Deterministic pseudo-random bytes (xorshift), so a test's payload is reproducible.
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    broker::util::sha256_hex(bytes)
}

pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    broker_actors::upload::hex(&md5::Md5::digest(bytes))
}

/// Held by every test that asserts on a duration (a probe must answer within a second, a lag's p99, a
/// purge within moments) and by every test that keeps both cores busy (a clamd scanning hundreds of
/// MiB, 150 MiB through a tus PATCH, the benchmark's scenarios): on a 2-core machine the two together
/// make the timed ones fail for want of a core, not for anything the server did. They run one at a
/// time. A new timed assertion takes this lock, compares with a baseline measured in the same run,
/// or belongs in the benchmark; a new heavy test takes it too.
pub async fn cpu_exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    EXCLUSIVE.lock().await
}
