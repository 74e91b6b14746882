//! Hashing a concatenated upload in part order while its parts stream. MD5 and SHA-256 are serial,
//! so the parts are hashed in the order they were created (the order tus clients list them in the
//! final POST). The hash state of the joined file belongs to a child task of the broker, one per
//! transfer, which stands at one part (the frontier) and an offset in it:
//! - a PATCH streaming into the frontier at exactly that offset feeds its batches to the hash as they
//!   arrive, as a binary upload does (nothing is read back, and its pages need not stay cached);
//! - bytes that arrived before the hash got to them (parts sent ahead, a PATCH that began while the
//!   hash was behind) are read back by the task from durable storage, then the PATCH goes on live;
//! - hashing is serial, so while the frontier streams fast (the link is not the limit) the parts
//!   ahead of it may hold at most [`LEAD_WINDOW`] unhashed bytes in all; beyond that their PATCHes stop
//!   reading (TCP holds the client back) until the hash moves on, so the bandwidth and the CPU go to
//!   the bytes the hash needs next. Parts sent over slow links are never held back.
//!
//! The final POST then finds the file hashed but for what was still owed. Bytes are hashed live only
//! from PATCHes that keep whatever they stored (no checksum); one that fails drops the hashing, as does
//! a final that lists other parts, a part terminated or expired, or a failed read: verification then
//! reads the joined file back.

use crate::error::{Error, Result};
use crate::ports::Batch;
use crate::upload::{stream_append, Discard, HashState, HashesAfter, Hashing, Live};
use crate::Broker;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

/// How long the hashing task waits for news before it looks again (a missed wake-up costs this much).
const RECHECK: Duration = Duration::from_millis(250);
/// How many unhashed bytes the parts ahead of the frontier may hold before they are held back.
const LEAD_WINDOW: u64 = 256 << 20;
/// The rate from which the frontier counts as streaming fast (so holding others back helps it).
const FAST_BYTES_PER_SEC: f64 = 64.0 * 1024.0 * 1024.0;
/// How long a waiting PATCH sleeps before it looks again (a missed wake-up costs this much).
const PACE_RECHECK: Duration = Duration::from_millis(20);
/// The window over which a part's rate is measured.
const RATE_WINDOW: Duration = Duration::from_millis(200);

/// One part as the hashing and the pacing see it.
struct PartProgress {
    name: String,
    length: u64,
    /// Bytes durable (synced, offset recorded).
    durable: u64,
    /// Bytes received so far, durable or not.
    received: u64,
    /// Completed in the store (every byte there, readable as one object on any store).
    completed: bool,
    /// Its recent rate in bytes/s, the window it is measured over, and when data last came.
    rate: f64,
    rate_since: (Instant, u64),
    last_data: Instant,
}

impl PartProgress {
    fn new(name: &str, length: u64) -> PartProgress {
        let now = Instant::now();
        PartProgress {
            name: name.to_string(),
            length,
            durable: 0,
            received: 0,
            completed: false,
            rate: 0.0,
            rate_since: (now, 0),
            last_data: now,
        }
    }

    fn received_up_to(&mut self, received: u64) {
        let now = Instant::now();
        self.received = self.received.max(received);
        self.last_data = now;
        let (since, from) = self.rate_since;
        let elapsed = now.duration_since(since);
        if elapsed >= RATE_WINDOW {
            self.rate = self.received.saturating_sub(from) as f64 / elapsed.as_secs_f64();
            self.rate_since = (now, self.received);
        }
    }

    fn streams_fast(&self) -> bool {
        self.rate >= FAST_BYTES_PER_SEC && self.last_data.elapsed() < RATE_WINDOW
    }
}

/// What the hashing task of one transfer knows of its parts.
#[derive(Default)]
struct Parts {
    /// Parts in creation order.
    order: Vec<PartProgress>,
    /// The part of `order` the hash stands at (mirrors [`Position::index`] for the pacing).
    frontier: usize,
    /// The order the final POST joined them in, once it came.
    joined: Option<Vec<String>>,
    /// The hashing no longer applies (a part went away); the task stops.
    dropped: bool,
    /// Parts of `order` the hash has begun (the last of them may be partly hashed): the final POST may
    /// list the parts in another order as long as it begins with these.
    begun: usize,
}

