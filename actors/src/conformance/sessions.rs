//! The upload-sessions port's rules. Sessions belong to transfers, so the suite needs the metadata
//! port of the same adapter.

use super::{new_transfer, resource, t0};
use crate::ports::metadata::TransferChange;
use crate::ports::upload_sessions::{Advance, PartAdmission, SessionRow};
use crate::ports::{MetadataStore, UploadSessions};
use broker_protocol::FileTransferStatus;
use chrono::Duration;
use uuid::Uuid;

/// The rules that tie writes to leases: an offset moved, or an upload's last transition committed,
/// under a lease grant that was replaced is refused, and nothing changes. `metadata`, `sessions` and
/// `leases` are one adapter's (they share a database).
pub async fn fenced_writes_suite(
    metadata: &dyn MetadataStore,
    sessions: &dyn UploadSessions,
    leases: &dyn crate::ports::Leases,
) {
    use crate::ports::leases::Acquired;
    resource(metadata, "s-fenced").await;
    let mut new = new_transfer("s-fenced", t0());
    new.recipients = vec![super::RECIPIENT.into()];
    let id = new.id;
    metadata.create_transfer(new, vec![], vec![]).await.unwrap();
    sessions.create(id, "", Some(100), t0()).await.unwrap();
    let grant = |acquired| match acquired {
        Acquired::Granted(g) => g.token,
        held => panic!("a free upload is granted: {held:?}"),
    };
    let stale = grant(leases.acquire(id, "", "node-a", 60_000).await.unwrap());
    assert!(
        sessions
            .advance(id, "", Advance::new(0, 10, t0()).fenced(stale))
            .await
            .unwrap(),
        "the holder moves the offset"
    );
    // The grant is released (or taken over after expiry) and a new holder moves on.
    leases.release(id, "", stale).await.unwrap();
    let fresh = grant(leases.acquire(id, "", "node-b", 60_000).await.unwrap());
    assert!(
        !sessions
            .advance(id, "", Advance::new(10, 40, t0()).fenced(stale))
            .await
            .unwrap(),
        "the replaced holder's offset advance is refused"
    );
    assert_eq!(
        sessions.get(id, "").await.unwrap().unwrap().offset,
        10,
        "and nothing moved"
    );
    assert!(sessions
        .advance(id, "", Advance::new(10, 20, t0()).fenced(fresh))
        .await
        .unwrap());
    assert_eq!(sessions.get(id, "").await.unwrap().unwrap().offset, 20);

    let version = metadata.load_transfer(id).await.unwrap().unwrap().version;
    let ending = |token| TransferChange {
        expected_version: version,
        ends_lease: Some(token),
        ..super::status_change(
            id,
            FileTransferStatus::Initialized,
            FileTransferStatus::UploadStarted,
        )
    };
    assert!(
        matches!(
            metadata.commit_change(ending(stale)).await,
            Err(crate::ports::StoreError::LeaseLost)
        ),
        "the replaced holder's transition is refused"
    );
    let record = metadata.load_transfer(id).await.unwrap().unwrap();
    assert_eq!(
        (record.version, record.state.phase.status()),
        (version, FileTransferStatus::Initialized),
        "and nothing changed"
    );
    assert!(leases.is_current(id, "", fresh).await.unwrap());
    metadata.commit_change(ending(fresh)).await.unwrap();
    assert!(
        !leases.is_current(id, "", fresh).await.unwrap(),
        "the holder's last transition ends its grant with it"
    );
    assert!(matches!(
        leases.acquire(id, "", "node-c", 60_000).await.unwrap(),
        Acquired::Granted(_)
    ));

    // An upload's first transition takes the lease with it, unless another grant is alive.
    let new = new_transfer("s-fenced", t0());
    let id = new.id;
    metadata.create_transfer(new, vec![], vec![]).await.unwrap();
    let other = grant(leases.acquire(id, "", "node-x", 60_000).await.unwrap());
    let beginning = TransferChange {
        id,
        expected_version: 0,
        ends_lease: None,
        begins_lease: Some(crate::ports::metadata::BeginLease {
            holder: "node-y".into(),
            ttl_ms: 60_000,
        }),
        ..ending(0)
    };
    assert!(
        matches!(
            metadata.commit_change(beginning.clone()).await,
            Err(crate::ports::StoreError::LeaseHeld)
        ),
        "a transition cannot take a lease another holder has"
    );
    assert_eq!(
        metadata.load_transfer(id).await.unwrap().unwrap().version,
        0,
        "and nothing changed"
    );
    leases.release(id, "", other).await.unwrap();
    let began = metadata
        .commit_change(beginning)
        .await
        .unwrap()
        .expect("the transition took the lease");
    assert!(began > other);
    assert!(leases.is_current(id, "", began).await.unwrap());
    assert!(matches!(
        leases.acquire(id, "", "node-x", 60_000).await.unwrap(),
        Acquired::Held { holder, .. } if holder == "node-y"
    ));
}

