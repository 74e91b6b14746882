//! The scenarios. Each measures through the public API only and returns a `ScenarioResult`.

pub mod crash;
pub mod deliveries;
pub mod lifecycle;
pub mod mixed;
pub mod request_cost;
pub mod resume;
pub mod scan;
pub mod statistics;
pub mod transfer;
pub mod tus;

use crate::target::{Target, RECIPIENT_ORG, SENDER_ORG};
use broker_protocol::transfer::FileTransferInitialize;
use std::path::PathBuf;
use uuid::Uuid;

/// What every scenario needs.
pub struct Context {
    pub target: Target,
    /// Where the large test file is generated once and kept.
    pub cache_dir: PathBuf,
    /// Measure the anchors (`--anchors`).
    pub anchors: bool,
}

pub fn initialize_body(resource: &str, file_name: &str) -> FileTransferInitialize {
    FileTransferInitialize {
        file_name: Some(file_name.into()),
        resource_id: Some(resource.into()),
        senders_file_transfer_reference: Some("broker-bench".into()),
        sender: Some(SENDER_ORG.into()),
        recipients: Some(vec![RECIPIENT_ORG.into()]),
        ..Default::default()
    }
}

impl Context {
    pub async fn initialize(&self, file_name: &str) -> anyhow::Result<Uuid> {
        Ok(self
            .target
            .sender
            .initialize(&initialize_body(&self.target.resource, file_name))
            .await?)
    }

    /// The directory the write anchor writes to: the broker's own data disk when this tool started it.
    pub fn disk_dir(&self) -> PathBuf {
        self.target
            .data_dir()
            .map(|d| d.to_path_buf())
            .unwrap_or_else(|| self.cache_dir.clone())
    }
}

/// How long a finished upload may take to be Published.
const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Waits until the transfer `id` is Published, then checks the broker stored exactly the bytes whose
/// SHA-256 is `sha256`; fails at once if the transfer failed.
pub(crate) async fn published_with(
    sender: &broker_protocol::client::BrokerClient,
    id: Uuid,
    sha256: &str,
) -> anyhow::Result<()> {
    use broker_protocol::FileTransferStatus;
    let started = std::time::Instant::now();
    let overview = loop {
        let overview = sender.overview(id).await?;
        match overview.summary.file_transfer_status {
            FileTransferStatus::Published => break overview,
            FileTransferStatus::Failed => anyhow::bail!(
                "the transfer failed: {}",
                overview.summary.file_transfer_status_text
            ),
            status if started.elapsed() > PUBLISH_TIMEOUT => {
                anyhow::bail!("not published within {PUBLISH_TIMEOUT:?}: still {status:?}")
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    };
    if overview.summary.sha256.as_deref() != Some(sha256) {
        anyhow::bail!(
            "the broker stored different bytes: sha256 {:?}, expected {sha256}",
            overview.summary.sha256
        );
    }
    Ok(())
}
