//! Two brokers on one store: what several nodes must agree on, checked with two `Broker`s built on
//! the same adapters (the in-memory ones here, SQLite and the local disk in the server's tests).

use super::{resource, OWNER};
use crate::ports::metadata::TransferView;
use crate::supervisor::CommitGate;
use crate::tus::Patch;
use crate::{Broker, Caller, Ports, Settings};
use broker_protocol::transfer::FileTransferInitialize;
use broker_protocol::FileTransferStatus;
use bytes::Bytes;
use futures::FutureExt;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;
use uuid::Uuid;

const RESOURCE: &str = "nodes";
const FIRST: &str = "0192:222222222";
const SECOND: &str = "0192:333333333";

/// Settings for a broker in a suite: small caps, no scanning.
pub fn suite_settings() -> Settings {
    Settings {
        production: false,
        max_recipients: 10,
        max_tus_parts: 10,
        tus_upload_expiry: chrono::Duration::hours(1),
        reserve_bytes: 0,
        max_concurrent_uploads: 8,
        event_source: "nodes".into(),
        tus_sweep_interval: chrono::Duration::minutes(1),
        scan: Default::default(),
        deliveries: Default::default(),
    }
}

/// Runs every two-node rule on `ports` (fresh adapters), with a broker `a` and a broker `b` on them.
pub async fn two_brokers_suite(ports: Ports) {
    resource(&*ports.metadata, RESOURCE).await;
    let a = Broker::new(ports.clone(), suite_settings(), Default::default());
    let b = Broker::new(ports.clone(), suite_settings(), Default::default());
    let held = HeldCommit::install(&a);
    confirmations_on_two_nodes_end_all_confirmed_when_the_later_commit_decided_first(&a, &b, &held)
        .await;
    confirmations_on_two_nodes_at_once_end_all_confirmed(&a, &b, 50).await;
    a_request_on_b_stops_a_patch_running_on_a_and_goes_on_from_its_durable_offset(&a, &b).await;
    b_takes_over_the_expired_lease_of_a_frozen_node_whose_late_writes_are_refused(&ports, &b).await;
    a_verification_claimed_on_a_is_not_started_again_on_b(&a, &b).await;
    a_scan_running_on_a_is_seen_running_from_b(&a, &b).await;
    ranges_of_one_recipient_on_a_and_b_are_recorded_once_per_window(&a, &b).await;
}

async fn ranges_of_one_recipient_on_a_and_b_are_recorded_once_per_window(a: &Broker, b: &Broker) {
    use broker_protocol::RecipientStatus;
    let id = published(a).await;
    let started_rows = || async {
        let rows = a
            .ports()
            .metadata
            .recipient_history(id, 0, 1000)
            .await
            .unwrap();
        rows.iter()
            .filter(|(_, r)| r.recipient == FIRST)
            .filter(|(_, r)| {
                r.recipient_file_transfer_status_code == RecipientStatus::DownloadStarted
            })
            .count()
    };
    let before = started_rows().await;
    for (node, start) in [(a, 0), (b, 4), (a, 8), (b, 12)] {
        let download = node.open_download(&caller(FIRST), id).await.unwrap();
        node.read_download(&download, start, 4, true, true)
            .await
            .unwrap();
    }
    assert_eq!(
        started_rows().await,
        before + 1,
        "four ranges on two nodes within the window record one DownloadStarted"
    );
}

async fn a_scan_running_on_a_is_seen_running_from_b(a: &Broker, b: &Broker) {
    let id = initialized(a).await;
    assert!(!b.is_scanning(id).await);
    let claim = a
        .lifecycle()
        .lease_desk()
        .try_acquire(id, crate::scan::SCAN_CLAIM)
        .await
        .unwrap()
        .expect("nobody scans the transfer yet");
    assert!(
        b.is_scanning(id).await,
        "B's stuck check sees A's scan running"
    );
    claim.release().await;
    assert!(!b.is_scanning(id).await);
}