/// Runs every rule of the upload-sessions port against `sessions`, whose transfers live in `metadata`.
pub async fn upload_sessions_suite(metadata: &dyn MetadataStore, sessions: &dyn UploadSessions) {
    resource(metadata, "s").await;
    an_offset_moves_only_from_where_it_is(metadata, sessions).await;
    parts_are_admitted_up_to_their_count_and_total(metadata, sessions).await;
    terminating_the_upload_takes_its_parts_and_is_remembered(metadata, sessions).await;
    a_complete_unverified_upload_is_found_again(metadata, sessions).await;
    uploads_untouched_since_a_time_are_stale(metadata, sessions).await;
    the_last_activity_is_the_latest_touch_or_termination(metadata, sessions).await;
    the_hash_state_and_the_staged_tail_are_kept_with_the_offset_they_belong_to(metadata, sessions)
        .await;
}

async fn the_hash_state_and_the_staged_tail_are_kept_with_the_offset_they_belong_to(
    m: &dyn MetadataStore,
    s: &dyn UploadSessions,
) {
    let id = transfer(m).await;
    s.create(id, "", Some(30), t0()).await.unwrap();
    let row = |id: Uuid| async move { s.get(id, "").await.unwrap().unwrap() };
    let state = |id: Uuid| async move { row(id).await.hash_state };
    let at_10 = Advance::new(0, 10, t0())
        .hashed(Some(b"state at 10"))
        .staging(Some(b"0123456789"));
    assert!(s.advance(id, "", at_10).await.unwrap());
    assert_eq!(state(id).await.as_deref(), Some(&b"state at 10"[..]));
    assert_eq!(row(id).await.staged.as_deref(), Some(&b"0123456789"[..]));
    let refused = Advance::new(0, 20, t0())
        .hashed(Some(b"state at 20"))
        .staging(Some(b"x"));
    assert!(!s.advance(id, "", refused).await.unwrap());
    assert_eq!(
        state(id).await.as_deref(),
        Some(&b"state at 10"[..]),
        "a refused advance leaves the state with its offset"
    );
    assert_eq!(
        row(id).await.staged.as_deref(),
        Some(&b"0123456789"[..]),
        "and the staged tail"
    );
    assert!(s.advance(id, "", Advance::new(10, 20, t0())).await.unwrap());
    assert_eq!(
        state(id).await,
        None,
        "an advance without a state clears the old one (it no longer matches the offset)"
    );
    assert_eq!(
        row(id).await.staged,
        None,
        "an advance without a staged tail clears the old one"
    );
    let at_25 = Advance::new(20, 25, t0())
        .hashed(Some(b"state at 25"))
        .staging(Some(b"tail"));
    assert!(s.advance(id, "", at_25).await.unwrap());
    s.create(id, "", Some(30), t0()).await.unwrap();
    assert_eq!(
        state(id).await,
        None,
        "an upload created again starts with no state"
    );
    assert_eq!(row(id).await.staged, None, "and nothing staged");
    let at_5 = Advance::new(0, 5, t0()).staging(Some(b"abcde"));
    assert!(s.advance(id, "", at_5).await.unwrap());
    s.record_joined(id, 30, t0()).await.unwrap();
    assert_eq!(state(id).await, None, "nor does a joined one");
    assert_eq!(row(id).await.staged, None);
}

