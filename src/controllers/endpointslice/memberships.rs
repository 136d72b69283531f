//! Which services a pod change concerns (upstream's `GetPodServiceMemberships` plus the
//! old/new comparison of its pod update handler): the services whose selector matches the
//! pod now, and those that matched it when last seen, so a relabelled or deleted pod is
//! taken out of the endpoints it left.

use super::pods::selected_by;
use crate::informers::Change;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::Store;
use std::collections::{BTreeSet, HashMap};

/// `namespace/name`.
pub fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Pod → the service keys it belonged to when last seen.
pub struct Memberships {
    services: Store<Service>,
    known: HashMap<String, BTreeSet<String>>,
}

impl Memberships {
    pub fn new(services: Store<Service>) -> Memberships {
        Memberships {
            services,
            known: HashMap::new(),
        }
    }

    /// The keys of the services to sync after `change`.
    pub fn pod_changed(&mut self, change: &Change<Pod>) -> BTreeSet<String> {
        let pod = change.object();
        let pod_key = key_of(&pod.metadata);
        let now: BTreeSet<String> = match change {
            Change::Deleted(_) => BTreeSet::new(),
            Change::Applied(_) => self
                .services
                .state()
                .iter()
                .filter(|s| selected_by(s, pod))
                .map(|s| key_of(&s.metadata))
                .collect(),
        };
        let before = if now.is_empty() {
            self.known.remove(&pod_key)
        } else {
            self.known.insert(pod_key, now.clone())
        };
        now.into_iter()
            .chain(before.into_iter().flatten())
            .collect()
    }
}
