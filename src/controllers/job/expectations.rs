//! What the Job controller has asked of the API and not yet seen in its pod cache: pods it
//! created, pods it deleted, finalizers it removed (upstream's expectations).
//!
//! Invariant: while a Job has unobserved creations or deletions it is not scaled again (the
//! cache would under- or over-count its pods), and a pod whose finalizer removal is not yet
//! observed is not counted again (its uid already left `uncountedTerminatedPods`). Entries
//! older than [`TIMEOUT`] are dropped, as upstream's, so a lost event cannot stall a Job.

use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Pending {
    /// Names of created pods.
    created: HashSet<String>,
    /// Uids of deleted pods.
    deleted: HashSet<String>,
    /// Uids of pods whose tracking finalizer was removed.
    unfinalized: HashSet<String>,
    since: Option<Instant>,
}

#[derive(Default)]
pub struct Expectations(Mutex<HashMap<String, Pending>>);

impl Expectations {
    pub fn created(&self, key: &str, pod: String) {
        let mut m = self.0.lock();
        let p = m.entry(key.to_owned()).or_default();
        p.created.insert(pod);
        p.since = Some(Instant::now());
    }

    pub fn deleted(&self, key: &str, uid: String) {
        let mut m = self.0.lock();
        let p = m.entry(key.to_owned()).or_default();
        p.deleted.insert(uid);
        p.since = Some(Instant::now());
    }

    pub fn unfinalized(&self, key: &str, uid: String) {
        let mut m = self.0.lock();
        let p = m.entry(key.to_owned()).or_default();
        p.unfinalized.insert(uid);
        p.since = Some(Instant::now());
    }

    pub fn forget(&self, key: &str) {
        self.0.lock().remove(key);
    }

    /// Drops what `pods` (the namespace's cached pods) show happened. Returns whether no
    /// creation or deletion is outstanding, and the uids whose finalizer removal is not yet
    /// seen.
    pub fn observe(&self, key: &str, pods: &[std::sync::Arc<Pod>]) -> (bool, HashSet<String>) {
        let mut m = self.0.lock();
        let Some(p) = m.get_mut(key) else {
            return (true, HashSet::new());
        };
        if p.since.is_some_and(|s| s.elapsed() > TIMEOUT) {
            m.remove(key);
            return (true, HashSet::new());
        }
        let by_uid: HashMap<&str, &Pod> = pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.as_deref()?, p.as_ref())))
            .collect();
        let names: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect();
        p.created.retain(|n| !names.contains(n.as_str()));
        p.deleted.retain(|u| {
            by_uid
                .get(u.as_str())
                .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
        });
        p.unfinalized.retain(|u| {
            by_uid
                .get(u.as_str())
                .is_some_and(|p| super::status::has_finalizer(p))
        });
        let satisfied = p.created.is_empty() && p.deleted.is_empty();
        let pending = p.unfinalized.clone();
        if satisfied && pending.is_empty() {
            m.remove(key);
        }
        (satisfied, pending)
    }
}
