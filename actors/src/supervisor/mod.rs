//! Per-transfer supervisors: one task per transfer with work in flight, owning that transfer's state
//! machine. Every command for a transfer goes through its supervisor, so writes are serialized; the
//! DB stays the source of truth (each commit is also conditional on the expected status).
//!
//! A supervisor is spawned on demand, loads its transfer from the store, and stops as soon as it has
//! nothing left to do (no queued message, no upload streaming). A restart therefore spawns nothing.

use crate::error::Error;
use crate::ports::jobs::{JobKey, JobKind};
use crate::ports::metadata::{Created, NewTransfer};
use crate::ports::signals::topics;
use crate::ports::{BlobStore, Clock, MetadataStore, Signals, TransferRecord};
use crate::state::{
    self, Command, Effect, Phase, ScanResult, StoredFile, TransferState, UploadFailure,
};
use broker_protocol::{ErrorCode, RecipientStatus};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

mod commit;
mod events;
mod job_wakeup;
mod lease;

use crate::upload_leases::{HeldLease, LeaseDesk};
use commit::LeaseStep;
use events::EventOrigin;
pub use job_wakeup::JobWakeup;
pub use lease::UploadLease;

/// A supervisor's mailbox: per node by design (a supervisor runs where its requests arrive; what must
/// agree across nodes is decided by the store's conditional commits).
const MAILBOX: usize = 64;

/// Called before each commit with the transfer's id (a test orders two nodes' commits with it).
pub type CommitGate =
    Arc<dyn Fn(Uuid) -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'static>;

type Reply = oneshot::Sender<Result<(), Error>>;

enum Message {
    /// Start an upload: takes the upload's lease in the store, persists UploadStarted and hands the
    /// lease out.
    BeginUpload {
        reply: oneshot::Sender<Result<HeldLease, Error>>,
    },
    /// A command for the state machine; `lease` ties upload commands to the upload that holds the slot.
    Apply {
        command: Command,
        lease: Option<u64>,
        /// The vendor whose system gave the command (recorded for statistics).
        vendor: Option<String>,
        reply: Reply,
    },
    /// The upload holding the slot ended without a result (client gone, crash of the handler).
    AbandonUpload { lease: u64 },
    /// The upload holding the slot stopped, keeping what it stored (a resumable upload's request ended).
    ReleaseUpload { lease: u64 },
}

struct Shared {
    store: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    /// The CloudEvent `source`.
    event_source: String,
    mailboxes: Mutex<HashMap<Uuid, mpsc::Sender<Message>>>,
    /// Woken when a commit schedules jobs, so the job runtime looks again before it meant to.
    jobs_scheduled: Arc<JobWakeup>,
    /// Commits that append events signal the outbox's topic.
    signals: Arc<dyn Signals>,
    /// Grants and waits for upload leases.
    desk: LeaseDesk,
    /// Set by tests only.
    commit_gate: std::sync::OnceLock<CommitGate>,
}

/// The entry point to every transfer's supervisor.
#[derive(Clone)]
pub struct Lifecycle {
    shared: Arc<Shared>,
}

