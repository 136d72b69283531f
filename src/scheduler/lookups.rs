//! [`Lookups`] over the shared informers' caches: claims, volumes, namespaces and the
//! objects whose selectors define a pod's default spreading group.

use super::framework::Lookups;
use super::labels::{labels_of_pod, Labels};
use crate::informers::Informers;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController, Service,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;

pub struct InformerLookups {
    pvcs: Store<PersistentVolumeClaim>,
    pvs: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    namespaces: Store<Namespace>,
    services: Store<Service>,
    rcs: Store<ReplicationController>,
    rss: Store<ReplicaSet>,
    sss: Store<StatefulSet>,
}

impl InformerLookups {
    pub fn new(inf: &Informers) -> InformerLookups {
        InformerLookups {
            pvcs: inf.typed::<PersistentVolumeClaim>().store(),
            pvs: inf.typed::<PersistentVolume>().store(),
            classes: inf.typed::<StorageClass>().store(),
            namespaces: inf.typed::<Namespace>().store(),
            services: inf.typed::<Service>().store(),
            rcs: inf.typed::<ReplicationController>().store(),
            rss: inf.typed::<ReplicaSet>().store(),
            sss: inf.typed::<StatefulSet>().store(),
        }
    }
}

fn merge_selector(
    labels: &mut Labels,
    exprs: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement>,
    sel: &LabelSelector,
) {
    labels.extend(sel.match_labels.clone().unwrap_or_default());
    exprs.extend(sel.match_expressions.clone().unwrap_or_default());
}

impl Lookups for InformerLookups {
    fn pvc(&self, ns: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.pvcs.get(&ObjectRef::new(name).within(ns))
    }

    fn pv(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.pvs.get(&ObjectRef::new(name))
    }

    fn pvs(&self) -> Vec<Arc<PersistentVolume>> {
        self.pvs.state()
    }

    fn storage_class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get(&ObjectRef::new(name))
    }

    fn namespace_labels(&self, ns: &str) -> Option<Labels> {
        self.namespaces
            .get(&ObjectRef::new(ns))
            .map(|n| n.metadata.labels.clone().unwrap_or_default())
    }

    fn owner_selector(&self, pod: &Pod) -> Option<LabelSelector> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let pod_labels = labels_of_pod(pod);
        let mut labels = Labels::new();
        let mut exprs = Vec::new();
        for svc in self.services.state() {
            if svc.metadata.namespace.as_deref() != Some(ns) {
                continue;
            }
            let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
                continue;
            };
            if !sel.is_empty() && sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v)) {
                labels.extend(sel.clone());
            }
        }
        let owner = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true));
        if let Some(o) = owner {
            match (o.api_version.as_str(), o.kind.as_str()) {
                ("v1", "ReplicationController") => {
                    if let Some(sel) = self
                        .rcs
                        .get(&ObjectRef::new(&o.name).within(ns))
                        .and_then(|rc| rc.spec.as_ref()?.selector.clone())
                    {
                        labels.extend(sel);
                    }
                }
                ("apps/v1", "ReplicaSet") => {
                    if let Some(rs) = self.rss.get(&ObjectRef::new(&o.name).within(ns)) {
                        merge_selector(&mut labels, &mut exprs, &rs.spec.as_ref()?.selector);
                    }
                }
                ("apps/v1", "StatefulSet") => {
                    if let Some(ss) = self.sss.get(&ObjectRef::new(&o.name).within(ns)) {
                        merge_selector(&mut labels, &mut exprs, &ss.spec.as_ref()?.selector);
                    }
                }
                _ => {}
            }
        }
        if labels.is_empty() && exprs.is_empty() {
            return None;
        }
        Some(LabelSelector {
            match_labels: Some(labels),
            match_expressions: Some(exprs),
        })
    }
}
