//! The hashing of each resumable upload between its PATCHes. Its threads keep running after a PATCH is
//! answered (the tail of one PATCH overlaps the next); an upload left idle has its hashing settled, so
//! idle uploads hold no threads.

use crate::upload::Hashing;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Uploads whose hashing threads may stay alive between PATCHes.
const MAX_RUNNING: usize = 64;

#[derive(Default)]
pub struct HashCache(Mutex<HashMap<Uuid, (Instant, Hashing)>>);

impl HashCache {
    /// Takes the upload's hashing out (the PATCH that takes it holds the upload).
    pub fn take(&self, id: Uuid) -> Option<Hashing> {
        self.0
            .lock()
            .expect("tus hashes")
            .remove(&id)
            .map(|(_, h)| h)
    }

    /// Keeps the upload's hashing for its next PATCH. Past [`MAX_RUNNING`] uploads with running
    /// threads, the longest idle ones are settled, so threads stay bounded however many uploads pause.
    pub fn put(self: &std::sync::Arc<Self>, id: Uuid, hashing: Hashing) {
        let excess: Vec<(Uuid, Hashing)> = {
            let mut map = self.0.lock().expect("tus hashes");
            map.insert(id, (Instant::now(), hashing));
            let mut running: Vec<(Instant, Uuid)> = map
                .iter()
                .filter(|(_, (_, h))| matches!(h, Hashing::Running(_)))
                .map(|(id, (at, _))| (*at, *id))
                .collect();
            if running.len() <= MAX_RUNNING {
                return;
            }
            running.sort();
            running[..running.len() - MAX_RUNNING]
                .iter()
                .filter_map(|(_, id)| map.remove(id).map(|(_, h)| (*id, h)))
                .collect()
        };
        let cache = self.clone();
        tokio::spawn(async move { cache.settle(excess).await });
    }

    pub fn forget(&self, id: Uuid) {
        self.0.lock().expect("tus hashes").remove(&id);
    }

    /// Waits for the hashes of uploads idle for `idle` or longer, ending their threads.
    pub async fn settle_idle(&self, idle: Duration) {
        let stale: Vec<(Uuid, Hashing)> = {
            let mut map = self.0.lock().expect("tus hashes");
            let ids: Vec<Uuid> = map
                .iter()
                .filter(|(_, (at, h))| at.elapsed() >= idle && matches!(h, Hashing::Running(_)))
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| map.remove(&id).map(|(_, h)| (id, h)))
                .collect()
        };
        self.settle(stale).await;
    }

    /// Waits for the hashes of these uploads (taken out of the cache) and puts them back settled.
    async fn settle(&self, taken: Vec<(Uuid, Hashing)>) {
        for (id, hashing) in taken {
            // Idle threads have nothing queued: this returns at once (an evicted one finishes its tail).
            match hashing.finish().await {
                Ok(state) => {
                    let mut map = self.0.lock().expect("tus hashes");
                    // A PATCH that came meanwhile rebuilt the state from disk; keep that one.
                    map.entry(id)
                        .or_insert_with(|| (Instant::now(), state.into()));
                }
                Err(e) => {
                    tracing::warn!(%id, error = %e, "a hashing thread failed; the state is rebuilt on the next PATCH")
                }
            }
        }
    }
}