async fn a_verification_claimed_on_a_is_not_started_again_on_b(a: &Broker, b: &Broker) {
    use crate::tus::VERIFICATION_CLAIM;
    let id = initialized(a).await;
    // A check running on A holds the transfer's verification claim.
    let claim = a
        .lifecycle()
        .lease_desk()
        .try_acquire(id, VERIFICATION_CLAIM)
        .await
        .unwrap()
        .expect("nobody verifies the transfer yet");
    assert!(b.is_verifying(id).await, "B sees A's check running");
    assert!(
        !b.start_verification(id, None).await,
        "B does not start a second check while A's runs"
    );
    claim.release().await;
    assert!(!b.is_verifying(id).await);
    assert!(
        b.start_verification(id, None).await,
        "once A let go, B may check it (as after a crash of A)"
    );
}

/// Stops broker A's next commit for one transfer until the test lets it go.
#[derive(Clone, Default)]
struct HeldCommit(Arc<Mutex<Option<Hold>>>);

struct Hold {
    id: Uuid,
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

impl HeldCommit {
    fn install(broker: &Broker) -> HeldCommit {
        let held = HeldCommit::default();
        let slot = held.0.clone();
        let gate: CommitGate = Arc::new(move |id| {
            let hold = {
                let mut slot = slot.lock().expect("held commit");
                slot.take_if(|h| h.id == id)
            };
            async move {
                if let Some(hold) = hold {
                    let _ = hold.reached.send(());
                    let _ = hold.release.await;
                }
            }
            .boxed()
        });
        broker.gate_commits(gate);
        held
    }

    /// Holds the next commit for `id`: the first receiver answers once it is reached, and the commit
    /// goes on when the sender is used (or dropped).
    fn hold(&self, id: Uuid) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached, reached_rx) = oneshot::channel();
        let (release_tx, release) = oneshot::channel();
        *self.0.lock().expect("held commit") = Some(Hold {
            id,
            reached,
            release,
        });
        (reached_rx, release_tx)
    }
}

fn caller(org: &str) -> Caller {
    Caller {
        org: Some(org.into()),
        ..Default::default()
    }
}

/// A transfer to [`FIRST`] and [`SECOND`], uploaded and published through `broker`, and downloaded by
/// both (so both may confirm).
async fn published(broker: &Broker) -> Uuid {
    let request = FileTransferInitialize {
        file_name: Some("two-nodes.txt".into()),
        resource_id: Some(RESOURCE.into()),
        sender: Some(OWNER.into()),
        recipients: Some(vec![FIRST.into(), SECOND.into()]),
        ..Default::default()
    };
    let sender = caller(OWNER);
    let id = broker.initialize(&sender, request, None).await.unwrap();
    let content = Bytes::from_static(b"one file, two recipients");
    let body = futures::stream::iter([Ok::<_, String>(content.clone())]);
    broker
        .upload(&sender, id, Some(content.len() as u64), body)
        .await
        .unwrap();
    assert_eq!(view(broker, id).await.status, FileTransferStatus::Published);
    for recipient in [FIRST, SECOND] {
        let download = broker.open_download(&caller(recipient), id).await.unwrap();
        let size = content.len() as u64;
        broker
            .read_download(&download, 0, size, false, true)
            .await
            .unwrap();
    }
    id
}

async fn view(broker: &Broker, id: Uuid) -> TransferView {
    broker
        .ports()
        .metadata
        .transfer(id)
        .await
        .unwrap()
        .expect("the transfer exists")
}

/// How many events of each kind (the type's last word) the transfer has in the outbox.
async fn count_events(broker: &Broker, id: Uuid, kind: &str) -> usize {
    let events = broker.events_after(0, 100_000).await.unwrap();
    events
        .iter()
        .filter(|e| e.event.resourceinstance == id.to_string())
        .filter(|e| e.event.type_.rsplit('.').next() == Some(kind))
        .count()
}

async fn assert_all_confirmed(broker: &Broker, id: Uuid, case: &str) {
    let view = view(broker, id).await;
    assert_eq!(
        view.status,
        FileTransferStatus::AllConfirmedDownloaded,
        "{case}: both recipients confirmed, so the transfer is AllConfirmedDownloaded"
    );
    assert_eq!(
        count_events(broker, id, "downloadconfirmed").await,
        4,
        "{case}: two downloadconfirmed events (to the recipient, to the sender) per recipient"
    );
    assert_eq!(
        count_events(broker, id, "allconfirmeddownloaded").await,
        1,
        "{case}: one allconfirmeddownloaded event"
    );
}