impl Lifecycle {
    pub fn new(
        store: Arc<dyn MetadataStore>,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        event_source: String,
        desk: LeaseDesk,
        signals: Arc<dyn Signals>,
    ) -> Self {
        Lifecycle {
            shared: Arc::new(Shared {
                store,
                blobs,
                clock,
                event_source,
                mailboxes: Mutex::new(HashMap::new()),
                jobs_scheduled: Arc::new(JobWakeup::new(signals.clone())),
                signals,
                desk,
                commit_gate: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Makes every commit wait for `gate` first (tests order two brokers' commits with it); set once.
    #[cfg(any(test, feature = "testing"))]
    pub fn gate_commits(&self, gate: CommitGate) {
        let _ = self.shared.commit_gate.set(gate);
    }

    /// Notified whenever a transition schedules a job.
    pub fn jobs_scheduled(&self) -> Arc<JobWakeup> {
        self.shared.jobs_scheduled.clone()
    }

    /// How many supervisors are alive (for tests and metrics).
    pub fn live_supervisors(&self) -> usize {
        self.shared
            .mailboxes
            .lock()
            .expect("mailbox registry")
            .len()
    }

    /// Creates a transfer through the initialize transition: its status row and its events are written
    /// with it in one transaction (with an idempotency key used before, the earlier transfer instead).
    pub async fn initialize(&self, new: NewTransfer) -> Result<Created, Error> {
        let created = TransferState {
            phase: Phase::Initialized,
            recipients: new
                .recipients
                .iter()
                .map(|r| (r.clone(), RecipientStatus::Initialized))
                .collect(),
            declared_md5: new.declared_checksum.clone(),
            use_virus_scan: new.use_virus_scan,
            // Read from the resource when a supervisor loads the transfer; initialize does not need it.
            purge_after_all_confirmed: false,
        };
        let outcome = state::initialize(created);
        let origin = EventOrigin {
            id: new.id,
            resource_id: &new.resource_id,
            sender: &new.sender,
            source: &self.shared.event_source,
            at: new.created,
        };
        let (mut events, mut jobs) = (vec![], vec![]);
        for effect in &outcome.effects {
            match effect {
                Effect::Emit(event_type, audience) => {
                    events.push(origin.event(*event_type, audience))
                }
                Effect::SchedulePurgeAtExpiry => jobs.push((
                    JobKey::new(JobKind::PurgeExpired, new.id.to_string()),
                    new.expiration_time,
                )),
                // The store writes the Initialized status (and every recipient's) with the transfer.
                _ => {}
            }
        }
        let earliest = jobs.iter().map(|(_, at)| *at).min();
        let created = self.shared.store.create_transfer(new, events, jobs).await?;
        if matches!(created, Created::New(_)) {
            self.shared.signals.signal(topics::OUTBOX).await;
        }
        if let Some(at) = earliest {
            self.shared.jobs_scheduled.scheduled(at).await;
        }
        Ok(created)
    }

    /// Takes the transfer's upload lease (409 if another upload holds it) and records UploadStarted.
    pub async fn begin_upload(&self, id: Uuid) -> Result<UploadLease, Error> {
        let (reply, answer) = oneshot::channel();
        self.deliver(id, Message::BeginUpload { reply }).await;
        let held = answer
            .await
            .map_err(|_| Error::Internal("the transfer's supervisor stopped".into()))??;
        Ok(UploadLease {
            lifecycle: self.clone(),
            id,
            lease: Some(held.token()),
            held: Some(held),
            keep_on_drop: false,
        })
    }

    /// As [`Lifecycle::begin_upload`], but a request holding the upload is asked to stop first, and
    /// waited for (a few seconds at most), as tus wants for half-dead connections.
    pub async fn take_upload(&self, id: Uuid) -> Result<UploadLease, Error> {
        let desk = &self.shared.desk;
        let deadline = tokio::time::Instant::now() + crate::upload_leases::STOP_WAIT;
        loop {
            let released = desk.released(id, "");
            match self.begin_upload(id).await {
                Err(Error::Refused(ErrorCode::FileTransferAlreadyUploaded))
                    if desk.ask_to_stop(id, "").await?
                        && tokio::time::timeout_at(deadline, released).await.is_ok() => {}
                other => return other,
            }
        }
    }

    /// Asks the request holding the transfer's upload (or one part), if any, to stop, and waits until
    /// it has let go (a few seconds at most).
    pub async fn stop_upload(&self, id: Uuid, part: &str) -> Result<(), Error> {
        Ok(self.shared.desk.stop_holder(id, part).await?)
    }

    /// Where the leases of parts of concatenated uploads are taken (parts stream in parallel, so they
    /// do not go through the supervisor).
    pub(crate) fn lease_desk(&self) -> &LeaseDesk {
        &self.shared.desk
    }

    /// Records UploadStarted (if the transfer is not there yet) without taking the upload slot: parts
    /// of a concatenated upload are created and sent in parallel.
    pub async fn record_upload_started(&self, id: Uuid) -> Result<(), Error> {
        self.command(id, Command::StartUpload).await
    }

    /// The background check of a resumable upload (status UploadProcessing) ran: publish the file, or
    /// fail the transfer if it does not match its declared MD5.
    pub async fn complete_verification(&self, id: Uuid, file: StoredFile) -> Result<(), Error> {
        self.command(id, Command::CompleteUpload(file)).await
    }

    /// The stored bytes of a resumable upload could not be read back for its check: the transfer fails.
    pub async fn fail_verification(&self, id: Uuid) -> Result<(), Error> {
        self.command(id, Command::FailUpload(UploadFailure::Storage))
            .await
    }

    /// The purge slot: the file's time is up. The jobs that call it (expiry, grace after confirm) run
    /// on the jobs port.
    pub async fn purge(&self, id: Uuid) -> Result<(), Error> {
        self.command(id, Command::Purge).await
    }

    /// The stuck check found the upload abandoned in UploadStarted.
    pub async fn fail_stuck(&self, id: Uuid) -> Result<(), Error> {
        self.command(id, Command::FailStuck).await
    }

    /// The transfer reached its expiration time (the expiry job).
    pub async fn expire(&self, id: Uuid) -> Result<(), Error> {
        self.command(id, Command::Expire).await
    }

    /// The scan slot: the scanner's verdict on a stored file publishes or fails its transfer.
    pub async fn record_scan(&self, id: Uuid, result: ScanResult) -> Result<(), Error> {
        self.command(id, Command::RecordScan(result)).await
    }

    async fn command(&self, id: Uuid, command: Command) -> Result<(), Error> {
        self.command_by(id, command, None).await
    }

    /// A command a party gives, through a vendor's system when `vendor` is set (recorded with its
    /// rows for statistics): a recipient's download or confirmation.
    pub(crate) async fn command_by(
        &self,
        id: Uuid,
        command: Command,
        vendor: Option<String>,
    ) -> Result<(), Error> {
        self.ask(id, |reply| Message::Apply {
            command,
            lease: None,
            vendor,
            reply,
        })
        .await
    }

    async fn ask(&self, id: Uuid, make: impl FnOnce(Reply) -> Message) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.deliver(id, make(reply)).await;
        answer
            .await
            .map_err(|_| Error::Internal("the transfer's supervisor stopped".into()))?
    }

    /// Hands a message to the transfer's supervisor, spawning one if none is alive.
    async fn deliver(&self, id: Uuid, mut message: Message) {
        loop {
            let mailbox = {
                let mut boxes = self.shared.mailboxes.lock().expect("mailbox registry");
                boxes
                    .entry(id)
                    .or_insert_with(|| {
                        let (tx, rx) = mpsc::channel(MAILBOX);
                        tokio::spawn(supervise(self.shared.clone(), id, rx));
                        tx
                    })
                    .clone()
            };
            match mailbox.send(message).await {
                Ok(()) => return,
                // That supervisor stopped between lookup and send: it has left the registry; retry.
                Err(mpsc::error::SendError(m)) => {
                    message = m;
                    let mut boxes = self.shared.mailboxes.lock().expect("mailbox registry");
                    if boxes.get(&id).is_some_and(|b| b.same_channel(&mailbox)) {
                        boxes.remove(&id);
                    }
                }
            }
        }
    }
}

struct Supervisor {
    shared: Arc<Shared>,
    record: TransferRecord,
    /// The token of the upload lease a request of this node holds through this supervisor.
    upload_in_flight: Option<u64>,
}

async fn supervise(shared: Arc<Shared>, id: Uuid, mut mailbox: mpsc::Receiver<Message>) {
    let mut supervisor = match shared.store.load_transfer(id).await {
        Ok(Some(record)) => Ok(Supervisor {
            shared: shared.clone(),
            record,
            upload_in_flight: None,
        }),
        Ok(None) => Err(Error::Refused(ErrorCode::FileTransferNotFound)),
        Err(e) => {
            tracing::error!(%id, error = %e, "could not load transfer");
            Err(Error::Internal(format!("could not load the transfer: {e}")))
        }
    };
    loop {
        let idle = !matches!(&supervisor, Ok(s) if s.upload_in_flight.is_some());
        if idle {
            // Leave only when nothing is queued and no sender but the registry's exists. Senders are
            // cloned only under this lock, so once both hold no message can arrive any more.
            let mut boxes = shared.mailboxes.lock().expect("mailbox registry");
            if mailbox.is_empty() && mailbox.sender_strong_count() == 1 {
                boxes.remove(&id);
                break;
            }
        }
        let Some(message) = mailbox.recv().await else {
            break;
        };
        match supervisor.as_mut() {
            Ok(s) => s.handle(message).await,
            Err(refusal) => match message {
                Message::BeginUpload { reply } => {
                    let _ = reply.send(Err(refusal.clone()));
                }
                Message::Apply { reply, .. } => {
                    let _ = reply.send(Err(refusal.clone()));
                }
                _ => {}
            },
        }
    }
}

impl Supervisor {
    async fn handle(&mut self, message: Message) {
        match message {
            Message::BeginUpload { reply } => {
                let result = self.begin_upload().await;
                let token = result.as_ref().ok().map(HeldLease::token);
                // The caller may have gone (its request was cancelled): then nobody holds the lease,
                // so it must not stay taken (the grant is released as it drops).
                if reply.send(result).is_err() && token.is_some() {
                    self.upload_in_flight = None;
                }
            }
            Message::Apply {
                command,
                lease,
                vendor,
                reply,
            } => {
                if lease.is_some() {
                    if lease != self.upload_in_flight {
                        let _ = reply.send(Err(Error::Conflict));
                        return;
                    }
                    self.upload_in_flight = None;
                }
                // The upload's last transition ends its lease in the same commit (fenced).
                let mut step = lease.map_or(LeaseStep::Nothing, LeaseStep::End);
                let result = self.apply(command, vendor, &mut step).await;
                if let LeaseStep::End(token) = step {
                    // Nothing was committed: the grant is released on its own.
                    self.shared
                        .desk
                        .release_grant(self.record.id, "", token)
                        .await;
                }
                let _ = reply.send(result);
            }
            Message::ReleaseUpload { lease } => {
                if self.upload_in_flight == Some(lease) {
                    self.upload_in_flight = None;
                }
            }
            Message::AbandonUpload { lease } => {
                if self.upload_in_flight == Some(lease) {
                    self.upload_in_flight = None;
                    // The partial bytes are of no use: a retry starts over.
                    if let Err(e) = self.shared.blobs.delete(self.record.id).await {
                        tracing::warn!(id = %self.record.id, error = %e, "could not remove a partial upload");
                    }
                }
            }
        }
    }

    async fn begin_upload(&mut self) -> Result<HeldLease, Error> {
        if self.upload_in_flight.is_some() {
            return Err(Error::Refused(ErrorCode::FileTransferAlreadyUploaded));
        }
        let (desk, id) = (self.shared.desk.clone(), self.record.id);
        let stop_asked = desk.listen_stop(id, "");
        // The grant is taken with the UploadStarted commit; a retry (already UploadStarted) commits
        // nothing, so it takes the grant alone.
        let mut step = LeaseStep::Begin;
        self.apply(Command::StartUpload, None, &mut step).await?;
        let token = match step {
            LeaseStep::Began(token) => token,
            _ => desk
                .acquire_token(id, "")
                .await?
                .ok_or(Error::Refused(ErrorCode::FileTransferAlreadyUploaded))?,
        };
        self.upload_in_flight = Some(token);
        Ok(desk.hold(id, "", token, stop_asked))
    }
}

#[cfg(test)]
mod tests;
