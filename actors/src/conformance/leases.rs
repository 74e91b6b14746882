//! The leases port's rules. Time is the store's: `pass` moves the store's clock on by some milliseconds
//! (the in-memory adapter's test clock; a real store's clock by waiting), and `ttl_ms` is chosen by the
//! adapter's test so that waiting a fraction of it is reliable there.

use crate::ports::leases::{Acquired, Leases, Renewal};
use futures::future::BoxFuture;
use uuid::Uuid;

/// Moves the store's clock on by this many milliseconds.
pub type PassTime<'a> = &'a (dyn Fn(u64) -> BoxFuture<'static, ()> + Sync);

/// Runs every rule of the leases port against `leases` (a fresh adapter).
pub async fn leases_suite(leases: &dyn Leases, ttl_ms: u64, pass: PassTime<'_>) {
    a_free_upload_is_granted_and_a_second_holder_is_told_who_holds_it(leases, ttl_ms).await;
    every_grant_has_a_larger_token_than_the_ones_before(leases, ttl_ms).await;
    an_expired_grant_is_taken_over_and_its_token_is_fenced_off(leases, ttl_ms, pass).await;
    a_renewed_grant_outlives_its_first_expiry(leases, ttl_ms, pass).await;
    a_holder_asked_to_stop_learns_it_when_it_renews(leases, ttl_ms).await;
    a_released_grant_frees_the_upload_and_a_stale_release_frees_nothing(leases, ttl_ms).await;
    grants_expired_long_ago_are_forgotten_and_no_other(leases, ttl_ms, pass).await;
}

fn granted(acquired: Acquired) -> u64 {
    match acquired {
        Acquired::Granted(grant) => grant.token,
        held => panic!("the upload's lease is free, so it is granted: {held:?}"),
    }
}

async fn a_free_upload_is_granted_and_a_second_holder_is_told_who_holds_it(
    leases: &dyn Leases,
    ttl_ms: u64,
) {
    let id = Uuid::new_v4();
    let token = granted(leases.acquire(id, "", "node-a", ttl_ms).await.unwrap());
    assert_eq!(
        leases.acquire(id, "", "node-b", ttl_ms).await.unwrap(),
        Acquired::Held {
            holder: "node-a".into(),
            token
        },
        "a live grant is not given to another holder"
    );
    assert!(leases.is_current(id, "", token).await.unwrap());
    assert_eq!(
        leases.holder(id, "").await.unwrap().as_deref(),
        Some("node-a")
    );
    assert_eq!(leases.holder(id, "p1").await.unwrap(), None);
    // Each part of a concatenated upload has a lease of its own.
    let part = granted(leases.acquire(id, "p1", "node-b", ttl_ms).await.unwrap());
    assert_ne!(part, token);
    assert!(leases.is_current(id, "p1", part).await.unwrap());
    assert!(!leases.is_current(id, "p1", token).await.unwrap());
}

async fn every_grant_has_a_larger_token_than_the_ones_before(leases: &dyn Leases, ttl_ms: u64) {
    let mut last = 0;
    for _ in 0..5 {
        let id = Uuid::new_v4();
        let token = granted(leases.acquire(id, "", "node-a", ttl_ms).await.unwrap());
        assert!(token > last, "token {token} after {last}");
        leases.release(id, "", token).await.unwrap();
        let again = granted(leases.acquire(id, "", "node-a", ttl_ms).await.unwrap());
        assert!(
            again > token,
            "a grant after a release has a new token ({again} after {token})"
        );
        last = again;
    }
}

async fn an_expired_grant_is_taken_over_and_its_token_is_fenced_off(
    leases: &dyn Leases,
    ttl_ms: u64,
    pass: PassTime<'_>,
) {
    let id = Uuid::new_v4();
    let stale = granted(leases.acquire(id, "", "node-a", ttl_ms).await.unwrap());
    pass(ttl_ms / 2).await;
    assert!(
        matches!(
            leases.acquire(id, "", "node-b", ttl_ms).await.unwrap(),
            Acquired::Held { .. }
        ),
        "half way through its time the grant is alive"
    );
    pass(ttl_ms).await;
    assert_eq!(
        leases.holder(id, "").await.unwrap(),
        None,
        "an expired grant has no holder"
    );
    assert!(
        leases.is_current(id, "", stale).await.unwrap(),
        "expired but not yet replaced, the grant is still the upload's"
    );
    assert!(
        !leases.request_stop(id, "").await.unwrap(),
        "an expired grant has nobody to stop"
    );
    let fresh = granted(leases.acquire(id, "", "node-b", ttl_ms).await.unwrap());
    assert!(fresh > stale);
    assert!(!leases.is_current(id, "", stale).await.unwrap());
    assert_eq!(
        leases.renew(id, "", stale, ttl_ms).await.unwrap(),
        Renewal::Lost,
        "the replaced holder learns it lost the upload"
    );
    leases.release(id, "", stale).await.unwrap();
    assert!(
        leases.is_current(id, "", fresh).await.unwrap(),
        "a stale holder's release leaves the new grant"
    );
}

async fn grants_expired_long_ago_are_forgotten_and_no_other(
    leases: &dyn Leases,
    ttl_ms: u64,
    pass: PassTime<'_>,
) {
    let (old, recent, alive) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let old_token = granted(leases.acquire(old, "", "node-a", ttl_ms).await.unwrap());
    pass(ttl_ms * 2).await;
    // `old` expired a whole time to live ago; `recent` expires now; `alive` lives on.
    let recent_token = granted(leases.acquire(recent, "", "node-a", 1).await.unwrap());
    granted(
        leases
            .acquire(alive, "", "node-a", ttl_ms * 10)
            .await
            .unwrap(),
    );
    pass(ttl_ms / 4).await;
    assert!(leases.forget_expired(ttl_ms / 2).await.unwrap() >= 1);
    assert!(
        !leases.is_current(old, "", old_token).await.unwrap(),
        "a grant expired longer ago than asked is forgotten"
    );
    assert!(
        leases.is_current(recent, "", recent_token).await.unwrap(),
        "one expired more recently is kept"
    );
    assert_eq!(
        leases.holder(alive, "").await.unwrap().as_deref(),
        Some("node-a"),
        "a live grant is kept"
    );
    let again = granted(leases.acquire(old, "", "node-b", ttl_ms).await.unwrap());
    assert!(
        again > old_token,
        "tokens still grow after a grant is forgotten"
    );
}

async fn a_renewed_grant_outlives_its_first_expiry(
    leases: &dyn Leases,
    ttl_ms: u64,
    pass: PassTime<'_>,
) {
    let id = Uuid::new_v4();
    let token = granted(leases.acquire(id, "", "node-a", ttl_ms).await.unwrap());
    pass(ttl_ms * 6 / 10).await;
    assert_eq!(
        leases.renew(id, "", token, ttl_ms).await.unwrap(),
        Renewal::Renewed
    );
    pass(ttl_ms * 6 / 10).await;
    assert!(
        matches!(
            leases.acquire(id, "", "node-b", ttl_ms).await.unwrap(),
            Acquired::Held { .. }
        ),
        "past the first expiry, the renewed grant is alive"
    );
}

async fn a_holder_asked_to_stop_learns_it_when_it_renews(leases: &dyn Leases, ttl_ms: u64) {
    let id = Uuid::new_v4();
    assert!(
        !leases.request_stop(id, "").await.unwrap(),
        "nobody holds a free upload"
    );
    let token = granted(leases.acquire(id, "", "node-a", ttl_ms).await.unwrap());
    assert_eq!(
        leases.renew(id, "", token, ttl_ms).await.unwrap(),
        Renewal::Renewed
    );
    assert!(leases.request_stop(id, "").await.unwrap());
    assert_eq!(
        leases.renew(id, "", token, ttl_ms).await.unwrap(),
        Renewal::StopRequested
    );
    leases.release(id, "", token).await.unwrap();
    let next = granted(leases.acquire(id, "", "node-b", ttl_ms).await.unwrap());
    assert_eq!(
        leases.renew(id, "", next, ttl_ms).await.unwrap(),
        Renewal::Renewed,
        "a stop asked of the last holder is not asked of the next"
    );
}

async fn a_released_grant_frees_the_upload_and_a_stale_release_frees_nothing(
    leases: &dyn Leases,
    ttl_ms: u64,
) {
    let id = Uuid::new_v4();
    let token = granted(leases.acquire(id, "", "node-a", ttl_ms).await.unwrap());
    leases.release(id, "", token).await.unwrap();
    assert!(!leases.is_current(id, "", token).await.unwrap());
    assert_eq!(leases.holder(id, "").await.unwrap(), None);
    assert_eq!(
        leases.renew(id, "", token, ttl_ms).await.unwrap(),
        Renewal::Lost
    );
    let next = granted(leases.acquire(id, "", "node-b", ttl_ms).await.unwrap());
    leases.release(id, "", token).await.unwrap();
    assert!(leases.is_current(id, "", next).await.unwrap());
}
