//! The statistics port in memory, computed from the histories on every read: the reference the
//! durable adapters' incremental rollups are checked against.

use super::MemoryStore;
use crate::ports::statistics::{DailyPair, DailyRow, DailySummary, Statistics};
use crate::ports::StoreError;
use crate::statistics::MonthlyRow;
use async_trait::async_trait;
use broker_protocol::{FileTransferStatus, RecipientStatus};
use chrono::Datelike;
use std::collections::BTreeMap;
use uuid::Uuid;

/// What one (transfer, recipient) pair did in one month; the vendor is the latest (by seq).
#[derive(Default)]
struct PairMonth {
    created: u64,
    published: u64,
    attempts: u64,
    confirmed: u64,
    vendor: Option<(i64, String)>,
}

#[async_trait]
impl Statistics for MemoryStore {
    async fn monthly_rows(
        &self,
        service_owner: &str,
        year: i32,
        month: u32,
        resource: Option<&str>,
    ) -> Result<Vec<MonthlyRow>, StoreError> {
        let tables = self.lock();
        let in_month =
            |at: &chrono::DateTime<chrono::Utc>| at.year() == year && at.month() == month;
        let mut pairs: BTreeMap<(Uuid, String), PairMonth> = BTreeMap::new();
        for (seq, id, entry) in &tables.recipient_history {
            if !in_month(&entry.recipient_file_transfer_status_changed) {
                continue;
            }
            let pair = pairs.entry((*id, entry.recipient.clone())).or_default();
            match entry.recipient_file_transfer_status_code {
                RecipientStatus::Initialized => pair.created = 1,
                RecipientStatus::DownloadStarted => pair.attempts += 1,
                RecipientStatus::DownloadConfirmed => pair.confirmed = 1,
            }
            if let Some(vendor) = tables.recipient_vendors.get(seq) {
                if pair.vendor.as_ref().is_none_or(|(s, _)| s < seq) {
                    pair.vendor = Some((*seq, vendor.clone()));
                }
            }
        }
        for (_, id, entry) in &tables.status_history {
            if entry.file_transfer_status == FileTransferStatus::Published
                && in_month(&entry.file_transfer_status_changed)
            {
                for r in tables
                    .transfers
                    .get(id)
                    .iter()
                    .flat_map(|t| &t.view.recipients)
                {
                    pairs
                        .entry((*id, r.recipient.clone()))
                        .or_default()
                        .published = 1;
                }
            }
        }
        let mut rollup: BTreeMap<(String, String, String, String, String), MonthlyRow> =
            BTreeMap::new();
        for ((id, recipient), pair) in pairs {
            let Some(t) = tables.transfers.get(&id) else {
                continue;
            };
            let owner = tables
                .resources
                .get(&t.view.resource_id)
                .map(|r| r.service_owner_id.as_str());
            if owner != Some(service_owner) || resource.is_some_and(|r| r != t.view.resource_id) {
                continue;
            }
            let sender_vendor = tables.sender_vendors.get(&id).cloned().unwrap_or_default();
            let recipient_vendor = pair.vendor.map(|(_, v)| v).unwrap_or_default();
            let key = (
                t.view.resource_id.clone(),
                t.view.sender_org.clone(),
                recipient.clone(),
                sender_vendor.clone(),
                recipient_vendor.clone(),
            );
            let row = rollup.entry(key).or_insert_with(|| MonthlyRow {
                year,
                month,
                resource_id: t.view.resource_id.clone(),
                sender: t.view.sender_org.clone(),
                recipient,
                sender_vendor,
                recipient_vendor,
                ..MonthlyRow::default()
            });
            row.total_file_transfers += pair.created;
            row.upload_count += pair.published;
            row.download_attempts += pair.attempts;
            row.downloads_confirmed += pair.confirmed;
        }
        Ok(rollup
            .into_values()
            .filter(|r| {
                r.total_file_transfers
                    + r.upload_count
                    + r.download_attempts
                    + r.downloads_confirmed
                    > 0
            })
            .collect())
    }

    /// Nothing to rebuild: every read computes the month afresh.
    async fn rebuild_month(&self, _year: i32, _month: u32) -> Result<(), StoreError> {
        Ok(())
    }

    async fn daily_rows(
        &self,
        status_message_resources: &[String],
    ) -> Result<Vec<DailyRow>, StoreError> {
        let tables = self.lock();
        let mut summary = DailySummary::default();
        for row in tables.transfers.values() {
            let t = &row.view;
            let status_message = t
                .property_list
                .get("statusmessage")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            if status_message && status_message_resources.contains(&t.resource_id) {
                continue;
            }
            let Some(owner) = tables
                .resources
                .get(&t.resource_id)
                .and_then(|r| tables.owners.get(&r.service_owner_id))
            else {
                continue;
            };
            let date = t.created.format("%Y-%m-%d").to_string();
            for r in &t.recipients {
                summary.add(DailyPair {
                    date: &date,
                    service_owner_id: &owner.id,
                    service_owner_name: &owner.name,
                    sender_org: &t.sender_org,
                    resource_id: &t.resource_id,
                    recipient: &r.recipient,
                    size: t.size.max(0) as u64,
                });
            }
        }
        Ok(summary.rows())
    }
}
