//! The read side: what transports show of transfers, the outbox and the broker's health. Every read
//! checks who asks; nothing here changes state.

use crate::access::Caller;
use crate::error::{Error, Result};
use crate::ports::metadata::{SearchQuery, TransferView};
use crate::Broker;
use broker_protocol::events::OutboxEntry;
use broker_protocol::transfer::{
    FileTransferOverview, FileTransferStatusEntry, FileTransferSummary,
    RecipientFileTransferStatus, RecipientStatusEntry,
};
use broker_protocol::ErrorCode;
use uuid::Uuid;

/// History rows read (and held) at a time: a details body's memory does not grow with the history.
pub const HISTORY_PAGE: u32 = 512;

/// The transfer's histories, read page by page after a details request was allowed.
#[derive(Clone)]
pub struct Histories {
    broker: Broker,
    id: Uuid,
}

impl Histories {
    /// Up to [`HISTORY_PAGE`] status rows after the row `after` (0 for the first page), with their `seq`.
    pub async fn status_page(&self, after: i64) -> Result<Vec<(i64, FileTransferStatusEntry)>> {
        let metadata = &self.broker.ports().metadata;
        Ok(metadata
            .status_history(self.id, after, HISTORY_PAGE)
            .await?)
    }

    /// The recipients' history, paged as [`Histories::status_page`].
    pub async fn recipient_page(&self, after: i64) -> Result<Vec<(i64, RecipientStatusEntry)>> {
        let metadata = &self.broker.ports().metadata;
        Ok(metadata
            .recipient_history(self.id, after, HISTORY_PAGE)
            .await?)
    }
}

impl Broker {
    /// The transfer's current status and each recipient's, for its sender or a recipient.
    pub async fn overview(&self, caller: &Caller, id: Uuid) -> Result<FileTransferOverview> {
        let view = self.view(id).await?;
        caller.require_party(&view)?;
        let published = view.published;
        Ok(FileTransferOverview {
            summary: summary(view),
            published,
        })
    }

    /// The overview's summary and the histories to stream after it.
    pub async fn details(
        &self,
        caller: &Caller,
        id: Uuid,
    ) -> Result<(FileTransferSummary, Histories)> {
        let view = self.view(id).await?;
        caller.require_party(&view)?;
        let histories = Histories {
            broker: self.clone(),
            id: view.id,
        };
        Ok((summary(view), histories))
    }

    /// The caller's transfers on a resource (at most 100 ids).
    pub async fn search(&self, caller: &Caller, mut query: SearchQuery) -> Result<Vec<Uuid>> {
        query.caller_org = caller.org.clone().ok_or(ErrorCode::NoAccess)?;
        let metadata = &self.ports().metadata;
        if metadata.resource(&query.resource_id).await?.is_none() {
            return Err(ErrorCode::ResourceNotRegistered.into());
        }
        Ok(metadata.search(&query).await?)
    }

    /// Events of the outbox after `after`, oldest first.
    pub async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<OutboxEntry>> {
        Ok(self.ports().outbox.events_after(after, limit).await?)
    }

    /// Whether the metadata store and the blob store both answer; the failure if not.
    pub async fn health(&self) -> Result<()> {
        let db = self.ports().metadata.health().await;
        let storage = self.ports().blobs.check().await;
        match (db, storage) {
            (Ok(()), Ok(())) => Ok(()),
            (db, storage) => Err(Error::Internal(format!(
                "metadata: {:?}, storage: {:?}",
                db.err(),
                storage.err()
            ))),
        }
    }

    /// Bytes free for new uploads (the configured reserve kept back), when the store can tell.
    pub async fn free_space(&self) -> Option<u64> {
        match self.ports().blobs.available_space().await {
            Ok(Some(free)) => Some(free.saturating_sub(self.settings().reserve_bytes)),
            _ => None,
        }
    }
}

fn summary(view: TransferView) -> FileTransferSummary {
    let status_text = view
        .status_text
        .clone()
        .unwrap_or_else(|| view.status.default_text().to_string());
    FileTransferSummary {
        file_transfer_id: view.id,
        resource_id: view.resource_id,
        file_name: view.file_name,
        senders_file_transfer_reference: view.senders_reference,
        checksum: view.checksum,
        sha256: view.sha256,
        use_virus_scan: view.use_virus_scan,
        file_transfer_size: view.size,
        file_transfer_status: view.status,
        file_transfer_status_text: status_text,
        file_transfer_status_changed: view.status_changed,
        created: view.created,
        expiration_time: view.expiration_time,
        sender: view.sender,
        recipients: view
            .recipients
            .into_iter()
            .map(|r| RecipientFileTransferStatus {
                recipient: r.recipient,
                current_recipient_file_transfer_status_code: r.status,
                current_recipient_file_transfer_status_text: r.status.text().to_string(),
                current_recipient_file_transfer_status_changed: r.changed,
            })
            .collect(),
        property_list: view.property_list,
    }
}
