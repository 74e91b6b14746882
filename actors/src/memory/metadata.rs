//! The metadata and outbox ports in memory.

use crate::ports::jobs::JobKey;
use crate::ports::metadata::*;
use crate::ports::StoreError;
use crate::state::{Phase, StoredFile, TransferState};
use async_trait::async_trait;
use broker_protocol::events::{CloudEvent, OutboxEntry};
use broker_protocol::status::Role;
use broker_protocol::time::Timestamp;
use broker_protocol::transfer::{FileTransferStatusEntry, RecipientStatusEntry};
use broker_protocol::FileTransferStatus;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use uuid::Uuid;

/// One transfer as stored: its view, and what only the lifecycle reads.
#[derive(Clone)]
pub(super) struct Row {
    pub(super) view: TransferView,
    pub(super) declared_checksum: Option<String>,
    pub(super) idempotency: Option<(String, String)>,
    /// When a resumable upload of it was last terminated.
    pub(super) tus_activity: Option<Timestamp>,
    /// Changes committed since it was created.
    pub(super) version: u64,
}

#[derive(Default)]
pub(super) struct Tables {
    pub(super) owners: HashMap<String, ServiceOwnerRow>,
    pub(super) resources: HashMap<String, ResourceRow>,
    pub(super) transfers: HashMap<Uuid, Row>,
    /// Insertion order of transfers, for search ties.
    pub(super) order: Vec<Uuid>,
    pub(super) status_history: Vec<(i64, Uuid, FileTransferStatusEntry)>,
    pub(super) recipient_history: Vec<(i64, Uuid, RecipientStatusEntry)>,
    /// The vendor of a recipient history row (by its seq), where one acted (for statistics).
    pub(super) recipient_vendors: HashMap<i64, String>,
    /// The vendor each transfer's sender acted through.
    pub(super) sender_vendors: HashMap<Uuid, String>,
    pub(super) outbox: Vec<OutboxEntry>,
    pub(super) sessions: super::sessions::Sessions,
    pub(super) deliveries: super::deliveries::Deliveries,
    pub(super) leases: super::leases::LeaseTable,
    pub(super) next_seq: i64,
}

impl Tables {
    fn seq(&mut self) -> i64 {
        self.next_seq += 1;
        self.next_seq
    }

    fn emit(&mut self, events: Vec<CloudEvent>) {
        for event in events {
            let sequence = self.outbox.len() as i64 + 1;
            self.outbox.push(OutboxEntry { sequence, event });
        }
    }

    fn record_status(
        &mut self,
        id: Uuid,
        status: FileTransferStatus,
        text: Option<String>,
        at: Timestamp,
    ) {
        let seq = self.seq();
        let entry = FileTransferStatusEntry {
            file_transfer_status: status,
            file_transfer_status_text: text.unwrap_or_else(|| status.default_text().to_string()),
            file_transfer_status_changed: at,
        };
        self.status_history.push((seq, id, entry));
    }

    fn record_recipient(
        &mut self,
        id: Uuid,
        recipient: &str,
        status: broker_protocol::RecipientStatus,
        at: Timestamp,
    ) {
        let seq = self.seq();
        let entry = RecipientStatusEntry {
            recipient: recipient.to_string(),
            recipient_file_transfer_status_code: status,
            recipient_file_transfer_status_text: status.text().to_string(),
            recipient_file_transfer_status_changed: at,
        };
        self.recipient_history.push((seq, id, entry));
    }
}

/// Transfers, resources, service owners, histories, the outbox and upload sessions, in memory.
#[derive(Default)]
pub struct MemoryStore {
    pub(super) tables: Mutex<Tables>,
    /// The jobs port (scheduled with the transitions that ask for them).
    pub(super) jobs: std::sync::Arc<super::MemoryJobs>,
    /// The store's own clock, which times leases (the machine's unless a test gives its own).
    pub(super) clock: std::sync::OnceLock<std::sync::Arc<dyn crate::ports::Clock>>,
}

