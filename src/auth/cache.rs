//! Tokens already verified: a client sends the same bearer token with every request, and checking its
//! signature (ES256 or RS256) costs more than most requests. An entry holds what the token said, for
//! as long as the token is valid and its issuer's keys are the ones that verified it. Keyed by the
//! token's SHA-256, so the cache holds no usable token.

use super::Caller;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Tokens remembered at most (a few MiB); at the cap the expired ones go, then all if none had.
const CAPACITY: usize = 10_000;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct TokenKey([u8; 32]);

impl TokenKey {
    pub(super) fn of(token: &str) -> TokenKey {
        TokenKey(Sha256::digest(token.as_bytes()).into())
    }
}

struct Verified {
    caller: Caller,
    issuer: String,
    generation: u64,
    /// The token's `exp`, seconds since the epoch.
    exp: Option<i64>,
}

#[derive(Default)]
pub(super) struct VerifiedTokens {
    entries: Mutex<HashMap<TokenKey, Verified>>,
    misses: AtomicU64,
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Whether a token with this `exp` (seconds since the epoch) is past it by more than `allowed`.
pub(super) fn expired(exp: i64, allowed: u64) -> bool {
    now_secs() > exp.saturating_add(allowed.min(i64::MAX as u64) as i64)
}

impl VerifiedTokens {
    /// The caller of a token verified before, while it still holds: its issuer has the same keys
    /// (`generation_of` the issuer) and it expired at most `allowed_past_exp` seconds ago.
    pub(super) fn get(
        &self,
        key: &TokenKey,
        allowed_past_exp: u64,
        generation_of: impl Fn(&str) -> Option<u64>,
    ) -> Option<Caller> {
        let entries = self.entries.lock().expect("verified tokens");
        let hit = entries.get(key).filter(|v| {
            generation_of(&v.issuer) == Some(v.generation)
                && v.exp.is_some_and(|exp| !expired(exp, allowed_past_exp))
        });
        hit.map(|v| v.caller.clone())
    }

    /// Counts a token that found nothing usable here and is verified in full.
    pub(super) fn count_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn insert(
        &self,
        key: TokenKey,
        issuer: &str,
        generation: u64,
        exp: Option<i64>,
        caller: Caller,
    ) {
        let mut entries = self.entries.lock().expect("verified tokens");
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            let now = now_secs();
            entries.retain(|_, v| v.exp.is_some_and(|exp| exp >= now));
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Verified {
                caller,
                issuer: issuer.to_string(),
                generation,
                exp,
            },
        );
    }

    /// Tokens verified in full (signature included), counted by [`Self::count_miss`].
    pub(super) fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}
