//! What broker tests on the in-memory adapters share: a broker with one resource and its sender, and
//! the requests and waits they repeat.

use crate::memory::{ManualClock, MemoryBlobs, MemoryScanner, MemoryStore};
use crate::ports::metadata::ResourceRow;
use crate::ports::{MetadataStore, Registry};
use crate::tus::Patch;
use crate::{Broker, Caller, Ports, Settings};
use broker_protocol::transfer::FileTransferInitialize;
use broker_protocol::FileTransferStatus;
use bytes::Bytes;
use std::sync::Arc;
use uuid::Uuid;

pub(crate) const SENDER: &str = "0192:111111111";
pub(crate) const RECIPIENT: &str = "0192:222222222";

pub(crate) struct Setup {
    pub(crate) broker: Broker,
    pub(crate) store: Arc<MemoryStore>,
    pub(crate) blobs: MemoryBlobs,
    pub(crate) sender: Caller,
    /// The broker's clock: it moves only when a test moves it.
    pub(crate) clock: Arc<ManualClock>,
    /// The scanner, when the broker scans (see [`setup_scanned`]).
    pub(crate) scanner: Option<Arc<MemoryScanner>>,
    pub(crate) scan: crate::ScanSettings,
}

impl Setup {
    /// A new broker on the same stores: what a restart leaves (everything in memory is gone).
    pub(crate) fn restart(&self) -> Setup {
        Setup {
            broker: broker_on(
                self.store.clone(),
                &self.blobs,
                self.clock.clone(),
                self.scanner.clone(),
                self.scan.clone(),
            ),
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            sender: self.sender.clone(),
            clock: self.clock.clone(),
            scanner: self.scanner.clone(),
            scan: self.scan.clone(),
        }
    }

    /// The recipient as a caller.
    pub(crate) fn recipient(&self) -> Caller {
        Caller {
            org: Some(RECIPIENT.into()),
            ..Default::default()
        }
    }

    /// Initializes a transfer and uploads `content` in one binary upload: it is published.
    pub(crate) async fn publish(&self, content: &[u8]) -> Uuid {
        let id = self.initialize(None).await;
        let body = futures::stream::iter(vec![Ok::<_, String>(Bytes::copy_from_slice(content))]);
        self.broker
            .upload(&self.sender, id, Some(content.len() as u64), body)
            .await
            .unwrap();
        id
    }

    /// Creates the transfer's resumable upload at `declared` bytes and stores `stored` of them in one
    /// PATCH (the transfer is UploadStarted until the last byte).
    pub(crate) async fn upload_part_of(&self, id: Uuid, declared: usize, stored: &[u8]) {
        self.broker
            .tus_create::<futures::stream::Empty<Result<Bytes, String>>, String>(
                &self.sender,
                id,
                Some(declared as u64),
                None,
            )
            .await
            .unwrap();
        let offset = self
            .broker
            .tus_patch(&self.sender, id, None, 0, patch(stored))
            .await
            .unwrap();
        assert_eq!(offset, stored.len() as u64);
    }

    /// Creates one partial upload per piece, in order; their ids.
    pub(crate) async fn create_parts(&self, id: Uuid, pieces: &[&[u8]]) -> Vec<String> {
        let mut parts = Vec::new();
        for piece in pieces {
            let length = Some(piece.len() as u64);
            parts.push(
                self.broker
                    .tus_create_part(&self.sender, id, length)
                    .await
                    .unwrap(),
            );
        }
        parts
    }

    /// Sends each piece to its part in one PATCH of 64 KiB chunks, in the order given.
    pub(crate) async fn send_parts<'a>(
        &self,
        id: Uuid,
        sends: impl IntoIterator<Item = (&'a String, &'a [u8])>,
    ) {
        for (part, piece) in sends {
            let offset = self
                .broker
                .tus_patch(&self.sender, id, Some(part), 0, chunked(piece))
                .await
                .unwrap();
            assert_eq!(offset, piece.len() as u64);
        }
    }

    /// The final POST joining `parts` in this order; the joined length.
    pub(crate) async fn join_parts(&self, id: Uuid, parts: &[String]) -> u64 {
        let urls: Vec<String> = parts
            .iter()
            .map(|p| format!("/broker/api/v1/filetransfer/upload/tus/{id}/partial/{p}"))
            .collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        self.broker
            .tus_finish(&self.sender, id, &urls)
            .await
            .unwrap()
    }

    /// Initializes a transfer from the sender, declaring `md5` if given.
    pub(crate) async fn initialize(&self, md5: Option<String>) -> Uuid {
        self.broker
            .initialize(&self.sender, request(md5), None)
            .await
            .unwrap()
    }
}

/// An initialize request from [`SENDER`] on `r`, declaring `md5` if given.
pub(crate) fn request(md5: Option<String>) -> FileTransferInitialize {
    FileTransferInitialize {
        file_name: Some("f".into()),
        resource_id: Some("r".into()),
        senders_file_transfer_reference: Some("ref".into()),
        sender: Some(SENDER.into()),
        recipients: Some(vec![RECIPIENT.into()]),
        checksum: md5,
        ..Default::default()
    }
}

