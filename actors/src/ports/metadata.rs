//! Where transfers, service owners and resources live (the source of truth; actors are a cache of it).
//! Every write a transition makes is one atomic, conditional commit.

use super::jobs::JobKey;
use crate::state::{StoredFile, TransferState};
use async_trait::async_trait;
use broker_protocol::events::CloudEvent;
use broker_protocol::status::Role;
use broker_protocol::time::Timestamp;
use broker_protocol::transfer::{FileTransferStatusEntry, RecipientStatusEntry};
use broker_protocol::{FileTransferStatus, RecipientStatus};
use chrono::Duration;
use std::collections::BTreeMap;
use uuid::Uuid;

pub use super::StoreError;

/// A transfer as the lifecycle sees it.
#[derive(Debug, Clone)]
pub struct TransferRecord {
    pub id: Uuid,
    pub resource_id: String,
    /// The sender as given at initialize.
    pub sender: String,
    pub state: TransferState,
    pub purge_grace_period: chrono::Duration,
    pub expiration_time: Timestamp,
    /// How many changes were committed to the transfer since it was created: a change commits only
    /// from the version it was computed on, so two nodes cannot both decide from one state.
    pub version: u64,
}

/// Everything one transition writes, committed atomically and only if the transfer is still at
/// `expected_version` (and in `expected_status`), so two requests or two nodes cannot both decide from
/// one state; the commit moves the version on by one.
#[derive(Debug, Clone)]
pub struct TransferChange {
    pub id: Uuid,
    pub expected_status: FileTransferStatus,
    pub expected_version: u64,
    pub at: Timestamp,
    pub new_status: Option<(FileTransferStatus, Option<String>)>,
    pub stored_file: Option<StoredFile>,
    pub recipient_rows: Vec<(String, RecipientStatus)>,
    /// Appended to the durable outbox in the same transaction.
    pub events: Vec<CloudEvent>,
    /// Jobs scheduled (or moved) in the same transaction.
    pub jobs: Vec<(JobKey, Timestamp)>,
    /// Jobs removed in the same transaction (a claim still running on one then finds it gone).
    pub cancelled_jobs: Vec<JobKey>,
    /// The vendor whose system the recipient acted through (for statistics), on `recipient_rows`.
    pub vendor: Option<String>,
    /// The grant of the transfer's upload lease this change ends (an upload's last transition): the
    /// commit is refused with [`StoreError::LeaseLost`] unless it is the current grant, and releases it.
    pub ends_lease: Option<u64>,
    /// Takes the transfer's upload lease for this holder in the same commit (an upload's first
    /// transition): refused with [`StoreError::LeaseHeld`] (nothing written) while another grant is alive.
    pub begins_lease: Option<BeginLease>,
}

impl TransferChange {
    /// A change of the transfer `id` made at `at` from `expected_status` at `expected_version` that
    /// writes nothing yet: the transition's effects fill it in.
    pub fn new(
        id: Uuid,
        expected_status: FileTransferStatus,
        expected_version: u64,
        at: Timestamp,
    ) -> TransferChange {
        TransferChange {
            id,
            expected_status,
            expected_version,
            at,
            new_status: None,
            stored_file: None,
            recipient_rows: vec![],
            events: vec![],
            jobs: vec![],
            cancelled_jobs: vec![],
            vendor: None,
            ends_lease: None,
            begins_lease: None,
        }
    }
}

/// A lease taken with a change: for `holder`, for `ttl_ms` milliseconds of the store's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeginLease {
    pub holder: String,
    pub ttl_ms: u64,
}

#[derive(Debug, Clone)]
pub struct ServiceOwnerRow {
    pub id: String,
    pub name: String,
}

/// A resource's Broker configuration; `None` means "never set" (defaults apply).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceRow {
    pub id: String,
    pub service_owner_id: String,
    pub max_file_transfer_size: Option<i64>,
    pub file_transfer_time_to_live: Option<Duration>,
    pub purge_after_all_confirmed: Option<bool>,
    pub purge_grace_period: Option<Duration>,
    pub use_manifest_file_shim: Option<bool>,
    pub external_service_code_legacy: Option<String>,
    pub external_service_edition_code_legacy: Option<i32>,
    pub required_party: Option<String>,
}

pub const DEFAULT_TIME_TO_LIVE_DAYS: i64 = 30;
pub const DEFAULT_GRACE_PERIOD_HOURS: i64 = 2;

impl ResourceRow {
    pub fn time_to_live(&self) -> Duration {
        self.file_transfer_time_to_live
            .unwrap_or(Duration::days(DEFAULT_TIME_TO_LIVE_DAYS))
    }
    pub fn grace_period(&self) -> Duration {
        self.purge_grace_period
            .unwrap_or(Duration::hours(DEFAULT_GRACE_PERIOD_HOURS))
    }
    pub fn purge_after_confirmed(&self) -> bool {
        self.purge_after_all_confirmed.unwrap_or(true)
    }
}

