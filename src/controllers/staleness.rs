//! Whether a cache has caught up with a controller's own writes (upstream's
//! `EndpointSliceTracker` and the Endpoints controller's `staleEndpointsTracker`). A sync
//! on a cache that lags its own last write decides on numbers it already changed: the
//! EndpointSlice controller would create a second slice (`generateName`), the Job
//! controller would replace pods it already counted, the Deployment controller would take
//! a stale annotation for a scaling event. Until the cache shows every object written at
//! (at least) the version written and none of those deleted, the key's sync waits.
//! Expectations the cache meets are dropped, so the tracker holds only writes in flight.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use parking_lot::Mutex;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Present, at this resourceVersion or later.
    AtLeast(u64),
    Gone,
}

/// Per service key: slice name → what the cache must show.
#[derive(Default)]
pub struct Staleness {
    expected: Mutex<HashMap<String, HashMap<String, Expect>>>,
}

fn rv(meta: &ObjectMeta) -> u64 {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Staleness {
    /// This controller wrote the object `meta` (as the API answered it).
    pub fn written(&self, key: &str, meta: &ObjectMeta) {
        let Some(name) = meta.name.clone() else {
            return;
        };
        self.expected
            .lock()
            .entry(key.to_string())
            .or_default()
            .insert(name, Expect::AtLeast(rv(meta)));
    }

    pub fn deleted(&self, key: &str, name: &str) {
        self.expected
            .lock()
            .entry(key.to_string())
            .or_default()
            .insert(name.to_string(), Expect::Gone);
    }

    /// Whether `cached` (the metadata of the key's objects in the cache) lags behind the
    /// writes; expectations the cache meets are dropped.
    pub fn is_stale<'a>(
        &self,
        key: &str,
        cached: impl IntoIterator<Item = &'a ObjectMeta>,
    ) -> bool {
        let cached: Vec<&ObjectMeta> = cached.into_iter().collect();
        let mut expected = self.expected.lock();
        let Some(want) = expected.get_mut(key) else {
            return false;
        };
        want.retain(|name, expect| {
            let found = cached
                .iter()
                .find(|m| m.name.as_deref() == Some(name.as_str()));
            match (*expect, found) {
                // Terminating counts as gone: a finalizer may hold it for as long as it likes.
                (Expect::Gone, None) => false,
                (Expect::Gone, Some(s)) if s.deletion_timestamp.is_some() => false,
                (Expect::AtLeast(v), Some(s)) => rv(s) < v,
                _ => true,
            }
        });
        let stale = !want.is_empty();
        if !stale {
            expected.remove(key);
        }
        stale
    }

    pub fn forget(&self, key: &str) {
        self.expected.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn slice(name: &str, rv: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            resource_version: Some(rv.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_cache_missing_a_created_or_holding_a_deleted_slice_is_stale() {
        let t = Staleness::default();
        assert!(!t.is_stale("ns/s", []));
        t.written("ns/s", &slice("s-abc", "10"));
        assert!(t.is_stale("ns/s", []));
        assert!(t.is_stale("ns/s", &[slice("s-abc", "9")]));
        assert!(!t.is_stale("ns/s", &[slice("s-abc", "10")]));
        t.deleted("ns/s", "s-abc");
        assert!(t.is_stale("ns/s", &[slice("s-abc", "10")]));
        assert!(!t.is_stale("ns/s", []));
        t.deleted("ns/s", "s-def");
        let terminating = ObjectMeta {
            deletion_timestamp: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
            ..slice("s-def", "11")
        };
        assert!(!t.is_stale("ns/s", &[terminating]));
    }
}