async fn the_last_activity_is_the_latest_touch_or_termination(
    m: &dyn MetadataStore,
    s: &dyn UploadSessions,
) {
    let id = transfer(m).await;
    assert_eq!(s.last_activity(id).await.unwrap(), None, "never touched");
    let t = |minutes| t0() + chrono::Duration::minutes(minutes);
    s.create(id, "", Some(10), t(1)).await.unwrap();
    assert_eq!(s.last_activity(id).await.unwrap(), Some(t(1)));
    s.create(id, "p", Some(10), t(2)).await.unwrap();
    assert!(s.advance(id, "", Advance::new(0, 5, t(3))).await.unwrap());
    assert_eq!(
        s.last_activity(id).await.unwrap(),
        Some(t(3)),
        "the latest of its uploads"
    );
    s.terminate(id, "", t(4)).await.unwrap();
    assert_eq!(
        s.last_activity(id).await.unwrap(),
        Some(t(4)),
        "a termination counts"
    );
}

async fn transfer(metadata: &dyn MetadataStore) -> Uuid {
    let new = new_transfer("s", t0());
    let id = new.id;
    metadata.create_transfer(new, vec![], vec![]).await.unwrap();
    id
}

async fn an_offset_moves_only_from_where_it_is(m: &dyn MetadataStore, s: &dyn UploadSessions) {
    let id = transfer(m).await;
    assert_eq!(s.get(id, "").await.unwrap(), None);
    s.create(id, "", None, t0()).await.unwrap();
    assert_eq!(
        s.get(id, "").await.unwrap(),
        Some(SessionRow {
            length: None,
            offset: 0,
            joined: false,
            hash_state: None,
            staged: None,
        })
    );
    assert!(s.advance(id, "", Advance::new(0, 10, t0())).await.unwrap());
    assert!(
        !s.advance(id, "", Advance::new(0, 20, t0())).await.unwrap(),
        "a stale offset does not move it"
    );
    assert!(s
        .advance(id, "", Advance::new(10, 20, t0()).declaring(Some(30)))
        .await
        .unwrap());
    assert!(s
        .advance(id, "", Advance::new(20, 25, t0()).declaring(Some(99)))
        .await
        .unwrap());
    assert_eq!(
        s.get(id, "").await.unwrap(),
        Some(SessionRow {
            length: Some(30),
            offset: 25,
            joined: false,
            hash_state: None,
            staged: None,
        }),
        "a deferred length is set once"
    );
    s.create(id, "", Some(5), t0()).await.unwrap();
    assert_eq!(
        s.get(id, "").await.unwrap().map(|r| (r.offset, r.length)),
        Some((0, Some(5))),
        "created again, it starts over"
    );
    s.remove(id, "").await.unwrap();
    assert_eq!(s.get(id, "").await.unwrap(), None);
}