impl Parts {
    fn entry(&mut self, part: &str) -> Option<&mut PartProgress> {
        self.order.iter_mut().find(|p| p.name == part)
    }

    fn is_frontier(&self, part: &str) -> bool {
        self.order
            .get(self.frontier)
            .is_some_and(|p| p.name == part)
    }

    /// Whether a PATCH streaming into `part` (not the frontier) should wait for the hash to move on.
    fn holds_back(&self, part: &str) -> bool {
        let Some(frontier) = self.order.get(self.frontier) else {
            return false;
        };
        let ahead = &self.order[self.frontier + 1..];
        if !ahead.iter().any(|p| p.name == part) || !frontier.streams_fast() {
            return false;
        }
        let lead: u64 = ahead.iter().map(|p| p.received.max(p.durable)).sum();
        lead >= LEAD_WINDOW
    }
}

/// Where the hash of the joined file stands.
struct Position {
    hashing: Option<Hashing>,
    index: usize,
    hashed: u64,
}

struct Tail {
    parts: Mutex<Parts>,
    /// Whether the store reads a piece's sealed parts before the piece is completed; if not, a piece
    /// not hashed live is read back once completed.
    sealed_readable: bool,
    /// Wakes the task.
    news: Notify,
    /// Wakes PATCHes waiting for the hash to move on.
    pace: Notify,
    hash: tokio::sync::Mutex<Position>,
    /// The hashes of the joined file, when the task has them.
    done: Mutex<Option<oneshot::Receiver<Result<HashState>>>>,
}

/// The part hashing of every transfer whose parts are being sent.
#[derive(Default)]
pub(crate) struct PartHashing(Mutex<HashMap<Uuid, Arc<Tail>>>);

impl Broker {
    /// A new part of `id` was created (parts are hashed in this order).
    pub(crate) fn part_created(&self, id: Uuid, part: &str, length: u64) {
        let tail = {
            let mut map = self.tus().part_hashing.0.lock().expect("part hashing");
            let mut started = false;
            let tail = map.entry(id).or_insert_with(|| {
                started = true;
                Arc::new(Tail {
                    parts: Mutex::default(),
                    sealed_readable: self.ports().blobs.rules().parts_readable,
                    news: Notify::new(),
                    pace: Notify::new(),
                    hash: tokio::sync::Mutex::new(Position {
                        hashing: Some(HashState::default().into()),
                        index: 0,
                        hashed: 0,
                    }),
                    done: Mutex::new(None),
                })
            });
            let tail = tail.clone();
            if started {
                let (tx, rx) = oneshot::channel();
                *tail.done.lock().expect("part hashing") = Some(rx);
                let broker = self.clone();
                let task_tail = tail.clone();
                tokio::spawn(async move {
                    let result = broker.hash_parts(id, &task_tail).await;
                    if let Err(e) = &result {
                        tracing::info!(%id, error = %e, "hashing the parts in order stopped; the joined file is read back");
                    }
                    task_tail.parts.lock().expect("part hashing").dropped = true;
                    task_tail.pace.notify_waiters();
                    let _ = tx.send(result);
                });
            }
            tail
        };
        let mut parts = tail.parts.lock().expect("part hashing");
        parts.order.push(PartProgress::new(part, length));
        drop(parts);
        tail.news.notify_one();
    }

    /// A part's durable offset moved to `offset` (`completed`: the part is whole and completed in the
    /// store).
    pub(crate) fn part_progressed(&self, id: Uuid, part: &str, offset: u64, completed: bool) {
        let Some(tail) = self.tail(id) else { return };
        let mut parts = tail.parts.lock().expect("part hashing");
        if let Some(entry) = parts.entry(part) {
            entry.durable = entry.durable.max(offset);
            entry.completed |= completed;
        }
        drop(parts);
        tail.news.notify_one();
        tail.pace.notify_waiters();
    }

