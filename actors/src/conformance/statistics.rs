//! The statistics port's rules, on a scripted month (March 2026) with transfers reaching into the
//! months around it, checked against a table computed by hand.

use super::{resource, OWNER, RECIPIENT};
use crate::ports::metadata::*;
use crate::ports::statistics::{DailyRow, RecipientType, Statistics};
use crate::ports::MetadataStore;
use crate::state::StoredFile;
use crate::statistics::MonthlyRow;
use broker_protocol::time::Timestamp;
use broker_protocol::{FileTransferStatus, RecipientStatus};

const RECIPIENT_2: &str = "0192:333333333";
const PERSON: &str = "12345678901";
const SENDER_VENDOR: &str = "0192:900000001";
const RECIPIENT_VENDOR: &str = "0192:900000002";
const OTHER_OWNER: &str = "0192:999999999";

fn at(text: &str) -> Timestamp {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("a valid instant")
        .with_timezone(&chrono::Utc)
}

struct Script<'a> {
    store: &'a dyn MetadataStore,
}

impl Script<'_> {
    async fn create(
        &self,
        resource_id: &str,
        when: &str,
        recipients: &[&str],
        sender_vendor: Option<&str>,
        properties: &[(&str, &str)],
    ) -> uuid::Uuid {
        let mut t = super::new_transfer(resource_id, at(when));
        t.recipients = recipients.iter().map(|r| r.to_string()).collect();
        t.sender_vendor = sender_vendor.map(str::to_string);
        t.property_list = properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let id = t.id;
        self.store.create_transfer(t, vec![], vec![]).await.unwrap();
        id
    }

    async fn publish(&self, id: uuid::Uuid, when: &str, size: u64) {
        self.commit(id, FileTransferStatus::Initialized, when, |c| {
            c.new_status = Some((FileTransferStatus::Published, None));
            c.stored_file = Some(StoredFile {
                size,
                md5: "m".into(),
                sha256: "s".into(),
            });
        })
        .await;
    }

    async fn recipient(
        &self,
        id: uuid::Uuid,
        when: &str,
        recipient: &str,
        status: RecipientStatus,
        vendor: Option<&str>,
    ) {
        self.commit(id, FileTransferStatus::Published, when, |c| {
            c.recipient_rows = vec![(recipient.to_string(), status)];
            c.vendor = vendor.map(str::to_string);
        })
        .await;
    }

    async fn commit(
        &self,
        id: uuid::Uuid,
        expected: FileTransferStatus,
        when: &str,
        edit: impl FnOnce(&mut TransferChange),
    ) {
        let mut change = TransferChange::new(id, expected, 0, at(when));
        edit(&mut change);
        super::commit_current(self.store, change).await.unwrap();
    }
}

fn row(
    (year, month): (i32, u32),
    resource_id: &str,
    recipient: &str,
    (sender_vendor, recipient_vendor): (&str, &str),
    [total, uploads, attempts, confirmed]: [u64; 4],
) -> MonthlyRow {
    MonthlyRow {
        year,
        month,
        resource_id: resource_id.into(),
        sender: OWNER.into(),
        recipient: recipient.into(),
        sender_vendor: sender_vendor.into(),
        recipient_vendor: recipient_vendor.into(),
        total_file_transfers: total,
        upload_count: uploads,
        download_attempts: attempts,
        downloads_confirmed: confirmed,
    }
}