/// A decides its confirmation, B confirms the other recipient and commits, then A commits: A's change
/// was made from a version that is gone, so A decides again and sees both recipients confirmed.
async fn confirmations_on_two_nodes_end_all_confirmed_when_the_later_commit_decided_first(
    a: &Broker,
    b: &Broker,
    held: &HeldCommit,
) {
    let id = published(a).await;
    let (reached, release) = held.hold(id);
    let mut on_a = {
        let a = a.clone();
        tokio::spawn(async move { a.confirm_download(&caller(FIRST), id).await })
    };
    tokio::select! {
        reached = reached => reached.expect("A reaches its commit"),
        refused = &mut on_a => panic!("A's confirmation ended before its commit: {refused:?}"),
    }
    b.confirm_download(&caller(SECOND), id).await.unwrap();
    assert_eq!(
        view(b, id).await.status,
        FileTransferStatus::Published,
        "one confirmation of two leaves the transfer Published"
    );
    release.send(()).unwrap();
    on_a.await.unwrap().expect("A's confirmation succeeds");
    assert_all_confirmed(a, id, "ordered commits").await;
}

/// Two confirmations sent to A and B at the same moment, `runs` times.
async fn confirmations_on_two_nodes_at_once_end_all_confirmed(a: &Broker, b: &Broker, runs: usize) {
    for run in 0..runs {
        let id = published(if run % 2 == 0 { a } else { b }).await;
        let first = {
            let a = a.clone();
            tokio::spawn(async move { a.confirm_download(&caller(FIRST), id).await })
        };
        let second = {
            let b = b.clone();
            tokio::spawn(async move { b.confirm_download(&caller(SECOND), id).await })
        };
        first.await.unwrap().expect("A's confirmation succeeds");
        second.await.unwrap().expect("B's confirmation succeeds");
        assert_all_confirmed(a, id, &format!("run {run}")).await;
    }
}

/// A PATCH body that hands over `first`, then says so on `consumed` and stalls (a half-dead client).
fn stalling_body(
    first: Bytes,
    consumed: oneshot::Sender<()>,
) -> Patch<futures::stream::BoxStream<'static, Result<Bytes, String>>> {
    use futures::StreamExt;
    let stall = futures::stream::once(async move {
        let _ = consumed.send(());
        futures::future::pending::<Result<Bytes, String>>().await
    });
    Patch {
        body: futures::stream::iter([Ok(first)]).chain(stall).boxed(),
        new_length: None,
        len: None,
        checksum: None,
    }
}

fn whole_body(
    bytes: Bytes,
) -> Patch<futures::stream::Iter<std::vec::IntoIter<Result<Bytes, String>>>> {
    Patch {
        len: Some(bytes.len() as u64),
        body: futures::stream::iter(vec![Ok(bytes)]),
        new_length: None,
        checksum: None,
    }
}

async fn initialized(broker: &Broker) -> Uuid {
    let request = FileTransferInitialize {
        file_name: Some("resumed.bin".into()),
        resource_id: Some(RESOURCE.into()),
        sender: Some(OWNER.into()),
        recipients: Some(vec![FIRST.into()]),
        ..Default::default()
    };
    broker
        .initialize(&caller(OWNER), request, None)
        .await
        .unwrap()
}

/// A new transfer with its resumable upload of `length` bytes created on `broker`.
async fn resumable(broker: &Broker, length: usize) -> Uuid {
    let id = initialized(broker).await;
    broker
        .tus_create::<futures::stream::Empty<Result<Bytes, String>>, String>(
            &caller(OWNER),
            id,
            Some(length as u64),
            None,
        )
        .await
        .unwrap();
    id
}

/// `len` bytes counting up modulo `modulus`.
fn cycling(len: u32, modulus: u32) -> Bytes {
    (0..len)
        .map(|i| (i % modulus) as u8)
        .collect::<Vec<u8>>()
        .into()
}

async fn downloaded(broker: &Broker, id: Uuid) -> Vec<u8> {
    use futures::TryStreamExt;
    let download = broker.open_download(&caller(FIRST), id).await.unwrap();
    let stream = broker
        .read_download(&download, 0, download.size, false, true)
        .await
        .unwrap()
        .expect("a non-empty file streams");
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    chunks.concat()
}

