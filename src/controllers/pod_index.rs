//! Pods by the uid of their controller, and each namespace's orphans (upstream's
//! `PodControllerUIDIndex` with `FilterPodsByOwner`): a controller's sync reads only the pods
//! it owns or could adopt, not every pod of the cluster (the ReplicaSet, ReplicationController,
//! DaemonSet and StatefulSet controllers keep one each). With one ReplicaSet of 3,000 pods
//! every sync scanned all 3,000 (~5% of the server's CPU in `bench.sh scale`).
//!
//! The index is kept by the controller's own change feed and holds the pods as the feed
//! delivered them (the informer's shared `Arc`s, so no copies): a sync sees the pods as of
//! the last change its controller was told of. A change not yet fed is at most one sync
//! behind, since feeding it queues the sync again (a controller's own creations and
//! deletions are covered by its expectations). Holding the pods rather than their names
//! spares every sync a key copy and a store lookup per pod.

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{ObjectRef, Store};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use super::controller_utils::controller_ref;
use crate::informers::Change;

/// Where a pod is indexed.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Slot {
    /// Controlled by the object with this uid.
    Owner(String),
    /// Without a controller, in this namespace.
    Orphan(String),
}

fn slot_of(pod: &Pod) -> Slot {
    match controller_ref(&pod.metadata) {
        Some(r) => Slot::Owner(r.uid.clone()),
        None => Slot::Orphan(pod.metadata.namespace.clone().unwrap_or_default()),
    }
}

#[derive(Default)]
struct Inner {
    pods: HashMap<Slot, HashMap<ObjectRef<Pod>, Arc<Pod>>>,
    slot: HashMap<ObjectRef<Pod>, Slot>,
}

/// See the module documentation.
#[derive(Default)]
pub struct PodsByController {
    inner: Mutex<Inner>,
}

impl PodsByController {
    /// An index of the pods in `store` now.
    pub fn seeded(store: &Store<Pod>) -> Arc<Self> {
        let index = Arc::new(Self::default());
        for pod in store.state() {
            index.applied(&pod);
        }
        index
    }

    /// Records a change from the pods' feed. A controller's feed calls this before it
    /// queues the keys the change concerns, so their syncs find the pod.
    pub fn observe(&self, change: &Change<Pod>) {
        match change {
            Change::Applied(p) => self.applied(p),
            Change::Deleted(p) => self.deleted(p),
        }
    }

    /// Records a pod created or changed.
    fn applied(&self, pod: &Arc<Pod>) {
        let key = ObjectRef::from_obj(pod.as_ref());
        let slot = slot_of(pod);
        let mut inner = self.inner.lock();
        if inner.slot.get(&key) == Some(&slot) {
            if let Some(held) = inner.pods.get_mut(&slot).and_then(|s| s.get_mut(&key)) {
                *held = pod.clone();
                return;
            }
        }
        if let Some(old) = inner.slot.insert(key.clone(), slot.clone()) {
            remove_from(&mut inner.pods, &old, &key);
        }
        inner.pods.entry(slot).or_default().insert(key, pod.clone());
    }

    /// Records a pod deleted.
    fn deleted(&self, pod: &Pod) {
        let key = ObjectRef::from_obj(pod);
        let mut inner = self.inner.lock();
        if let Some(old) = inner.slot.remove(&key) {
            remove_from(&mut inner.pods, &old, &key);
        }
    }

    /// The pods controlled by `owner_uid`, then the orphans of `namespace` (upstream's
    /// `FilterPodsByOwner` with orphans included), as last fed.
    pub fn owned_or_orphaned(&self, owner_uid: &str, namespace: &str) -> Vec<Arc<Pod>> {
        let inner = self.inner.lock();
        let owned = inner.pods.get(&Slot::Owner(owner_uid.to_string()));
        let orphans = inner.pods.get(&Slot::Orphan(namespace.to_string()));
        owned
            .into_iter()
            .chain(orphans)
            .flatten()
            .filter(|(k, _)| k.namespace.as_deref().unwrap_or_default() == namespace)
            .map(|(_, pod)| pod.clone())
            .collect()
    }
}

fn remove_from(
    pods: &mut HashMap<Slot, HashMap<ObjectRef<Pod>, Arc<Pod>>>,
    slot: &Slot,
    key: &ObjectRef<Pod>,
) {
    if let Some(set) = pods.get_mut(slot) {
        set.remove(key);
        if set.is_empty() {
            pods.remove(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;

    fn pod(ns: &str, name: &str, owner: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: "rs".into(),
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        let mut v: Vec<String> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_sync_sees_its_own_pods_and_its_namespaces_orphans_as_they_move() {
        let mut writer = Writer::<Pod>::default();
        let store = writer.as_reader();
        let pods = [
            pod("a", "mine", Some("u1")),
            pod("a", "theirs", Some("u2")),
            pod("a", "orphan", None),
            pod("b", "orphan-elsewhere", None),
            // Another namespace's pod with the same controller uid (never so upstream, but
            // a sync must not reach across namespaces).
            pod("b", "mine-elsewhere", Some("u1")),
        ];
        for p in &pods {
            writer.apply_watcher_event(&watcher::Event::Apply(p.clone()));
        }
        let index = PodsByController::seeded(&store);
        assert_eq!(
            names(&index.owned_or_orphaned("u1", "a")),
            ["mine", "orphan"]
        );

        // Adopted: no longer an orphan; released: an orphan again.
        let adopted = Arc::new(pod("a", "orphan", Some("u2")));
        index.applied(&adopted);
        let released = Arc::new(pod("a", "mine", None));
        index.applied(&released);
        assert_eq!(names(&index.owned_or_orphaned("u1", "a")), ["mine"]);
        assert_eq!(
            names(&index.owned_or_orphaned("u2", "a")),
            ["mine", "orphan", "theirs"]
        );

        // A change within the same slot replaces the pod a sync is given.
        let mut relabeled = pod("a", "theirs", Some("u2"));
        relabeled.metadata.labels = Some([("v".to_string(), "2".to_string())].into());
        index.applied(&Arc::new(relabeled));
        let theirs = index.owned_or_orphaned("u2", "a");
        let theirs = theirs
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some("theirs"))
            .unwrap();
        assert!(theirs.metadata.labels.is_some());

        index.deleted(&released);
        assert_eq!(names(&index.owned_or_orphaned("u1", "a")), [""; 0]);
        assert!(index.inner.lock().slot.len() == 4);
        assert!(!index
            .inner
            .lock()
            .pods
            .contains_key(&Slot::Orphan("a".into())));
    }
}
