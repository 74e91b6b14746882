//! Statistics (spec 7.3-7.5): the monthly rollup, kept as transfers move and rebuilt from the
//! histories on schedule, and the daily summary's rows. The metadata store's adapter keeps both, as
//! they are read from its tables.

use super::StoreError;
use crate::statistics::MonthlyRow;
use async_trait::async_trait;
use std::collections::BTreeMap;

/// What a recipient identifier is, by its digits (spec 7.5: 9 an organisation, 11 a person).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecipientType {
    Person = 0,
    Organization = 1,
    Unknown = 2,
}

impl RecipientType {
    /// Classifies `0192:NNNNNNNNN`, a bare number or anything else.
    pub fn of(recipient: &str) -> RecipientType {
        let digits = recipient.rsplit(':').next().unwrap_or(recipient);
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return RecipientType::Unknown;
        }
        match digits.len() {
            9 => RecipientType::Organization,
            11 => RecipientType::Person,
            _ => RecipientType::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecipientType::Person => "Person",
            RecipientType::Organization => "Organization",
            RecipientType::Unknown => "Unknown",
        }
    }
}

/// One row of the daily summary: the (transfer, recipient) pairs of transfers created on one day,
/// by service owner, sender, resource and recipient type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DailyRow {
    /// `yyyy-MM-dd` (UTC).
    pub date: String,
    pub service_owner_id: String,
    pub service_owner_name: String,
    /// The sender's organisation number (digits only).
    pub sender: String,
    pub resource_id: String,
    pub recipient_type: RecipientType,
    pub file_transfers: u64,
    /// The pairs' file sizes summed (a file sent to three recipients counts three times, as the
    /// original counts it).
    pub file_storage_bytes: u64,
}

/// One (transfer, recipient) pair as the daily summary counts it.
pub struct DailyPair<'a> {
    /// `yyyy-MM-dd` of the transfer's creation (UTC).
    pub date: &'a str,
    pub service_owner_id: &'a str,
    pub service_owner_name: &'a str,
    /// `0192:NNNNNNNNN` (the row keeps the digits).
    pub sender_org: &'a str,
    pub resource_id: &'a str,
    pub recipient: &'a str,
    pub size: u64,
}

/// Sums pairs into the daily summary's rows, whichever adapter reads them.
#[derive(Default)]
pub struct DailySummary(BTreeMap<(String, String, String, String, RecipientType), DailyRow>);

impl DailySummary {
    pub fn add(&mut self, pair: DailyPair<'_>) {
        let sender = broker_protocol::events::org_digits(pair.sender_org).to_string();
        let recipient_type = RecipientType::of(pair.recipient);
        let key = (
            pair.date.to_string(),
            pair.service_owner_id.to_string(),
            sender.clone(),
            pair.resource_id.to_string(),
            recipient_type,
        );
        let row = self.0.entry(key).or_insert_with(|| DailyRow {
            date: pair.date.to_string(),
            service_owner_id: pair.service_owner_id.to_string(),
            service_owner_name: pair.service_owner_name.to_string(),
            sender,
            resource_id: pair.resource_id.to_string(),
            recipient_type,
            file_transfers: 0,
            file_storage_bytes: 0,
        });
        row.file_transfers += 1;
        row.file_storage_bytes += pair.size;
    }

    /// The rows, ordered by date, owner, sender, resource and recipient type.
    pub fn rows(self) -> Vec<DailyRow> {
        self.0.into_values().collect()
    }
}

#[async_trait]
pub trait Statistics: Send + Sync + 'static {
    /// The rollup's rows of one service owner's month, of one resource or all of theirs.
    async fn monthly_rows(
        &self,
        service_owner: &str,
        year: i32,
        month: u32,
        resource: Option<&str>,
    ) -> Result<Vec<MonthlyRow>, StoreError>;

    /// Recomputes the month's rollup from the transfers' histories, in one transaction.
    async fn rebuild_month(&self, year: i32, month: u32) -> Result<(), StoreError>;

    /// The daily summary over every transfer, leaving out the transfers on `status_message_resources`
    /// that carry the property `statusmessage=true`.
    async fn daily_rows(
        &self,
        status_message_resources: &[String],
    ) -> Result<Vec<DailyRow>, StoreError>;
}