/// A node that froze mid-PATCH (its lease ran out, never renewed) stands for A: it acknowledged its
/// first bytes under its grant. B takes the upload over and goes on; when A wakes up, the part it
/// writes and its advance under the old grant are refused or ignored, and the file holds none of its
/// late bytes.
async fn b_takes_over_the_expired_lease_of_a_frozen_node_whose_late_writes_are_refused(
    ports: &Ports,
    b: &Broker,
) {
    use crate::ports::leases::Acquired;
    use crate::ports::upload_sessions::Advance;
    use crate::ports::ObjectKey;
    let content = cycling(300_000, 241);
    let sender = caller(OWNER);
    let id = resumable(b, content.len()).await;
    let Acquired::Granted(frozen) = ports
        .leases
        .acquire(id, "", "frozen-node", 200)
        .await
        .unwrap()
    else {
        panic!("nobody holds the new upload");
    };
    let file = &ObjectKey::file(id);
    let write = |from: usize, bytes: Bytes, token: u64| async move {
        let mut writer = ports.blobs.write_parts(file, from as u64, token).await?;
        writer.append(Arc::new(vec![bytes])).await?;
        writer.commit().await
    };
    write(0, content.slice(..100_000), frozen.token)
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let acknowledged = Advance::new(0, 100_000, now).fenced(frozen.token);
    assert!(ports.sessions.advance(id, "", acknowledged).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;

    let state = b.tus_head(&sender, id, None).await.unwrap();
    assert_eq!(state.offset, 100_000, "B sees what A acknowledged");
    let middle = whole_body(content.slice(100_000..200_000));
    let end = b
        .tus_patch(&sender, id, None, 100_000, middle)
        .await
        .unwrap();
    assert_eq!(end, 200_000, "B took the expired lease over");

    // A wakes up and stores what it had received next, then tries to acknowledge it.
    let garbage = Bytes::from(vec![0xEE; 100_000]);
    let _ = write(200_000, garbage, frozen.token).await;
    let late = Advance::new(200_000, 300_000, now).fenced(frozen.token);
    assert!(
        !ports.sessions.advance(id, "", late).await.unwrap(),
        "A's advance under its replaced grant is refused"
    );
    let row = ports.sessions.get(id, "").await.unwrap().unwrap();
    assert_eq!(row.offset, 200_000, "and changes nothing");

    let rest = whole_body(content.slice(200_000..));
    let end = b.tus_patch(&sender, id, None, 200_000, rest).await.unwrap();
    assert_eq!(end, content.len() as u64);
    assert_eq!(view(b, id).await.status, FileTransferStatus::Published);
    assert!(
        downloaded(b, id).await == content,
        "the file holds A's acknowledged bytes and B's, none of A's late ones"
    );
}

/// A PATCH on A stalls after its first bytes. A HEAD on B stops it and reports the bytes A made
/// durable; B's PATCH goes on from there. For a second transfer B's PATCH itself stops A's.
async fn a_request_on_b_stops_a_patch_running_on_a_and_goes_on_from_its_durable_offset(
    a: &Broker,
    b: &Broker,
) {
    let content = cycling(300_000, 251);
    let split = 100_000;
    let sender = caller(OWNER);
    for head_first in [true, false] {
        let id = resumable(a, content.len()).await;
        let (consumed, handed) = oneshot::channel();
        let on_a = {
            let (a, sender) = (a.clone(), sender.clone());
            let body = stalling_body(content.slice(..split), consumed);
            tokio::spawn(async move { a.tus_patch(&sender, id, None, 0, body).await })
        };
        handed.await.expect("A's PATCH reads its first bytes");
        let from = if head_first {
            let state = b.tus_head(&sender, id, None).await.unwrap();
            assert_eq!(
                state.offset, split as u64,
                "the HEAD on B waits for A's PATCH to stop and reports what it made durable"
            );
            state.offset
        } else {
            split as u64
        };
        let rest = whole_body(content.slice(from as usize..));
        let end = b.tus_patch(&sender, id, None, from, rest).await.unwrap();
        assert_eq!(end, content.len() as u64);
        assert_eq!(
            on_a.await
                .unwrap()
                .expect("A's PATCH ends with what it stored"),
            split as u64
        );
        let published = view(b, id).await;
        assert_eq!(published.status, FileTransferStatus::Published);
        assert_eq!(
            downloaded(a, id).await,
            content,
            "the file is A's bytes then B's"
        );
    }
}
