//! Micro-benchmarks of the hot internals (these may use internals; the load generator may not):
//! the MD5 + SHA-256 upload pipeline over `Bytes`, the Range parser, the transition function, and one
//! durable SQLite transition commit.
//!
//! `cargo bench -p broker-bench --bench micro`

use broker::db::sqlite::SqliteStore;
use broker::db::{NewTransfer, ResourceRow};
use broker_actors::ports::{MetadataStore, TransferChange};
use broker_actors::state::{transition, Command, Phase, StoredFile, TransferState};
use broker_actors::upload::{stream_into_blob, Discard};
use broker_protocol::range::ByteRange;
use broker_protocol::{FileTransferStatus, RecipientStatus};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn pipeline(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let chunk = Bytes::from(vec![0x5au8; 64 << 10]);
    let total: u64 = 64 << 20;
    let mut group = c.benchmark_group("upload_pipeline");
    group.throughput(Throughput::Bytes(total));
    group.sample_size(10);
    group.bench_function("md5_sha256_64MiB_in_64KiB_chunks", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let chunks =
                    (0..total / chunk.len() as u64).map(|_| Ok::<_, std::io::Error>(chunk.clone()));
                let file =
                    stream_into_blob(futures::stream::iter(chunks), Box::new(Discard(0)), None)
                        .await
                        .unwrap();
                black_box(file)
            })
        })
    });
    group.finish();
}

fn range_parser(c: &mut Criterion) {
    c.bench_function("range_parse_and_resolve", |b| {
        b.iter(|| {
            let r = ByteRange::parse(black_box("bytes=1048576-2097151")).unwrap();
            black_box(r.resolve(black_box(4 << 30)))
        })
    });
}

fn transition_function(c: &mut Criterion) {
    let state = TransferState {
        phase: Phase::Published(StoredFile {
            size: 1,
            md5: "a".into(),
            sha256: "b".into(),
        }),
        recipients: vec![
            ("0192:1".into(), RecipientStatus::DownloadStarted),
            ("0192:2".into(), RecipientStatus::DownloadConfirmed),
        ],
        declared_md5: None,
        use_virus_scan: false,
        purge_after_all_confirmed: true,
    };
    let command = Command::ConfirmDownload {
        recipient: "0192:1".into(),
    };
    c.bench_function("transition_confirm_last_recipient", |b| {
        b.iter(|| black_box(transition(black_box(&state), &command)))
    });
}

fn sqlite_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = runtime.block_on(async {
        let store = SqliteStore::open(&dir.path().join("bench.db"))
            .await
            .unwrap();
        let now = chrono::Utc::now();
        store
            .create_service_owner("0192:991825827", "bench", now)
            .await
            .unwrap();
        let resource = ResourceRow {
            id: "r".into(),
            service_owner_id: "0192:991825827".into(),
            ..Default::default()
        };
        store.save_resource(resource, now).await.unwrap();
        let id = uuid::Uuid::new_v4();
        let transfer = NewTransfer {
            id,
            resource_id: "r".into(),
            file_name: "f".into(),
            senders_reference: None,
            sender: "0192:111111111".into(),
            sender_org: "0192:111111111".into(),
            sender_vendor: None,
            recipients: vec!["0192:222222222".into()],
            property_list: Default::default(),
            declared_checksum: None,
            use_virus_scan: false,
            created: now,
            expiration_time: now + chrono::Duration::days(1),
            idempotency: None,
        };
        store
            .create_transfer(transfer, vec![], vec![])
            .await
            .unwrap();
        let change = |expected, version, status, file| TransferChange {
            new_status: Some((status, None)),
            stored_file: file,
            ..TransferChange::new(id, expected, version, chrono::Utc::now())
        };
        store
            .commit_change(change(
                FileTransferStatus::Initialized,
                0,
                FileTransferStatus::UploadStarted,
                None,
            ))
            .await
            .unwrap();
        let file = StoredFile {
            size: 1,
            md5: "a".into(),
            sha256: "b".into(),
        };
        store
            .commit_change(change(
                FileTransferStatus::UploadStarted,
                1,
                FileTransferStatus::Published,
                Some(file),
            ))
            .await
            .unwrap();
        (store, id)
    });
    let mut group = c.benchmark_group("sqlite");
    group.sample_size(20);
    // Each commit moves the version on; the next one is made from it.
    let mut version = 2;
    group.bench_function("durable_transition_commit", |b| {
        b.iter(|| {
            version += 1;
            runtime
                .block_on(store.commit_change(TransferChange {
                    recipient_rows: vec![(
                        "0192:222222222".into(),
                        RecipientStatus::DownloadStarted,
                    )],
                    ..TransferChange::new(
                        id,
                        FileTransferStatus::Published,
                        version - 1,
                        chrono::Utc::now(),
                    )
                }))
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    pipeline,
    range_parser,
    transition_function,
    sqlite_commit
);
criterion_main!(benches);
