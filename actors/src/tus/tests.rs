//! Resumable uploads through the broker on the in-memory adapters.

use super::Patch;
use crate::memory::{MemoryBlobs, MemoryStore};
use crate::ports::metadata::ResourceRow;
use crate::ports::{MetadataStore, Registry};
use crate::{Broker, Caller, Ports, Settings};
use broker_protocol::transfer::FileTransferInitialize;
use broker_protocol::FileTransferStatus;
use bytes::Bytes;
use sha2::Digest;
use std::sync::Arc;
use uuid::Uuid;

const SENDER: &str = "0192:111111111";

struct Setup {
    broker: Broker,
    store: Arc<MemoryStore>,
    blobs: MemoryBlobs,
    sender: Caller,
}

async fn setup() -> Setup {
    let store = Arc::new(MemoryStore::default());
    let blobs = MemoryBlobs::default();
    let now = chrono::Utc::now();
    store
        .create_service_owner(SENDER, "owner", now)
        .await
        .unwrap();
    let resource = ResourceRow {
        id: "r".into(),
        service_owner_id: SENDER.into(),
        ..Default::default()
    };
    store.save_resource(resource, now).await.unwrap();
    let ports = Ports {
        metadata: store.clone(),
        sessions: store.clone(),
        outbox: store.clone(),
        blobs: Arc::new(blobs.clone()),
        clock: Arc::new(crate::SystemClock),
        registry: Arc::new(Registry::Open),
    };
    let settings = Settings {
        production: false,
        max_recipients: 10,
        max_tus_parts: 10,
        tus_upload_expiry: chrono::Duration::hours(1),
        reserve_bytes: 0,
        max_concurrent_uploads: 8,
        event_source: "test".into(),
    };
    let broker = Broker::new(ports, settings, Default::default());
    let sender = Caller {
        org: Some(SENDER.into()),
        ..Default::default()
    };
    Setup {
        broker,
        store,
        blobs,
        sender,
    }
}

fn patch(bytes: &[u8]) -> Patch<futures::stream::Iter<std::vec::IntoIter<Result<Bytes, String>>>> {
    Patch {
        body: futures::stream::iter(vec![Ok(Bytes::copy_from_slice(bytes))]),
        new_length: None,
        len: Some(bytes.len() as u64),
        checksum: None,
    }
}

async fn published(s: &Setup, id: Uuid) -> crate::ports::metadata::TransferView {
    for _ in 0..200 {
        let view = s.store.transfer(id).await.unwrap().unwrap();
        if view.status == FileTransferStatus::Published {
            return view;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("not published");
}

fn hex(bytes: &[u8]) -> String {
    crate::upload::hex(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_hashed_while_they_stream_are_not_read_back_after_the_final() {
    let s = setup().await;
    let request = FileTransferInitialize {
        file_name: Some("f".into()),
        resource_id: Some("r".into()),
        senders_file_transfer_reference: Some("ref".into()),
        sender: Some(SENDER.into()),
        recipients: Some(vec!["0192:222222222".into()]),
        ..Default::default()
    };
    let id = s.broker.initialize(&s.sender, request, None).await.unwrap();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let pieces: Vec<&[u8]> = content.chunks(100_000).collect();
    let mut parts = Vec::new();
    for piece in &pieces {
        let part = s
            .broker
            .tus_create_part(&s.sender, id, Some(piece.len() as u64))
            .await
            .unwrap();
        parts.push(part);
    }
    // The last part first: it waits, hashed once the parts before it are.
    for (part, piece) in parts.iter().zip(&pieces).rev() {
        let offset = s
            .broker
            .tus_patch(&s.sender, id, Some(part), 0, patch(piece))
            .await
            .unwrap();
        assert_eq!(offset, piece.len() as u64);
    }
    let urls: Vec<String> = parts
        .iter()
        .map(|p| format!("/broker/api/v1/filetransfer/upload/tus/{id}/partial/{p}"))
        .collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    assert_eq!(
        s.broker.tus_finish(&s.sender, id, &urls).await.unwrap(),
        content.len() as u64
    );
    let view = published(&s, id).await;
    assert_eq!(
        view.sha256.as_deref(),
        Some(hex(&sha2::Sha256::digest(&content)).as_str())
    );
    assert_eq!(
        view.checksum.as_deref(),
        Some(hex(&md5::Md5::digest(&content)).as_str())
    );
    assert_eq!(
        s.blobs.file_reads(),
        0,
        "the joined file was not read back to hash it"
    );
}