fn broker_on(
    store: Arc<MemoryStore>,
    blobs: &MemoryBlobs,
    clock: Arc<ManualClock>,
    scanner: Option<Arc<MemoryScanner>>,
    scan: crate::ScanSettings,
) -> Broker {
    let ports = Ports {
        metadata: store.clone(),
        sessions: store.clone(),
        outbox: store.clone(),
        blobs: Arc::new(blobs.clone()),
        clock,
        registry: Arc::new(Registry::Open),
        jobs: store.jobs(),
        scanner: scanner.map(|s| s as Arc<dyn crate::ports::Scanner>),
        subscriptions: store.clone(),
        webhooks: Arc::new(crate::memory::MemoryWebhooks::default()),
        statistics: store.clone(),
        notifier: Arc::new(crate::memory::MemoryNotifier::default()),
        leases: store.clone(),
        signals: Arc::new(crate::local_signals::LocalSignals::default()),
    };
    let settings = Settings {
        event_source: "test".into(),
        scan,
        ..crate::conformance::suite_settings()
    };
    Broker::new(ports, settings, Default::default())
}

/// A broker on fresh in-memory adapters with the resource `r` of [`SENDER`] (files of at most
/// `max_file_size` bytes, if given).
pub(crate) async fn setup_limited(max_file_size: Option<i64>) -> Setup {
    setup_resource(|r| r.max_file_transfer_size = max_file_size).await
}

/// A broker on fresh in-memory adapters with the resource `r` of [`SENDER`] as `configure` leaves it.
pub(crate) async fn setup_resource(configure: impl FnOnce(&mut ResourceRow)) -> Setup {
    setup_with(configure, None, Default::default()).await
}

/// A broker whose blob store keeps an object store's rules (scaled down: parts of at least 64 KiB
/// but the last, at most 10,000 per object, nothing read before it is completed), on a resource of
/// files up to 64 MiB.
pub(crate) async fn setup_on_an_object_store() -> Setup {
    setup_on(
        |r| r.max_file_transfer_size = Some(64 << 20),
        None,
        Default::default(),
        MemoryBlobs::strict(64 << 10, 10_000),
    )
    .await
}

/// A broker that scans every upload with an in-memory scanner, windows as `scan` says.
pub(crate) async fn setup_scanned(scan: crate::ScanSettings) -> Setup {
    setup_with(|_| {}, Some(Arc::default()), scan).await
}

async fn setup_with(
    configure: impl FnOnce(&mut ResourceRow),
    scanner: Option<Arc<MemoryScanner>>,
    scan: crate::ScanSettings,
) -> Setup {
    setup_on(configure, scanner, scan, MemoryBlobs::default()).await
}

async fn setup_on(
    configure: impl FnOnce(&mut ResourceRow),
    scanner: Option<Arc<MemoryScanner>>,
    scan: crate::ScanSettings,
    blobs: MemoryBlobs,
) -> Setup {
    let store = Arc::new(MemoryStore::default());
    let now = chrono::Utc::now();
    store
        .create_service_owner(SENDER, "owner", now)
        .await
        .unwrap();
    let mut resource = ResourceRow {
        id: "r".into(),
        service_owner_id: SENDER.into(),
        ..Default::default()
    };
    configure(&mut resource);
    store.save_resource(resource, now).await.unwrap();
    let clock = Arc::new(ManualClock::new(now));
    // The store keeps time by the same clock (lease expiry, the range-download window), as a
    // database shares its own clock with every node.
    store.use_clock(clock.clone());
    let broker = broker_on(
        store.clone(),
        &blobs,
        clock.clone(),
        scanner.clone(),
        scan.clone(),
    );
    let sender = Caller {
        org: Some(SENDER.into()),
        ..Default::default()
    };
    Setup {
        broker,
        store,
        blobs,
        sender,
        clock,
        scanner,
        scan,
    }
}

pub(crate) async fn setup() -> Setup {
    setup_limited(None).await
}

pub(crate) fn patch(
    bytes: &[u8],
) -> Patch<futures::stream::Iter<std::vec::IntoIter<Result<Bytes, String>>>> {
    Patch {
        body: futures::stream::iter(vec![Ok(Bytes::copy_from_slice(bytes))]),
        new_length: None,
        len: Some(bytes.len() as u64),
        checksum: None,
    }
}

/// A body of `bytes` in chunks of 64 KiB, as a socket delivers it.
pub(crate) fn chunked(
    bytes: &[u8],
) -> Patch<futures::stream::Iter<std::vec::IntoIter<Result<Bytes, String>>>> {
    let chunks: Vec<_> = bytes
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Patch {
        body: futures::stream::iter(chunks),
        new_length: None,
        len: Some(bytes.len() as u64),
        checksum: None,
    }
}

pub(crate) async fn published(s: &Setup, id: Uuid) -> crate::ports::metadata::TransferView {
    for _ in 0..200 {
        let view = s.store.transfer(id).await.unwrap().unwrap();
        if view.status == FileTransferStatus::Published {
            return view;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("not published");
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    crate::upload::hex(bytes)
}
