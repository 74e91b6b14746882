//! The metadata port's rules.

use super::{new_transfer, resource, status_change as change, t0, OWNER, RECIPIENT};
use crate::ports::metadata::*;
use crate::ports::{MetadataStore, StoreError};
use crate::state::{Phase, StoredFile};
use broker_protocol::status::Role;
use broker_protocol::{FileTransferStatus, RecipientStatus};
use chrono::Duration;

/// Runs every rule of the metadata port against `store` (a fresh, empty adapter).
pub async fn metadata_store_suite(store: &dyn MetadataStore) {
    a_created_transfer_reads_back_initialized_with_its_history(store).await;
    a_change_commits_only_from_the_expected_status(store).await;
    two_changes_made_from_one_version_commit_only_once(store).await;
    a_declared_checksum_outlives_the_computed_one(store).await;
    an_idempotency_key_returns_the_same_transfer_within_a_day(store).await;
    service_owners_are_created_once_and_resources_keep_their_owner(store).await;
    search_filters_by_party_role_and_status_newest_first(store).await;
    histories_are_read_page_by_page_in_order(store).await;
}

async fn a_created_transfer_reads_back_initialized_with_its_history(store: &dyn MetadataStore) {
    resource(store, "m-read").await;
    let new = new_transfer("m-read", t0());
    let id = new.id;
    assert_eq!(
        store.create_transfer(new, vec![], vec![]).await.unwrap(),
        Created::New(id)
    );
    let view = store
        .transfer(id)
        .await
        .unwrap()
        .expect("the transfer reads back");
    assert_eq!(view.status, FileTransferStatus::Initialized);
    assert_eq!(view.file_name, "report.pdf");
    assert_eq!(view.property_list.get("k").map(String::as_str), Some("v"));
    assert_eq!(view.recipients.len(), 1);
    assert_eq!(view.recipients[0].status, RecipientStatus::Initialized);
    let record = store
        .load_transfer(id)
        .await
        .unwrap()
        .expect("the lifecycle record");
    assert_eq!(record.state.phase, Phase::Initialized);
    assert_eq!(
        record.state.recipients,
        vec![(RECIPIENT.to_string(), RecipientStatus::Initialized)]
    );
    assert_eq!(store.status_history(id, 0, 10).await.unwrap().len(), 1);
    assert_eq!(store.recipient_history(id, 0, 10).await.unwrap().len(), 1);
    assert!(store
        .transfer(uuid::Uuid::new_v4())
        .await
        .unwrap()
        .is_none());
}

async fn a_change_commits_only_from_the_expected_status(store: &dyn MetadataStore) {
    resource(store, "m-cond").await;
    let new = new_transfer("m-cond", t0());
    let id = new.id;
    store.create_transfer(new, vec![], vec![]).await.unwrap();
    let stale = change(
        id,
        FileTransferStatus::UploadStarted,
        FileTransferStatus::Published,
    );
    assert!(
        matches!(
            super::commit_current(store, stale).await,
            Err(StoreError::Conflict)
        ),
        "a change from a status the transfer is not in is refused"
    );
    assert_eq!(
        store.transfer(id).await.unwrap().unwrap().status,
        FileTransferStatus::Initialized
    );
    let mut start = change(
        id,
        FileTransferStatus::Initialized,
        FileTransferStatus::UploadStarted,
    );
    start.recipient_rows = vec![(RECIPIENT.into(), RecipientStatus::DownloadStarted)];
    super::commit_current(store, start).await.unwrap();
    let view = store.transfer(id).await.unwrap().unwrap();
    assert_eq!(view.status, FileTransferStatus::UploadStarted);
    assert_eq!(view.status_changed, t0() + Duration::minutes(1));
    assert_eq!(view.recipients[0].status, RecipientStatus::DownloadStarted);
    assert_eq!(store.status_history(id, 0, 10).await.unwrap().len(), 2);
    assert!(matches!(
        super::commit_current(
            store,
            change(
                uuid::Uuid::new_v4(),
                FileTransferStatus::Initialized,
                FileTransferStatus::UploadStarted
            )
        )
        .await,
        Err(StoreError::Conflict)
    ));
}