    /// A PATCH of `part` is about to store `batch` at `offset` (`durable`: how far the part is durable
    /// and recorded): hashes it live if the hash stands exactly there, holds the PATCH back while the
    /// part runs too far ahead of the hash, and waits for the hash to catch up when it is behind.
    pub(crate) async fn part_batch(
        &self,
        id: Uuid,
        part: &str,
        offset: u64,
        durable: u64,
        batch: &Batch,
    ) -> Live {
        let Some(tail) = self.tail(id) else {
            return Live::No;
        };
        loop {
            let wake = tail.pace.notified();
            let frontier = {
                let mut parts = tail.parts.lock().expect("part hashing");
                if parts.dropped {
                    return Live::No;
                }
                if let Some(entry) = parts.entry(part) {
                    entry.received_up_to(offset);
                }
                if !parts.is_frontier(part) && !parts.holds_back(part) {
                    return Live::No;
                }
                parts.is_frontier(part)
            };
            if frontier {
                let mut pos = tail.hash.lock().await;
                let standing = {
                    let mut parts = tail.parts.lock().expect("part hashing");
                    let here = parts.order.get(pos.index).is_some_and(|p| p.name == part);
                    if !here || parts.dropped || pos.hashed > offset {
                        Standing::Elsewhere
                    } else if pos.hashed == offset {
                        parts.begun = parts.begun.max(pos.index + 1);
                        Standing::Here
                    } else {
                        Standing::Behind
                    }
                };
                match standing {
                    Standing::Elsewhere => return Live::No,
                    Standing::Here => {
                        let hashing = pos.hashing.as_mut().expect("the task owns a hashing");
                        hashing.feed(batch).await;
                        pos.hashed += batch.iter().map(|b| b.len() as u64).sum::<u64>();
                        let mut parts = tail.parts.lock().expect("part hashing");
                        if parts
                            .order
                            .get(pos.index)
                            .is_some_and(|p| p.length == pos.hashed)
                        {
                            // The part is hashed whole: the next PATCH of the next part finds the
                            // hash waiting for it.
                            (pos.index, pos.hashed) = (pos.index + 1, 0);
                            parts.frontier = pos.index;
                        }
                        drop(parts);
                        tail.news.notify_one();
                        tail.pace.notify_waiters();
                        return Live::Fed;
                    }
                    // The store cannot read the bytes before it back until the part is completed.
                    Standing::Behind if !tail.sealed_readable => return Live::No,
                    Standing::Behind if durable < offset => return Live::AfterDurable,
                    // The task reads back what is durable, then this PATCH goes on live.
                    Standing::Behind => {
                        drop(pos);
                        tail.news.notify_one();
                    }
                }
            }
            tokio::select! {
                _ = wake => {}
                _ = tokio::time::sleep(PACE_RECHECK) => {}
            }
        }
    }

    /// The parts of `id` no longer hold what was hashed (a part or the upload was removed, or a PATCH
    /// failed after its bytes were hashed).
    pub(crate) fn drop_part_hashing(&self, id: Uuid) {
        let removed = self
            .tus()
            .part_hashing
            .0
            .lock()
            .expect("part hashing")
            .remove(&id);
        if let Some(tail) = removed {
            tail.parts.lock().expect("part hashing").dropped = true;
            tail.news.notify_one();
            tail.pace.notify_waiters();
        }
    }

    /// The final POST joined `parts`: the hashing finishes them if they are the parts it hashes, in
    /// its order.
    pub(crate) fn parts_joined(&self, id: Uuid, parts: &[String]) {
        let Some(tail) = self.tail(id) else { return };
        let mut state = tail.parts.lock().expect("part hashing");
        let begun = state.begun;
        let prefix_agrees = state
            .order
            .iter()
            .take(begun)
            .zip(parts)
            .all(|(p, q)| &p.name == q);
        let distinct: std::collections::HashSet<&String> = parts.iter().collect();
        let listed = distinct.len() == parts.len()
            && parts.len() == state.order.len()
            && parts
                .iter()
                .all(|q| state.order.iter().any(|p| &p.name == q));
        if prefix_agrees && begun <= parts.len() && listed {
            // Created concurrently, the parts may have arrived in another order than the final lists
            // them; what is not begun yet is hashed in the final's order.
            let mut order = std::mem::take(&mut state.order);
            for part in parts {
                let at = order.iter().position(|p| &p.name == part).expect("listed");
                state.order.push(order.remove(at));
            }
            state.joined = Some(parts.to_vec());
        } else {
            state.dropped = true;
        }
        drop(state);
        tail.news.notify_one();
        tail.pace.notify_waiters();
    }