impl MemoryStore {
    pub(super) fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().expect("memory store")
    }

    /// Makes `clock` the store's own clock (what times leases); set once, before use.
    pub fn use_clock(&self, clock: std::sync::Arc<dyn crate::ports::Clock>) {
        let _ = self.clock.set(clock);
    }

    /// The store's time: its own clock, the machine's by default.
    pub(super) fn store_now(&self) -> Timestamp {
        match self.clock.get() {
            Some(clock) => clock.now(),
            None => chrono::Utc::now(),
        }
    }

    /// The store's jobs port: the jobs its transitions schedule.
    pub fn jobs(&self) -> std::sync::Arc<super::MemoryJobs> {
        self.jobs.clone()
    }

    /// How many transfers exist, whoever they belong to.
    pub fn transfer_count(&self) -> usize {
        self.lock().transfers.len()
    }
}

fn phase_of(view: &TransferView) -> Phase {
    let stored = || StoredFile {
        size: view.size as u64,
        md5: view.checksum.clone().unwrap_or_default(),
        sha256: view.sha256.clone().unwrap_or_default(),
    };
    match view.status {
        FileTransferStatus::Initialized => Phase::Initialized,
        FileTransferStatus::UploadStarted => Phase::UploadStarted,
        // Without its hashes the file is still being verified in the background.
        FileTransferStatus::UploadProcessing if view.sha256.is_none() => Phase::Verifying,
        FileTransferStatus::UploadProcessing => Phase::UploadProcessing(stored()),
        FileTransferStatus::Published => Phase::Published(stored()),
        FileTransferStatus::AllConfirmedDownloaded => Phase::AllConfirmedDownloaded(stored()),
        FileTransferStatus::Purged => Phase::Purged,
        FileTransferStatus::Failed => Phase::Failed,
        FileTransferStatus::Cancelled => Phase::Cancelled,
    }
}

/// Whether `q` selects the transfer.
fn matches(q: &SearchQuery, view: &TransferView) -> bool {
    if view.resource_id != q.resource_id {
        return false;
    }
    let as_recipient = view.recipients.iter().find(|r| r.recipient == q.caller_org);
    let party = match q.recipient_status {
        Some(rs) => as_recipient.is_some_and(|r| r.status == rs),
        None => {
            (q.role != Some(Role::Recipient) && view.sender_org == q.caller_org)
                || (q.role != Some(Role::Sender) && as_recipient.is_some())
        }
    };
    party && q.status.is_none_or(|s| view.status == s)
}

#[async_trait]
impl MetadataStore for MemoryStore {
    async fn load_transfer(&self, id: Uuid) -> Result<Option<TransferRecord>, StoreError> {
        let tables = self.lock();
        let Some(row) = tables.transfers.get(&id) else {
            return Ok(None);
        };
        let resource = tables.resources.get(&row.view.resource_id);
        let view = &row.view;
        Ok(Some(TransferRecord {
            id,
            resource_id: view.resource_id.clone(),
            sender: view.sender.clone(),
            state: TransferState {
                phase: phase_of(view),
                recipients: view
                    .recipients
                    .iter()
                    .map(|r| (r.recipient.clone(), r.status))
                    .collect(),
                declared_md5: row.declared_checksum.clone(),
                use_virus_scan: view.use_virus_scan,
                purge_after_all_confirmed: resource.is_none_or(|r| r.purge_after_confirmed()),
            },
            purge_grace_period: resource
                .map_or(chrono::Duration::hours(DEFAULT_GRACE_PERIOD_HOURS), |r| {
                    r.grace_period()
                }),
            expiration_time: view.expiration_time,
            version: row.version,
        }))
    }