async fn two_changes_made_from_one_version_commit_only_once(store: &dyn MetadataStore) {
    resource(store, "m-version").await;
    let mut new = new_transfer("m-version", t0());
    new.recipients.push("0192:333333333".into());
    let id = new.id;
    store.create_transfer(new, vec![], vec![]).await.unwrap();
    let version = store.load_transfer(id).await.unwrap().unwrap().version;
    // Two nodes each record one recipient's download from the same state: the status does not change,
    // so only the version tells the second that it decided on a state that is gone.
    let recipient = |org: &str| TransferChange {
        id,
        expected_status: FileTransferStatus::Initialized,
        expected_version: version,
        new_status: None,
        recipient_rows: vec![(org.into(), RecipientStatus::DownloadStarted)],
        ..change(
            id,
            FileTransferStatus::Initialized,
            FileTransferStatus::Initialized,
        )
    };
    store.commit_change(recipient(RECIPIENT)).await.unwrap();
    let after_first = store.load_transfer(id).await.unwrap().unwrap();
    assert_eq!(
        after_first.version,
        version + 1,
        "a commit moves the version on by one"
    );
    assert!(
        matches!(
            store.commit_change(recipient("0192:333333333")).await,
            Err(StoreError::Conflict)
        ),
        "the second change made from the same version is refused"
    );
    let view = store.transfer(id).await.unwrap().unwrap();
    let status_of = |org: &str| {
        view.recipients
            .iter()
            .find(|r| r.recipient == org)
            .map(|r| r.status)
    };
    assert_eq!(status_of(RECIPIENT), Some(RecipientStatus::DownloadStarted));
    assert_eq!(
        status_of("0192:333333333"),
        Some(RecipientStatus::Initialized),
        "the refused change wrote nothing"
    );
    assert_eq!(store.recipient_history(id, 0, 10).await.unwrap().len(), 3);
    assert_eq!(
        store.load_transfer(id).await.unwrap().unwrap().version,
        version + 1
    );
    let mut again = recipient("0192:333333333");
    again.expected_version = version + 1;
    store.commit_change(again).await.unwrap();
    assert_eq!(
        store.load_transfer(id).await.unwrap().unwrap().version,
        version + 2,
        "decided again on the current version, it commits"
    );
}

async fn a_declared_checksum_outlives_the_computed_one(store: &dyn MetadataStore) {
    resource(store, "m-sum").await;
    let mut new = new_transfer("m-sum", t0());
    new.declared_checksum = Some("declared".into());
    let id = new.id;
    store.create_transfer(new, vec![], vec![]).await.unwrap();
    let mut publish = change(
        id,
        FileTransferStatus::Initialized,
        FileTransferStatus::Published,
    );
    publish.stored_file = Some(StoredFile {
        size: 7,
        md5: "computed".into(),
        sha256: "sha".into(),
    });
    super::commit_current(store, publish).await.unwrap();
    let view = store.transfer(id).await.unwrap().unwrap();
    assert_eq!(view.checksum.as_deref(), Some("declared"));
    assert_eq!(view.sha256.as_deref(), Some("sha"));
    assert_eq!(view.size, 7);
    assert_eq!(view.published, Some(t0() + Duration::minutes(1)));
}

