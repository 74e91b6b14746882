//! The outbound budget of this node: how many delivery attempts (each an outgoing connection, or a
//! message handed to the e-mail or SMS gateway) may be in flight at once, in all and per destination
//! host. Deliveries draw from it so that no number of subscriptions, and no endpoint that holds its
//! requests open, can take the file descriptors, memory or CPU that incoming requests need.
//!
//! Per node by design: each node bounds its own connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct DeliveryBudget {
    total: Arc<Semaphore>,
    per_host: usize,
    /// Only hosts with attempts in flight or waiting have an entry (see [`Slots`]'s drop).
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

/// Attempts a worker may have in flight, held until it drops them.
pub struct Slots {
    permits: Vec<(OwnedSemaphorePermit, OwnedSemaphorePermit)>,
    host: String,
    semaphore: Arc<Semaphore>,
    hosts: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Slots {
    pub fn count(&self) -> usize {
        self.permits.len()
    }

    /// Gives back all but `n` slots (a batch smaller than the slots taken for it).
    pub fn keep(&mut self, n: usize) {
        self.permits.truncate(n.max(1));
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        self.permits.clear();
        let mut hosts = self.hosts.lock().expect("delivery budget");
        // Nobody else holds or waits for this host's semaphore: forget the host.
        if Arc::strong_count(&self.semaphore) == 2 {
            hosts.remove(&self.host);
        }
    }
}

impl DeliveryBudget {
    pub fn new(total: usize, per_host: usize) -> DeliveryBudget {
        DeliveryBudget {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_host: per_host.max(1),
            hosts: Default::default(),
        }
    }

    /// Waits until at least one attempt to `host` may start, then takes up to `want` slots.
    /// The host's slot is waited for first, so a worker queued behind a saturated host holds
    /// nothing of the total that other hosts' deliveries could use.
    pub async fn acquire(&self, host: &str, want: usize) -> Slots {
        let semaphore = {
            let mut hosts = self.hosts.lock().expect("delivery budget");
            hosts
                .entry(host.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
                .clone()
        };
        let mut slots = Slots {
            // Grown once slots are granted: a worker queued behind a saturated host holds nothing.
            permits: Vec::new(),
            host: host.to_string(),
            semaphore,
            hosts: self.hosts.clone(),
        };
        let first_host = slots.semaphore.clone().acquire_owned().await;
        let first_total = self.total.clone().acquire_owned().await;
        // The semaphores are never closed.
        if let (Ok(h), Ok(t)) = (first_host, first_total) {
            slots.permits.push((h, t));
        }
        while slots.permits.len() < want {
            let Ok(h) = slots.semaphore.clone().try_acquire_owned() else {
                break;
            };
            let Ok(t) = self.total.clone().try_acquire_owned() else {
                break;
            };
            slots.permits.push((h, t));
        }
        slots
    }

    /// Attempts in flight now, in all (for metrics and tests).
    pub fn in_flight(&self, capacity: usize) -> usize {
        capacity.saturating_sub(self.total.available_permits())
    }

    /// Hosts with attempts in flight or waiting (for tests: the map does not grow without bound).
    pub fn hosts_tracked(&self) -> usize {
        self.hosts.lock().expect("delivery budget").len()
    }
}

/// The destination an endpoint's attempts count against: the URL's host, lowercased, or the
/// channel (`mailto`, `sms`) of a contact point, whose messages all go to one gateway.
pub fn destination(end_point: &str) -> String {
    let Some((scheme, rest)) = end_point.split_once("://") else {
        return end_point
            .split_once(':')
            .map_or(end_point, |(scheme, _)| scheme)
            .to_ascii_lowercase();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        scheme.to_ascii_lowercase()
    } else {
        host.to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn attempts_count_against_the_host_whatever_the_port_path_or_credentials() {
        assert_eq!(
            destination("https://Hooks.Example.com/a?b"),
            "hooks.example.com"
        );
        assert_eq!(destination("http://example.com:8080/x"), "example.com");
        assert_eq!(destination("http://u:p@example.com:1/x"), "example.com");
        assert_eq!(destination("http://[::1]:8080/x"), "::1");
        assert_eq!(destination("http://127.0.0.2"), "127.0.0.2");
        assert_eq!(destination("mailto:someone@example.com"), "mailto");
        assert_eq!(destination("sms:+4799999999"), "sms");
    }

    #[tokio::test]
    async fn a_host_gets_at_most_its_share_and_other_hosts_still_get_theirs() {
        let budget = DeliveryBudget::new(4, 2);
        let a = budget.acquire("a", 16).await;
        assert_eq!(a.count(), 2, "at most per_host slots for one host");
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.acquire("a", 1)).await;
        assert!(waiting.is_err(), "a saturated host waits");
        let b = budget.acquire("b", 16).await;
        assert_eq!(
            b.count(),
            2,
            "another host is not held up by the saturated one"
        );
        let c = tokio::time::timeout(Duration::from_millis(50), budget.acquire("c", 1)).await;
        assert!(c.is_err(), "the total bounds every host together");
        assert_eq!(budget.in_flight(4), 4);
        drop(a);
        let c = budget.acquire("c", 16).await;
        assert_eq!(c.count(), 2);
        let mut c = c;
        c.keep(1);
        assert_eq!(budget.in_flight(4), 3, "a slot given back is free at once");
        drop((b, c));
        assert_eq!(budget.in_flight(4), 0);
        assert_eq!(budget.hosts_tracked(), 0, "idle hosts are forgotten");
    }

    #[tokio::test]
    async fn a_worker_waiting_for_a_saturated_host_holds_nothing_of_the_total() {
        let budget = Arc::new(DeliveryBudget::new(2, 1));
        let held = budget.acquire("slow", 1).await;
        let queued = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.acquire("slow", 1).await.count() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let other = budget.acquire("fast", 1).await;
        assert_eq!(
            other.count(),
            1,
            "the queued worker took no slot of the total"
        );
        drop((held, other));
        assert_eq!(queued.await.unwrap(), 1);
    }
}
