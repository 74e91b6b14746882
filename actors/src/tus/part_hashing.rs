//! Hashing a concatenated upload in part order while its parts stream. MD5 and SHA-256 are serial,
//! so the parts are hashed in the order they were created (the order tus clients list them in the
//! final POST): a child task of the broker tails the first incomplete part, reading back each stretch
//! as soon as it is durable (from the page cache: parts' pages are kept), and moves on to the next part
//! when one is complete. The final POST then finds most of the file hashed; only what was still owed
//! is hashed after it. A final that lists other parts, a part terminated or expired, or a failed read
//! drops the hashing, and verification reads the joined file back as before.

use crate::error::{Error, Result};
use crate::upload::{stream_append, Discard, HashState, HashesAfter, Hashing};
use crate::Broker;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

/// How long the hashing task waits for news before it looks again (a missed wake-up costs this much).
const RECHECK: Duration = Duration::from_millis(250);

/// What the hashing task of one transfer knows of its parts.
#[derive(Default)]
struct Parts {
    /// Parts in creation order, each with its length and durable offset.
    order: Vec<(String, u64, u64)>,
    /// The order the final POST joined them in, once it came.
    joined: Option<Vec<String>>,
    /// The hashing no longer applies (a part went away); the task stops.
    dropped: bool,
    /// Parts of `order` the task has begun hashing (the last of them may be partly hashed): the final
    /// POST may list the parts in another order as long as it begins with these.
    begun: usize,
}

struct Tail {
    parts: Mutex<Parts>,
    news: Notify,
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
                    news: Notify::new(),
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
                    let _ = tx.send(result);
                });
            }
            tail
        };
        let mut parts = tail.parts.lock().expect("part hashing");
        parts.order.push((part.to_string(), length, 0));
        drop(parts);
        tail.news.notify_one();
    }

    /// A part's durable offset moved to `offset`.
    pub(crate) fn part_progressed(&self, id: Uuid, part: &str, offset: u64) {
        let Some(tail) = self.tail(id) else { return };
        let mut parts = tail.parts.lock().expect("part hashing");
        if let Some(entry) = parts.order.iter_mut().find(|(p, _, _)| p == part) {
            entry.2 = entry.2.max(offset);
        }
        drop(parts);
        tail.news.notify_one();
    }

    /// The parts of `id` no longer hold what was hashed (a part or the upload was removed).
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
            .all(|((p, _, _), q)| p == q);
        let mut reordered = Vec::with_capacity(parts.len());
        for part in parts {
            match state.order.iter().find(|(p, _, _)| p == part) {
                Some(entry) => reordered.push(entry.clone()),
                None => break,
            }
        }
        if prefix_agrees
            && begun <= parts.len()
            && reordered.len() == state.order.len()
            && reordered.len() == parts.len()
        {
            // Created concurrently, the parts may have arrived in another order than the final lists
            // them; what is not begun yet is hashed in the final's order.
            state.order = reordered;
            state.joined = Some(parts.to_vec());
        } else {
            state.dropped = true;
        }
        drop(state);
        tail.news.notify_one();
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

    /// The task: hashes each part's durable bytes in order until the joined parts are all hashed.
    async fn hash_parts(&self, id: Uuid, tail: &Tail) -> Result<HashState> {
        let mut hashing: Hashing = HashState::default().into();
        let (mut index, mut hashed) = (0usize, 0u64);
        loop {
            let step = {
                let mut parts = tail.parts.lock().expect("part hashing");
                if parts.dropped {
                    return Err(Error::Internal("the parts changed".into()));
                }
                match parts.order.get(index).cloned() {
                    None if parts.joined.is_some() => Step::Finish,
                    None => Step::Wait,
                    Some((_, length, _)) if hashed == length => Step::Next,
                    Some((_, _, durable)) if durable <= hashed => Step::Wait,
                    Some((part, _, durable)) => {
                        // Begun before its first byte is hashed: a final cannot reorder it any more.
                        parts.begun = parts.begun.max(index + 1);
                        Step::Hash(part, durable)
                    }
                }
            };
            match step {
                Step::Finish => {
                    return hashing
                        .finish()
                        .await
                        .map_err(|e| Error::Internal(e.to_string()))
                }
                Step::Next => (index, hashed) = (index + 1, 0),
                Step::Wait => {
                    let stopping = self.inner.shutdown.cancelled();
                    tokio::select! {
                        _ = tail.news.notified() => {}
                        _ = tokio::time::sleep(RECHECK) => {}
                        _ = stopping => return Err(Error::Internal("the broker is stopping".into())),
                    }
                }
                Step::Hash(part, durable) => {
                    let wanted = durable - hashed;
                    let stream = self
                        .ports()
                        .blobs
                        .read_part(id, &part, hashed, wanted)
                        .await?;
                    let before = hashing.len();
                    let discard = Box::new(Discard::default());
                    let after = HashesAfter::KeepRunning;
                    let appended =
                        stream_append(stream, discard, hashing, None, false, after, None)
                            .await
                            .map_err(|e| Error::Internal(e.to_string()))?;
                    hashing = appended.hashing;
                    if hashing.len() - before != wanted {
                        return Err(Error::Internal(format!("part {part}: a short read")));
                    }
                    hashed = durable;
                }
            }
        }
    }
}

/// What the hashing task does next.
enum Step {
    /// Every joined part is hashed.
    Finish,
    /// The current part is hashed as far as it is durable: move on to the next.
    Next,
    /// Nothing new is durable yet.
    Wait,
    /// Hash the current part up to this durable offset.
    Hash(String, u64),
}
