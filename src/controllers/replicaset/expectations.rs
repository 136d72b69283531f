//! Creations and deletions a controller issued but has not yet seen in its pod informer
//! (upstream's `UIDTrackingControllerExpectations`).
//!
//! Invariant: while a key's expectations are unmet, its sync does not create or delete
//! pods, so a reconcile never acts twice on a cache that lags its own writes. Expectations
//! expire after [`TTL`] so a lost observation cannot stall a controller forever.

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Upstream's `ExpectationsTimeout`.
pub const TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Expected {
    /// Creations still to be observed.
    adds: i64,
    /// Names of pods whose deletion is still to be observed.
    deletes: HashSet<String>,
    since: Instant,
}

#[derive(Default)]
pub struct Expectations {
    by_key: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    /// Whether `key` may act: nothing outstanding, or the record expired.
    pub fn satisfied(&self, key: &str) -> bool {
        match self.by_key.lock().get(key) {
            None => true,
            Some(e) => (e.adds <= 0 && e.deletes.is_empty()) || e.since.elapsed() > TTL,
        }
    }

    /// Records `adds` creations about to be issued (replacing an expired or met record).
    pub fn expect_creations(&self, key: &str, adds: usize) {
        self.by_key.lock().insert(
            key.to_string(),
            Expected {
                adds: adds as i64,
                deletes: HashSet::new(),
                since: Instant::now(),
            },
        );
    }

    /// Records deletions of `names` about to be issued.
    pub fn expect_deletions(&self, key: &str, names: impl IntoIterator<Item = String>) {
        self.by_key.lock().insert(
            key.to_string(),
            Expected {
                adds: 0,
                deletes: names.into_iter().collect(),
                since: Instant::now(),
            },
        );
    }

    /// One creation was seen (or failed, so will never be seen).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.by_key.lock().get_mut(key) {
            e.adds -= 1;
        }
    }

    /// The deletion of `name` was seen (or failed).
    pub fn deletion_observed(&self, key: &str, name: &str) {
        if let Some(e) = self.by_key.lock().get_mut(key) {
            e.deletes.remove(name);
        }
    }

    pub fn forget(&self, key: &str) {
        self.by_key.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_waits_until_every_expected_creation_and_deletion_is_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/a"));
        e.expect_creations("ns/a", 2);
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        assert!(e.satisfied("ns/a"));

        e.expect_deletions("ns/a", ["p1".to_string(), "p2".to_string()]);
        e.deletion_observed("ns/a", "p1");
        e.deletion_observed("ns/a", "p1");
        assert!(!e.satisfied("ns/a"));
        e.deletion_observed("ns/a", "p2");
        assert!(e.satisfied("ns/a"));
        // Observations for keys without a record change nothing.
        e.creation_observed("ns/b");
        assert!(e.satisfied("ns/b"));
    }
}
