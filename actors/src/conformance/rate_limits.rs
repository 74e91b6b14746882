//! The rate-limits port's rules.

use super::t0;
use crate::ports::RateLimits;
use std::time::Duration;

/// Checks the rolling window on a fresh adapter.
pub async fn rate_limits_suite(limits: &dyn RateLimits) {
    let minute = Duration::from_secs(60);
    let at = |s: i64| t0() + chrono::Duration::seconds(s);
    let take = |client: &'static str, s: i64| limits.take(client, 2, minute, at(s));

    let first = take("a", 0).await.unwrap();
    assert!(first.allowed, "a client's first call is allowed");
    assert_eq!((first.limit, first.remaining), (2, 1));
    assert_eq!(first.reset, at(60), "its slot frees a window after it");
    assert!(
        take("a", 10).await.unwrap().allowed,
        "a second call fits the limit"
    );
    let refused = take("a", 20).await.unwrap();
    assert!(
        !refused.allowed,
        "a third call inside the window is refused"
    );
    assert_eq!(refused.remaining, 0);
    assert_eq!(
        refused.reset,
        at(60),
        "the reset is when the oldest call leaves the window"
    );
    assert_eq!(refused.retry_after(at(20)), 40);
    let other = take("b", 20).await.unwrap();
    assert!(other.allowed, "another client has its own window");
    assert_eq!(other.remaining, 1);
    let refused_again = take("a", 59).await.unwrap();
    assert!(
        !refused_again.allowed,
        "a refused call does not count, yet the window still holds two"
    );
    let freed = take("a", 60).await.unwrap();
    assert!(freed.allowed, "a call exactly a window old has left it");
    assert_eq!(
        freed.reset,
        at(70),
        "the oldest call counted now is the one at 10 s"
    );
    assert!(
        !take("a", 61).await.unwrap().allowed,
        "the window is full again"
    );
    let later = take("a", 1_000).await.unwrap();
    assert!(
        later.allowed && later.remaining == 1,
        "after a quiet window everything is free again"
    );
}