async fn month(stats: &dyn Statistics, m: u32, resource: Option<&str>) -> Vec<MonthlyRow> {
    let mut rows = stats.monthly_rows(OWNER, 2026, m, resource).await.unwrap();
    rows.sort_by(|a, b| {
        let key = |r: &MonthlyRow| {
            (
                r.resource_id.clone(),
                r.recipient.clone(),
                r.sender_vendor.clone(),
                r.recipient_vendor.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    rows
}

/// Runs every rule of the statistics port against `store` and `stats` (one fresh adapter).
pub async fn statistics_suite(store: &dyn MetadataStore, stats: &dyn Statistics) {
    use RecipientStatus::*;
    resource(store, "s-a").await;
    resource(store, "s-b").await;
    store
        .create_service_owner(OTHER_OWNER, "Other owner", at("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let other = ResourceRow {
        id: "other-r".into(),
        service_owner_id: OTHER_OWNER.into(),
        ..Default::default()
    };
    store
        .save_resource(other, at("2026-01-01T00:00:00Z"))
        .await
        .unwrap();
    let s = Script { store };

    // T1: created in February, published, downloaded twice and confirmed in March.
    let t1 = s
        .create("s-a", "2026-02-28T23:00:00Z", &[RECIPIENT], None, &[])
        .await;
    s.publish(t1, "2026-03-01T00:10:00Z", 100).await;
    let v = Some(RECIPIENT_VENDOR);
    s.recipient(t1, "2026-03-02T08:00:00Z", RECIPIENT, DownloadStarted, v)
        .await;
    s.recipient(t1, "2026-03-03T08:00:00Z", RECIPIENT, DownloadStarted, None)
        .await;
    s.recipient(
        t1,
        "2026-03-03T08:01:00Z",
        RECIPIENT,
        DownloadConfirmed,
        None,
    )
    .await;
    // T2: sent through a vendor's system to two recipients; the second downloads through another
    // vendor's system in March and confirms in April.
    let t2 = s
        .create(
            "s-a",
            "2026-03-05T10:00:00Z",
            &[RECIPIENT, RECIPIENT_2],
            Some(SENDER_VENDOR),
            &[],
        )
        .await;
    s.publish(t2, "2026-03-05T10:05:00Z", 1000).await;
    s.recipient(t2, "2026-03-06T09:00:00Z", RECIPIENT_2, DownloadStarted, v)
        .await;
    s.recipient(
        t2,
        "2026-04-01T00:00:00Z",
        RECIPIENT_2,
        DownloadConfirmed,
        v,
    )
    .await;
    // T3: created in the month's last second, never uploaded; one recipient is a person.
    s.create(
        "s-b",
        "2026-03-31T23:59:59Z",
        &[RECIPIENT, PERSON],
        None,
        &[],
    )
    .await;
    // A status message on s-b, and another owner's transfer.
    s.create(
        "s-b",
        "2026-03-20T12:00:00Z",
        &[RECIPIENT],
        None,
        &[("statusmessage", "true")],
    )
    .await;
    s.create("other-r", "2026-03-10T12:00:00Z", &[RECIPIENT], None, &[])
        .await;

    let march = vec![
        row(
            (2026, 3),
            "s-a",
            RECIPIENT,
            ("", RECIPIENT_VENDOR),
            [0, 1, 2, 1],
        ),
        row(
            (2026, 3),
            "s-a",
            RECIPIENT,
            (SENDER_VENDOR, ""),
            [1, 1, 0, 0],
        ),
        row(
            (2026, 3),
            "s-a",
            RECIPIENT_2,
            (SENDER_VENDOR, RECIPIENT_VENDOR),
            [1, 1, 1, 0],
        ),
        row((2026, 3), "s-b", RECIPIENT, ("", ""), [2, 0, 0, 0]),
        row((2026, 3), "s-b", PERSON, ("", ""), [1, 0, 0, 0]),
    ];
    let february = vec![row((2026, 2), "s-a", RECIPIENT, ("", ""), [1, 0, 0, 0])];
    let april = vec![row(
        (2026, 4),
        "s-a",
        RECIPIENT_2,
        (SENDER_VENDOR, RECIPIENT_VENDOR),
        [0, 0, 0, 1],
    )];
    for round in ["kept as the transfers moved", "rebuilt from the histories"] {
        assert_eq!(month(stats, 3, None).await, march, "March, {round}");
        assert_eq!(month(stats, 2, None).await, february, "February, {round}");
        assert_eq!(month(stats, 4, None).await, april, "April, {round}");
        assert_eq!(
            month(stats, 3, Some("s-b")).await,
            march[3..].to_vec(),
            "one resource's March, {round}"
        );
        assert!(
            month(stats, 5, None).await.is_empty(),
            "a month without activity has no rows"
        );
        assert!(
            stats
                .monthly_rows(OTHER_OWNER, 2026, 3, Some("s-a"))
                .await
                .unwrap()
                .is_empty(),
            "another owner sees none of this owner's rows"
        );
        for m in 2..=5 {
            stats.rebuild_month(2026, m).await.unwrap();
        }
    }
    // Changes after the rebuild: T2's first recipient downloads through a vendor's system (the
    // pair's counts move to that vendor), T1's recipient once more with its own token (its pair
    // stays under the vendor it used before).
    s.recipient(t2, "2026-03-30T09:00:00Z", RECIPIENT, DownloadStarted, v)
        .await;
    s.recipient(t1, "2026-03-30T10:00:00Z", RECIPIENT, DownloadStarted, None)
        .await;
    let mut after = march.clone();
    after[0].download_attempts = 3;
    after[1] = row(
        (2026, 3),
        "s-a",
        RECIPIENT,
        (SENDER_VENDOR, RECIPIENT_VENDOR),
        [1, 1, 1, 0],
    );
    assert_eq!(
        month(stats, 3, None).await,
        after,
        "downloads after the rebuild"
    );
    stats.rebuild_month(2026, 3).await.unwrap();
    assert_eq!(month(stats, 3, None).await, after, "and rebuilt once more");

    let daily = |date: &str, owner: (&str, &str), resource: &str, kind, n, bytes| DailyRow {
        date: date.into(),
        service_owner_id: owner.0.into(),
        service_owner_name: owner.1.into(),
        sender: "111111111".into(),
        resource_id: resource.into(),
        recipient_type: kind,
        file_transfers: n,
        file_storage_bytes: bytes,
    };
    let (owner, other) = ((OWNER, "Owner"), (OTHER_OWNER, "Other owner"));
    let org = RecipientType::Organization;
    let mut expected = vec![
        daily("2026-02-28", owner, "s-a", org, 1, 100),
        daily("2026-03-05", owner, "s-a", org, 2, 2000),
        daily("2026-03-31", owner, "s-b", RecipientType::Person, 1, 0),
        daily("2026-03-31", owner, "s-b", org, 1, 0),
        daily("2026-03-10", other, "other-r", org, 1, 0),
    ];
    let sorted = |mut rows: Vec<DailyRow>| {
        rows.sort();
        rows
    };
    assert_eq!(
        sorted(stats.daily_rows(&["s-b".to_string()]).await.unwrap()),
        sorted(expected.clone()),
        "the daily summary leaves out status messages on the filtered resources"
    );
    expected.push(daily("2026-03-20", owner, "s-b", org, 1, 0));
    assert_eq!(
        sorted(stats.daily_rows(&[]).await.unwrap()),
        sorted(expected),
        "without the filter status messages count"
    );
}