    async fn commit_change(&self, c: TransferChange) -> Result<Option<u64>, StoreError> {
        let now = self.store_now();
        let mut tables = self.lock();
        let row = tables
            .transfers
            .get_mut(&c.id)
            .ok_or(StoreError::Conflict)?;
        if row.view.status != c.expected_status || row.version != c.expected_version {
            return Err(StoreError::Conflict);
        }
        if let Some(token) = c.ends_lease {
            if !tables.leases.is_current(c.id, "", token) {
                return Err(StoreError::LeaseLost);
            }
        }
        if c.begins_lease.is_some() && tables.leases.is_alive(c.id, "", now) {
            return Err(StoreError::LeaseHeld);
        }
        let row = tables
            .transfers
            .get_mut(&c.id)
            .ok_or(StoreError::Conflict)?;
        row.version += 1;
        let view = &mut row.view;
        if let Some((status, text)) = &c.new_status {
            view.status = *status;
            view.status_text = text.clone();
            view.status_changed = c.at;
            if *status == FileTransferStatus::Published {
                view.published = Some(c.at);
            }
        }
        if let Some(f) = &c.stored_file {
            view.size = f.size as i64;
            view.checksum = Some(row.declared_checksum.clone().unwrap_or(f.md5.clone()));
            view.sha256 = Some(f.sha256.clone());
        }
        for (recipient, status) in &c.recipient_rows {
            if let Some(r) = view
                .recipients
                .iter_mut()
                .find(|r| &r.recipient == recipient)
            {
                r.status = r.status.max(*status);
                r.changed = c.at;
            }
        }
        if let Some(token) = c.ends_lease {
            tables.leases.end(c.id, "", token);
        }
        let began = c
            .begins_lease
            .as_ref()
            .map(|b| tables.leases.grant(c.id, "", &b.holder, b.ttl_ms, now));
        if let Some((status, text)) = c.new_status {
            tables.record_status(c.id, status, text, c.at);
        }
        for (recipient, status) in &c.recipient_rows {
            tables.record_recipient(c.id, recipient, *status, c.at);
            if let Some(vendor) = &c.vendor {
                let seq = tables.next_seq;
                tables.recipient_vendors.insert(seq, vendor.clone());
            }
        }
        tables.emit(c.events);
        for (key, due_at) in &c.jobs {
            self.jobs.schedule_now(key, *due_at);
        }
        for key in &c.cancelled_jobs {
            self.jobs.cancel_now(key);
        }
        Ok(began)
    }