    /// The joined file's hashes from the part hashing, if it ran to the end for these parts.
    pub(crate) async fn joined_hashes(&self, id: Uuid) -> Option<HashState> {
        let tail = self
            .tus()
            .part_hashing
            .0
            .lock()
            .expect("part hashing")
            .remove(&id)?;
        {
            // Only a hashing told which parts were joined can finish; any other is stopped.
            let mut parts = tail.parts.lock().expect("part hashing");
            if parts.joined.is_none() {
                parts.dropped = true;
                tail.news.notify_one();
                return None;
            }
        }
        let done = tail.done.lock().expect("part hashing").take()?;
        match done.await {
            Ok(Ok(state)) => Some(state),
            _ => None,
        }
    }

    fn tail(&self, id: Uuid) -> Option<Arc<Tail>> {
        self.tus()
            .part_hashing
            .0
            .lock()
            .expect("part hashing")
            .get(&id)
            .cloned()
    }

    /// The task: moves the hash from part to part, reading back each part's durable bytes that were
    /// not hashed live, until the joined parts are all hashed.
    async fn hash_parts(&self, id: Uuid, tail: &Tail) -> Result<HashState> {
        loop {
            let mut pos = tail.hash.lock().await;
            let step = {
                let mut parts = tail.parts.lock().expect("part hashing");
                if parts.dropped {
                    return Err(Error::Internal("the parts changed".into()));
                }
                match parts.order.get(pos.index) {
                    None if parts.joined.is_some() => Step::Finish,
                    None => Step::Wait,
                    Some(p) if pos.hashed == p.length => Step::Next,
                    Some(p) if p.completed || tail.sealed_readable => {
                        let upto = if p.completed { p.length } else { p.durable };
                        if upto <= pos.hashed {
                            Step::Wait
                        } else {
                            let step = Step::Hash(p.name.clone(), upto, p.completed);
                            // Begun before its first byte is hashed: a final cannot reorder it any more.
                            parts.begun = parts.begun.max(pos.index + 1);
                            step
                        }
                    }
                    Some(_) => Step::Wait,
                }
            };
            match step {
                Step::Finish => {
                    let hashing = pos.hashing.take().expect("the task owns a hashing");
                    return hashing
                        .finish()
                        .await
                        .map_err(|e| Error::Internal(e.to_string()));
                }
                Step::Next => {
                    (pos.index, pos.hashed) = (pos.index + 1, 0);
                    tail.parts.lock().expect("part hashing").frontier = pos.index;
                    drop(pos);
                    tail.pace.notify_waiters();
                }
                Step::Wait => {
                    drop(pos);
                    let stopping = self.inner.shutdown.cancelled();
                    tokio::select! {
                        _ = tail.news.notified() => {}
                        _ = tokio::time::sleep(RECHECK) => {}
                        _ = stopping => return Err(Error::Internal("the broker is stopping".into())),
                    }
                }
                Step::Hash(part, upto, completed) => {
                    let (from, wanted) = (pos.hashed, upto - pos.hashed);
                    let stream = self.read_piece(id, &part, from, wanted, completed).await?;
                    let hashing = pos.hashing.take().expect("the task owns a hashing");
                    let before = hashing.len();
                    let discard = Box::new(Discard::default());
                    let after = HashesAfter::KeepRunning;
                    let appended =
                        stream_append(stream, discard, hashing, None, false, after, None)
                            .await
                            .map_err(|e| Error::Internal(e.to_string()))?;
                    if appended.hashing.len() - before != wanted {
                        return Err(Error::Internal(format!("part {part}: a short read")));
                    }
                    pos.hashing = Some(appended.hashing);
                    pos.hashed = upto;
                    drop(pos);
                    tail.pace.notify_waiters();
                }
            }
        }
    }
}

/// Where the hash stands for a PATCH of the frontier.
enum Standing {
    /// At the PATCH's offset: its batch is hashed as it passes.
    Here,
    /// Before it: the task reads back what is durable first.
    Behind,
    /// On another part, or past the offset (the hashing was dropped or moved on).
    Elsewhere,
}

/// What the hashing task does next.
enum Step {
    /// Every joined part is hashed.
    Finish,
    /// The frontier is hashed whole: move on to the next part.
    Next,
    /// Nothing new is durable yet.
    Wait,
    /// Read back the frontier up to this offset (its length when the piece is completed: read from
    /// the completed piece; else its durable offset: read from its sealed parts).
    Hash(String, u64, bool),
}
