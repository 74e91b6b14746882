//! How a supervisor commits a command: the pure transition decides, the store commits conditionally
//! on the transfer's version (and the upload lease, where the command begins or ends an upload), and a
//! decision made on a record another node moved on is made again.

use super::events::EventOrigin;
use super::Supervisor;
use crate::error::Error;
use crate::ports::jobs::{JobKey, JobKind};
use crate::ports::signals::topics;
use crate::ports::{StoreError, TransferChange};
use crate::state::{transition, Command, Effect};
use broker_protocol::ErrorCode;

/// How many times a command is decided again after another node moved the transfer under it.
const MAX_ATTEMPTS: usize = 16;

/// What a transition's commit does with the transfer's upload lease.
#[derive(Clone, Copy)]
pub(super) enum LeaseStep {
    Nothing,
    /// Take it (an upload begins) ...
    Begin,
    /// ... taken with the commit, as this grant.
    Began(u64),
    /// End this grant (an upload's last transition) ...
    End(u64),
    /// ... ended with the commit.
    Ended,
}

/// Why deciding a command failed: on a record that may be stale (decide again on a fresh one), or for good.
enum Retry {
    Stale(Error),
    Final(Error),
}

impl Supervisor {
    /// Runs the pure transition, persists its effects, then carries out the side effects. The record
    /// may be behind the store (another node committed since it was loaded): a commit refused for its
    /// version, or a refusal decided on an old record, loads the transfer again and decides anew.
    /// `lease`: what the commit does with the transfer's upload lease (moved on once it did it).
    pub(super) async fn apply(
        &mut self,
        command: Command,
        vendor: Option<String>,
        lease: &mut LeaseStep,
    ) -> Result<(), Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.try_apply(&command, vendor.clone(), lease).await {
                Err(Retry::Stale(e)) if attempts < MAX_ATTEMPTS => {
                    if !self.reload().await? {
                        return Err(e);
                    }
                }
                Err(Retry::Stale(e) | Retry::Final(e)) => return Err(e),
                Ok(()) => return Ok(()),
            }
        }
    }

    /// Loads the transfer again; `true` when it changed since this supervisor last saw it.
    async fn reload(&mut self) -> Result<bool, Error> {
        match self.shared.store.load_transfer(self.record.id).await? {
            Some(fresh) => {
                let moved = fresh.version != self.record.version;
                self.record = fresh;
                Ok(moved)
            }
            None => Err(Error::Refused(ErrorCode::FileTransferNotFound)),
        }
    }

    async fn try_apply(
        &mut self,
        command: &Command,
        vendor: Option<String>,
        lease: &mut LeaseStep,
    ) -> Result<(), Retry> {
        let outcome = transition(&self.record.state, command)
            .map_err(|code| Retry::Stale(Error::Refused(code)))?;
        if !outcome.effects.is_empty() {
            let mut change = self.change_for(&outcome.effects, vendor);
            match lease {
                LeaseStep::End(token) => change.ends_lease = Some(*token),
                LeaseStep::Begin => change.begins_lease = Some(self.shared.desk.begin_lease()),
                _ => {}
            }
            let earliest = change.jobs.iter().map(|(_, at)| *at).min();
            let appends_events = !change.events.is_empty();
            if let Some(gate) = self.shared.commit_gate.get() {
                gate(self.record.id).await;
            }
            match self.shared.store.commit_change(change).await {
                Ok(began) => {
                    self.record.version += 1;
                    *lease = match (&*lease, began) {
                        (LeaseStep::Begin, Some(token)) => LeaseStep::Began(token),
                        (LeaseStep::End(_), _) => LeaseStep::Ended,
                        (step, _) => *step,
                    };
                }
                Err(StoreError::Conflict) => return Err(Retry::Stale(Error::Conflict)),
                Err(e) => {
                    // Whether it was written is unknown until the store is read again.
                    let _ = self.reload().await;
                    return Err(Retry::Final(e.into()));
                }
            }
            if appends_events {
                self.shared.signals.signal(topics::OUTBOX).await;
            }
            if let Some(at) = earliest {
                self.shared.jobs_scheduled.scheduled(at).await;
            }
        }
        if outcome.effects.contains(&Effect::DeleteBlob) {
            if let Err(e) = self.shared.blobs.delete(self.record.id).await {
                tracing::warn!(id = %self.record.id, error = %e, "could not remove stored bytes");
            }
        }
        self.record.state = outcome.next;
        // A refusal the transition returns with its outcome (a repeated command) was decided on a
        // record that was current at the commit, or on one with nothing to commit: check it is fresh.
        match outcome.reply {
            Ok(()) => Ok(()),
            Err(code) if outcome.effects.is_empty() => Err(Retry::Stale(Error::Refused(code))),
            Err(code) => Err(Retry::Final(Error::Refused(code))),
        }
    }

    fn change_for(&self, effects: &[Effect], vendor: Option<String>) -> TransferChange {
        let record = &self.record;
        let now = self.shared.clock.now();
        let mut change = TransferChange {
            vendor,
            ..TransferChange::new(record.id, record.state.phase.status(), record.version, now)
        };
        for effect in effects {
            match effect {
                Effect::RecordStatus(status, text) => {
                    change.new_status = Some((*status, text.clone()))
                }
                Effect::RecordStoredFile(file) => change.stored_file = Some(file.clone()),
                Effect::RecordRecipient(r, s) => change.recipient_rows.push((r.clone(), *s)),
                Effect::Emit(event_type, audience) => {
                    let origin = EventOrigin {
                        id: record.id,
                        resource_id: &record.resource_id,
                        sender: &record.sender,
                        source: &self.shared.event_source,
                        at: now,
                    };
                    change.events.push(origin.event(*event_type, audience));
                }
                Effect::SchedulePurgeAfterGrace => change.jobs.push((
                    JobKey::new(JobKind::PurgeAfterConfirm, record.id.to_string()),
                    now + record.purge_grace_period,
                )),
                Effect::ScheduleStuckCheck(after) => change.jobs.push((
                    JobKey::new(JobKind::StuckCheck, record.id.to_string()),
                    now + *after,
                )),
                Effect::CancelStuckCheck => change
                    .cancelled_jobs
                    .push(JobKey::new(JobKind::StuckCheck, record.id.to_string())),
                Effect::CancelPurges => change.cancelled_jobs.extend(
                    [JobKind::PurgeExpired, JobKind::PurgeAfterConfirm]
                        .map(|kind| JobKey::new(kind, record.id.to_string())),
                ),
                Effect::ScheduleScan => change
                    .jobs
                    .push((JobKey::new(JobKind::Scan, record.id.to_string()), now)),
                Effect::SchedulePurgeAtExpiry => change.jobs.push((
                    JobKey::new(JobKind::PurgeExpired, record.id.to_string()),
                    record.expiration_time,
                )),
                Effect::DeleteBlob => {}
            }
        }
        change
    }
}