    async fn health(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn create_service_owner(
        &self,
        id: &str,
        name: &str,
        _at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tables = self.lock();
        if tables.owners.contains_key(id) {
            return Ok(false);
        }
        let row = ServiceOwnerRow {
            id: id.to_string(),
            name: name.to_string(),
        };
        tables.owners.insert(id.to_string(), row);
        Ok(true)
    }

    async fn service_owner(&self, id: &str) -> Result<Option<ServiceOwnerRow>, StoreError> {
        Ok(self.lock().owners.get(id).cloned())
    }

    async fn resource(&self, id: &str) -> Result<Option<ResourceRow>, StoreError> {
        Ok(self.lock().resources.get(id).cloned())
    }

    async fn save_resource(&self, row: ResourceRow, _at: Timestamp) -> Result<bool, StoreError> {
        let mut tables = self.lock();
        if tables
            .resources
            .get(&row.id)
            .is_some_and(|r| r.service_owner_id != row.service_owner_id)
        {
            return Ok(false);
        }
        tables.resources.insert(row.id.clone(), row);
        Ok(true)
    }

    async fn create_transfer(
        &self,
        t: NewTransfer,
        events: Vec<CloudEvent>,
        jobs: Vec<(JobKey, Timestamp)>,
    ) -> Result<Created, StoreError> {
        let mut tables = self.lock();
        if let Some((key, fingerprint)) = &t.idempotency {
            let since = t.created - chrono::Duration::hours(24);
            if let Some(earlier) = newest_with_key(&tables, &t.sender_org, key, since) {
                return Ok(match earlier.idempotency.as_ref().map(|i| &i.1) {
                    Some(f) if f == fingerprint => Created::Existing(earlier.view.id),
                    _ => Created::KeyReused,
                });
            }
        }
        let recipients = t
            .recipients
            .iter()
            .map(|r| RecipientRow {
                recipient: r.clone(),
                status: broker_protocol::RecipientStatus::Initialized,
                changed: t.created,
            })
            .collect();
        let view = TransferView {
            id: t.id,
            resource_id: t.resource_id,
            file_name: t.file_name,
            senders_reference: t.senders_reference,
            sender: t.sender,
            sender_org: t.sender_org,
            checksum: t.declared_checksum.clone(),
            sha256: None,
            use_virus_scan: t.use_virus_scan,
            size: 0,
            status: FileTransferStatus::Initialized,
            status_text: None,
            status_changed: t.created,
            created: t.created,
            expiration_time: t.expiration_time,
            published: None,
            property_list: t.property_list,
            recipients,
        };
        tables.record_status(t.id, FileTransferStatus::Initialized, None, t.created);
        if let Some(vendor) = t.sender_vendor {
            tables.sender_vendors.insert(t.id, vendor);
        }
        for r in &t.recipients {
            tables.record_recipient(
                t.id,
                r,
                broker_protocol::RecipientStatus::Initialized,
                t.created,
            );
        }
        tables.emit(events);
        for (key, due_at) in &jobs {
            self.jobs.schedule_now(key, *due_at);
        }
        let row = Row {
            view,
            declared_checksum: t.declared_checksum,
            idempotency: t.idempotency,
            tus_activity: None,
            version: 0,
        };
        tables.transfers.insert(t.id, row);
        tables.order.push(t.id);
        Ok(Created::New(t.id))
    }

    async fn transfer(&self, id: Uuid) -> Result<Option<TransferView>, StoreError> {
        Ok(self.lock().transfers.get(&id).map(|r| r.view.clone()))
    }

    async fn idempotent_transfer(
        &self,
        sender_org: &str,
        key: &str,
        since: Timestamp,
    ) -> Result<Option<(Uuid, Option<String>)>, StoreError> {
        let tables = self.lock();
        Ok(newest_with_key(&tables, sender_org, key, since)
            .map(|r| (r.view.id, r.idempotency.as_ref().map(|i| i.1.clone()))))
    }

    async fn status_history(
        &self,
        id: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, FileTransferStatusEntry)>, StoreError> {
        let tables = self.lock();
        Ok(tables
            .status_history
            .iter()
            .filter(|(seq, t, _)| *t == id && *seq > after)
            .take(limit as usize)
            .map(|(seq, _, e)| (*seq, e.clone()))
            .collect())
    }

    async fn recipient_history(
        &self,
        id: Uuid,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, RecipientStatusEntry)>, StoreError> {
        let tables = self.lock();
        Ok(tables
            .recipient_history
            .iter()
            .filter(|(seq, t, _)| *t == id && *seq > after)
            .take(limit as usize)
            .map(|(seq, _, e)| (*seq, e.clone()))
            .collect())
    }

    async fn transfer_counts(&self) -> Result<Vec<(FileTransferStatus, u64)>, StoreError> {
        let mut counts = std::collections::BTreeMap::<i64, (FileTransferStatus, u64)>::new();
        for row in self.lock().transfers.values() {
            let status = row.view.status;
            counts.entry(status.code()).or_insert((status, 0)).1 += 1;
        }
        Ok(counts.into_values().collect())
    }

    async fn search(&self, q: &SearchQuery) -> Result<Vec<Uuid>, StoreError> {
        let tables = self.lock();
        // The sort date is the time the transfer entered the filtered status, else its creation.
        let date = |v: &TransferView| {
            if q.status.is_some() {
                v.status_changed
            } else {
                v.created
            }
        };
        let mut found: Vec<&TransferView> = tables
            .order
            .iter()
            .map(|id| &tables.transfers[id].view)
            .filter(|v| matches(q, v))
            .filter(|v| match (q.from, q.to) {
                (Some(from), Some(to)) => date(v) >= from && date(v) <= to,
                (Some(from), None) => date(v) > from,
                (None, Some(to)) => date(v) < to,
                (None, None) => true,
            })
            .collect();
        found.sort_by_key(|v| date(v));
        if !q.ascending {
            found.reverse();
        }
        Ok(found
            .into_iter()
            .take(SEARCH_LIMIT as usize)
            .map(|v| v.id)
            .collect())
    }
}

fn newest_with_key<'t>(
    tables: &'t Tables,
    sender_org: &str,
    key: &str,
    since: Timestamp,
) -> Option<&'t Row> {
    tables
        .transfers
        .values()
        .filter(|r| r.view.sender_org == sender_org && r.view.created > since)
        .filter(|r| r.idempotency.as_ref().is_some_and(|i| i.0 == key))
        .max_by_key(|r| r.view.created)
}