async fn parts_are_admitted_up_to_their_count_and_total(
    m: &dyn MetadataStore,
    s: &dyn UploadSessions,
) {
    let id = transfer(m).await;
    assert_eq!(
        s.create_part(id, "a", 40, t0(), 3, 100).await.unwrap(),
        PartAdmission::Created
    );
    assert_eq!(
        s.create_part(id, "b", 70, t0(), 3, 100).await.unwrap(),
        PartAdmission::TooLarge
    );
    assert_eq!(
        s.create_part(id, "b", 60, t0(), 3, 100).await.unwrap(),
        PartAdmission::Created
    );
    assert_eq!(
        s.create_part(id, "c", 0, t0(), 3, 100).await.unwrap(),
        PartAdmission::Created
    );
    assert_eq!(
        s.create_part(id, "d", 0, t0(), 3, 100).await.unwrap(),
        PartAdmission::TooManyParts
    );
    assert_eq!(
        s.get(id, "a").await.unwrap(),
        Some(SessionRow {
            length: Some(40),
            offset: 0,
            joined: false,
            hash_state: None,
            staged: None,
        })
    );
    assert_eq!(
        s.get(id, "").await.unwrap(),
        None,
        "parts are not the transfer's own upload"
    );
    let other = transfer(m).await;
    assert_eq!(
        s.create_part(other, "a", 100, t0(), 3, 100).await.unwrap(),
        PartAdmission::Created,
        "limits count per transfer"
    );
}

async fn terminating_the_upload_takes_its_parts_and_is_remembered(
    m: &dyn MetadataStore,
    s: &dyn UploadSessions,
) {
    let id = transfer(m).await;
    assert!(!s.active_since(id, t0()).await.unwrap());
    s.create(id, "", Some(10), t0()).await.unwrap();
    s.create_part(id, "p", 5, t0(), 10, 100).await.unwrap();
    s.create_part(id, "q", 5, t0(), 10, 100).await.unwrap();
    assert!(s.active_since(id, t0()).await.unwrap());
    s.terminate(id, "p", t0()).await.unwrap();
    assert_eq!(s.get(id, "p").await.unwrap(), None);
    assert!(
        s.get(id, "q").await.unwrap().is_some(),
        "terminating a part leaves the others"
    );
    let at = t0() + Duration::minutes(5);
    s.terminate(id, "", at).await.unwrap();
    assert_eq!(s.get(id, "").await.unwrap(), None);
    assert_eq!(
        s.get(id, "q").await.unwrap(),
        None,
        "terminating the upload takes its parts"
    );
    assert!(
        s.active_since(id, at).await.unwrap(),
        "a termination counts as activity"
    );
    assert!(!s.active_since(id, at + Duration::seconds(1)).await.unwrap());
}

async fn a_complete_unverified_upload_is_found_again(
    m: &dyn MetadataStore,
    s: &dyn UploadSessions,
) {
    let id = transfer(m).await;
    let started = super::status_change(
        id,
        FileTransferStatus::Initialized,
        FileTransferStatus::UploadStarted,
    );
    super::commit_current(m, started).await.unwrap();
    s.create(id, "", Some(4), t0()).await.unwrap();
    assert!(
        !s.unverified().await.unwrap().contains(&id),
        "an incomplete upload is not"
    );
    assert!(s.advance(id, "", Advance::new(0, 4, t0())).await.unwrap());
    assert!(s.unverified().await.unwrap().contains(&id));
    let joined = transfer(m).await;
    s.record_joined(joined, 9, t0()).await.unwrap();
    assert_eq!(
        s.get(joined, "").await.unwrap(),
        Some(SessionRow {
            length: Some(9),
            offset: 9,
            joined: true,
            hash_state: None,
            staged: None,
        })
    );
    assert!(
        !s.unverified().await.unwrap().contains(&joined),
        "a transfer not UploadStarted or UploadProcessing is not"
    );
}

async fn uploads_untouched_since_a_time_are_stale(m: &dyn MetadataStore, s: &dyn UploadSessions) {
    let id = transfer(m).await;
    s.create(id, "", Some(10), t0()).await.unwrap();
    s.create_part(id, "p", 5, t0(), 10, 100).await.unwrap();
    let later = t0() + Duration::hours(1);
    assert!(s.advance(id, "", Advance::new(0, 1, later)).await.unwrap());
    let stale = s.stale(t0() + Duration::minutes(30)).await.unwrap();
    assert!(stale.contains(&(id, "p".to_string())));
    assert!(
        !stale.contains(&(id, String::new())),
        "touched since, it is not stale"
    );
}