#[derive(Debug, Clone)]
pub struct NewTransfer {
    pub id: Uuid,
    pub resource_id: String,
    pub file_name: String,
    pub senders_reference: Option<String>,
    pub sender: String,
    pub sender_org: String,
    /// The vendor whose system the sender acted through (for statistics).
    pub sender_vendor: Option<String>,
    pub recipients: Vec<String>,
    pub property_list: BTreeMap<String, String>,
    pub declared_checksum: Option<String>,
    pub use_virus_scan: bool,
    pub created: Timestamp,
    pub expiration_time: Timestamp,
    /// `(key, fingerprint of the request)` from the `Idempotency-Key` header.
    pub idempotency: Option<(String, String)>,
}

/// What creating a transfer resulted in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New(Uuid),
    /// The same sender already initialized with this key and the same request within 24 h.
    Existing(Uuid),
    /// The key was used for a different request.
    KeyReused,
}

#[derive(Debug, Clone)]
pub struct RecipientRow {
    pub recipient: String,
    pub status: RecipientStatus,
    pub changed: Timestamp,
}

#[derive(Debug, Clone)]
pub struct TransferView {
    pub id: Uuid,
    pub resource_id: String,
    pub file_name: String,
    pub senders_reference: Option<String>,
    pub sender: String,
    pub sender_org: String,
    pub checksum: Option<String>,
    pub sha256: Option<String>,
    pub use_virus_scan: bool,
    pub size: i64,
    pub status: FileTransferStatus,
    pub status_text: Option<String>,
    pub status_changed: Timestamp,
    pub created: Timestamp,
    pub expiration_time: Timestamp,
    pub published: Option<Timestamp>,
    pub property_list: BTreeMap<String, String>,
    pub recipients: Vec<RecipientRow>,
}

impl TransferView {
    /// Where the transfer stands, for every decision made from its status.
    pub fn stage(&self) -> crate::state::Stage {
        crate::state::Stage::of(self.status, self.sha256.is_some())
    }

    pub fn is_recipient(&self, org: &str) -> bool {
        self.recipients.iter().any(|r| r.recipient == org)
    }
}

#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub resource_id: String,
    pub caller_org: String,
    pub status: Option<FileTransferStatus>,
    pub recipient_status: Option<RecipientStatus>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub ascending: bool,
    pub role: Option<Role>,
}

pub const SEARCH_LIMIT: i64 = 100;

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    async fn load_transfer(&self, id: Uuid) -> Result<Option<TransferRecord>, StoreError>;
    /// Persists the change durably (synced) before returning; [`StoreError::Conflict`] (nothing
    /// written) when the transfer is no longer at the change's version and status. Returns the token
    /// of the lease the change began, if it began one.
    async fn commit_change(&self, change: TransferChange) -> Result<Option<u64>, StoreError>;
    async fn health(&self) -> Result<(), StoreError>;
    /// `false` when the service owner already exists.
    async fn create_service_owner(
        &self,
        id: &str,
        name: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    async fn service_owner(&self, id: &str) -> Result<Option<ServiceOwnerRow>, StoreError>;
    async fn resource(&self, id: &str) -> Result<Option<ResourceRow>, StoreError>;
    /// Inserts or updates the resource; `false` when it exists with another owner (nothing written).
    async fn save_resource(&self, row: ResourceRow, at: Timestamp) -> Result<bool, StoreError>;
    /// Creates the transfer (Initialized, recipients Initialized), appends `events` to the outbox and
    /// schedules `jobs`, in one transaction; honours the idempotency key within 24 h (then nothing is
    /// written).
    async fn create_transfer(
        &self,
        t: NewTransfer,
        events: Vec<CloudEvent>,
        jobs: Vec<(JobKey, Timestamp)>,
    ) -> Result<Created, StoreError>;
    async fn transfer(&self, id: Uuid) -> Result<Option<TransferView>, StoreError>;
    /// The newest transfer `sender_org` initialized with the Idempotency-Key `key` after `since`, with
    /// the fingerprint of that request.
    async fn idempotent_transfer(
        &self,
        sender_org: &str,
        key: &str,
        since: Timestamp,
    ) -> Result<Option<(Uuid, Option<String>)>, StoreError>;
    /// Up to `limit` rows of the transfer's status history after the row `after` (a `seq`; 0 for the
    /// first page), in order, each with its `seq`: histories are read page by page.
    async fn status_history(
        &self,
        id: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, FileTransferStatusEntry)>, StoreError>;
    /// The recipients' history, paged as [`MetadataStore::status_history`].
    async fn recipient_history(
        &self,
        id: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, RecipientStatusEntry)>, StoreError>;
    async fn search(&self, q: &SearchQuery) -> Result<Vec<Uuid>, StoreError>;
    /// How many transfers are in each status (statuses with none left out), for metrics.
    async fn transfer_counts(&self) -> Result<Vec<(FileTransferStatus, u64)>, StoreError>;
}