async fn an_idempotency_key_returns_the_same_transfer_within_a_day(store: &dyn MetadataStore) {
    resource(store, "m-idem").await;
    let mut first = new_transfer("m-idem", t0());
    first.idempotency = Some(("key".into(), "print".into()));
    let id = first.id;
    assert_eq!(
        store
            .create_transfer(first.clone(), vec![], vec![])
            .await
            .unwrap(),
        Created::New(id)
    );
    let mut again = first.clone();
    again.id = uuid::Uuid::new_v4();
    again.created = t0() + Duration::hours(1);
    assert_eq!(
        store
            .create_transfer(again.clone(), vec![], vec![])
            .await
            .unwrap(),
        Created::Existing(id)
    );
    let mut other = again.clone();
    other.idempotency = Some(("key".into(), "another request".into()));
    assert_eq!(
        store.create_transfer(other, vec![], vec![]).await.unwrap(),
        Created::KeyReused
    );
    let found = store
        .idempotent_transfer(OWNER, "key", t0() - Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(found, Some((id, Some("print".to_string()))));
    let mut later = again;
    later.created = t0() + Duration::hours(25);
    let later_id = later.id;
    assert_eq!(
        store.create_transfer(later, vec![], vec![]).await.unwrap(),
        Created::New(later_id),
        "a key older than a day is free again"
    );
}

async fn service_owners_are_created_once_and_resources_keep_their_owner(store: &dyn MetadataStore) {
    assert!(store
        .create_service_owner("0192:333333333", "Third", t0())
        .await
        .unwrap());
    assert!(!store
        .create_service_owner("0192:333333333", "Again", t0())
        .await
        .unwrap());
    assert_eq!(
        store
            .service_owner("0192:333333333")
            .await
            .unwrap()
            .unwrap()
            .name,
        "Third"
    );
    assert!(store
        .service_owner("0192:444444444")
        .await
        .unwrap()
        .is_none());
    let mut row = ResourceRow {
        id: "m-owned".into(),
        service_owner_id: "0192:333333333".into(),
        ..Default::default()
    };
    assert!(store.save_resource(row.clone(), t0()).await.unwrap());
    row.max_file_transfer_size = Some(100);
    assert!(store.save_resource(row.clone(), t0()).await.unwrap());
    assert_eq!(
        store
            .resource("m-owned")
            .await
            .unwrap()
            .unwrap()
            .max_file_transfer_size,
        Some(100)
    );
    let taken = ResourceRow {
        service_owner_id: OWNER.into(),
        max_file_transfer_size: Some(1),
        ..row
    };
    assert!(
        !store.save_resource(taken, t0()).await.unwrap(),
        "another owner cannot take a resource"
    );
    assert_eq!(
        store
            .resource("m-owned")
            .await
            .unwrap()
            .unwrap()
            .max_file_transfer_size,
        Some(100)
    );
}

async fn search_filters_by_party_role_and_status_newest_first(store: &dyn MetadataStore) {
    resource(store, "m-search").await;
    let mut ids = vec![];
    for minutes in 0..3 {
        let new = new_transfer("m-search", t0() + Duration::minutes(minutes));
        ids.push(new.id);
        store.create_transfer(new, vec![], vec![]).await.unwrap();
    }
    let query = |org: &str, role: Option<Role>| SearchQuery {
        resource_id: "m-search".into(),
        caller_org: org.into(),
        status: None,
        recipient_status: None,
        from: None,
        to: None,
        ascending: false,
        role,
    };
    let newest_first: Vec<_> = ids.iter().rev().copied().collect();
    assert_eq!(
        store.search(&query(OWNER, None)).await.unwrap(),
        newest_first
    );
    assert_eq!(
        store
            .search(&query(RECIPIENT, Some(Role::Recipient)))
            .await
            .unwrap(),
        newest_first
    );
    assert!(store
        .search(&query(RECIPIENT, Some(Role::Sender)))
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .search(&query("0192:999999999", None))
        .await
        .unwrap()
        .is_empty());
    let mut ascending = query(OWNER, None);
    ascending.ascending = true;
    ascending.from = Some(t0());
    assert_eq!(
        store.search(&ascending).await.unwrap(),
        ids[1..].to_vec(),
        "`from` is exclusive"
    );
    super::commit_current(
        store,
        change(
            ids[1],
            FileTransferStatus::Initialized,
            FileTransferStatus::UploadStarted,
        ),
    )
    .await
    .unwrap();
    let mut started = query(OWNER, None);
    started.status = Some(FileTransferStatus::UploadStarted);
    assert_eq!(store.search(&started).await.unwrap(), vec![ids[1]]);
}

async fn histories_are_read_page_by_page_in_order(store: &dyn MetadataStore) {
    resource(store, "m-pages").await;
    let new = new_transfer("m-pages", t0());
    let id = new.id;
    store.create_transfer(new, vec![], vec![]).await.unwrap();
    for _ in 0..4 {
        let mut c = change(
            id,
            FileTransferStatus::Initialized,
            FileTransferStatus::Initialized,
        );
        c.new_status = None;
        c.recipient_rows = vec![(RECIPIENT.into(), RecipientStatus::DownloadStarted)];
        super::commit_current(store, c).await.unwrap();
    }
    let first = store.recipient_history(id, 0, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = store.recipient_history(id, first[1].0, 10).await.unwrap();
    assert_eq!(rest.len(), 3, "five rows in all, none twice");
    assert!(first[0].0 < first[1].0 && first[1].0 < rest[0].0);
    assert_eq!(
        first[0].1.recipient_file_transfer_status_code,
        RecipientStatus::Initialized
    );
    assert_eq!(
        rest[2].1.recipient_file_transfer_status_code,
        RecipientStatus::DownloadStarted
    );
}
