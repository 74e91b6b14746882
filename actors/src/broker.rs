//! The application: every command and query the transports may call, over the ports. A transport
//! decodes a request, calls one method here, and encodes what it returns; it never reaches a port.

use crate::ports::{
    BlobStore, Clock, Jobs, Leases, MetadataStore, Notifier, Outbox, Registry, Scanner, Signals,
    Statistics, Subscriptions, UploadSessions, WebhookSender,
};
use crate::supervisor::Lifecycle;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The adapters the application runs on.
#[derive(Clone)]
pub struct Ports {
    pub metadata: Arc<dyn MetadataStore>,
    pub sessions: Arc<dyn UploadSessions>,
    pub outbox: Arc<dyn Outbox>,
    pub blobs: Arc<dyn BlobStore>,
    pub clock: Arc<dyn Clock>,
    pub registry: Arc<Registry>,
    /// Durable jobs (purges, checks); the metadata store schedules them with its transitions, so the
    /// two must share one database.
    pub jobs: Arc<dyn Jobs>,
    /// The malware scanner; `None` when scanning is off (every transfer then says `useVirusScan: false`).
    pub scanner: Option<Arc<dyn Scanner>>,
    /// Event subscriptions (their deliveries are the outbox's).
    pub subscriptions: Arc<dyn Subscriptions>,
    /// Sends webhook deliveries.
    pub webhooks: Arc<dyn WebhookSender>,
    /// The statistics rollup and reports (kept by the metadata store's database).
    pub statistics: Arc<dyn Statistics>,
    /// Sends e-mail and SMS to contact points (their deliveries are the outbox's).
    pub notifier: Arc<dyn Notifier>,
    /// Who may write each upload now (kept by the metadata store's database).
    pub leases: Arc<dyn Leases>,
    /// Wake-ups between requests and nodes.
    pub signals: Arc<dyn Signals>,
}

/// What the operator configured that the lifecycle needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Production refuses transfers without a virus scan unless the resource is approved for it.
    pub production: bool,
    pub max_recipients: usize,
    pub max_tus_parts: usize,
    /// A resumable upload untouched this long expires (sliding).
    pub tus_upload_expiry: chrono::Duration,
    /// Free space kept back from uploads.
    pub reserve_bytes: u64,
    /// Uploads streaming at once (each holds a few threads and MiB).
    pub max_concurrent_uploads: usize,
    /// The CloudEvent `source` of this deployment.
    pub event_source: String,
    /// How often expired resumable uploads are swept (a durable job: one node runs each sweep).
    pub tus_sweep_interval: chrono::Duration,
    pub scan: crate::scan::ScanSettings,
    pub deliveries: crate::fanout::DeliverySettings,
}

/// The entry point of the application. Cheap to clone.
#[derive(Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) ports: Ports,
    pub(crate) settings: Settings,
    pub(crate) lifecycle: Lifecycle,
    /// Bounds how many uploads stream at once: per node by design (each node bounds its own threads
    /// and memory; which upload may write is the store's lease).
    pub(crate) upload_permits: tokio::sync::Semaphore,
    /// Cancelled when the server starts shutting down: streaming uploads stop and stay retryable.
    pub(crate) shutdown: CancellationToken,
    /// What resumable uploads keep between and during requests.
    pub(crate) tus: crate::tus::TusState,
    /// This process's name as the claimer of jobs.
    pub(crate) node: String,
    /// Transfers found stuck in UploadProcessing, counted for metrics.
    pub(crate) stuck_alerts: std::sync::atomic::AtomicU64,
    /// Scans running or waiting for a permit.
    pub(crate) scans: crate::scan::ScanRunner,
    /// Delivery attempts in flight on this node, in all and per destination host.
    pub(crate) delivery_budget: crate::fanout::DeliveryBudget,
}

impl Broker {
    pub fn new(ports: Ports, settings: Settings, shutdown: CancellationToken) -> Broker {
        let node = format!("node-{}", uuid::Uuid::new_v4());
        let desk = crate::upload_leases::LeaseDesk::new(
            ports.leases.clone(),
            ports.signals.clone(),
            node.clone(),
            crate::upload_leases::LEASE_TTL,
        );
        let lifecycle = Lifecycle::new(
            ports.metadata.clone(),
            ports.blobs.clone(),
            ports.clock.clone(),
            settings.event_source.clone(),
            desk,
            ports.signals.clone(),
        );
        Broker {
            inner: Arc::new(Inner {
                upload_permits: tokio::sync::Semaphore::new(settings.max_concurrent_uploads),
                scans: crate::scan::ScanRunner::new(settings.scan.max_concurrent),
                delivery_budget: crate::fanout::DeliveryBudget::new(
                    settings.deliveries.max_in_flight,
                    settings.deliveries.per_host,
                ),
                tus: Default::default(),
                ports,
                settings,
                lifecycle,
                shutdown,
                node,
                stuck_alerts: Default::default(),
            }),
        }
    }

    pub(crate) fn ports(&self) -> &Ports {
        &self.inner.ports
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub(crate) fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    pub(crate) fn now(&self) -> broker_protocol::time::Timestamp {
        self.inner.ports.clock.now()
    }

    /// How many transfer supervisors are alive (for tests and metrics).
    pub fn live_supervisors(&self) -> usize {
        self.inner.lifecycle.live_supervisors()
    }

    /// Makes each of this broker's commits wait for `gate` first (tests order two brokers' commits).
    #[cfg(any(test, feature = "testing"))]
    pub fn gate_commits(&self, gate: crate::supervisor::CommitGate) {
        self.inner.lifecycle.gate_commits(gate);
    }

    pub(crate) fn tus(&self) -> &crate::tus::TusState {
        &self.inner.tus
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }
}
