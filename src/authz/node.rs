//! The Node authorizer (upstream `plugin/pkg/auth/authorizer/node`): a kubelet, identified as
//! `system:node:NAME` in `system:nodes`, may read only the secrets, configmaps, PVCs, PVs and
//! resource claims that pods bound to its node reference and the VolumeAttachments for it,
//! list and watch only the pods bound to it, create tokens only for those pods'
//! service accounts, touch only its own Node and Lease, and otherwise only what upstream's
//! static `system:node` rules allow. (skiff adds: a node may get and update the local-path
//! volumes whose directories it holds.) Other identities get no opinion (RBAC decides).
//!
//! The graph is a set of reference counts `(kind, namespace, name) → node → count`, kept
//! incrementally from the pod, PVC and VolumeAttachment informers: each pod contributes the
//! objects it references to its node, each bound PVC adds its PV, each attachment its node.
//!
//! Invariant: the contribution of a pod is recorded with it, so an update or delete removes
//! exactly what the previous version added; counts never go negative or leak.

use super::rbac::{rule_allows, Request};
use crate::apiserver::{AuthzAttributes, Decision, UserInfo};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, PodSpec};
use k8s_openapi::api::rbac::v1::PolicyRule;
use std::collections::HashMap;

/// The kinds of object a node may be granted through its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Secret,
    ConfigMap,
    Pvc,
    ServiceAccount,
    ResourceClaim,
    Pod,
}

type Ref = (Kind, String, String);

/// Which objects each node's pods reference.
#[derive(Default, Debug)]
pub struct Graph {
    refs: HashMap<Ref, HashMap<String, usize>>,
    /// What each pod (ns, name) added, and to which node.
    pods: HashMap<(String, String), (String, Vec<Ref>)>,
    /// PVC (ns, name) → bound PV name.
    pvc_volume: HashMap<(String, String), String>,
    /// VolumeAttachment name → the node it attaches to.
    attachments: HashMap<String, String>,
    /// Local-path volume name → the node holding its directory.
    local_volumes: HashMap<String, String>,
}

/// The annotation the local-path provisioner names a volume's node with.
const LOCAL_PATH_NODE: &str = "local.path.provisioner/selected-node";

impl Graph {
    /// Records `pod` (replacing its previous version); unbound pods reference nothing.
    pub fn apply_pod(&mut self, pod: &Pod) {
        let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            return;
        };
        self.delete_pod(ns, name);
        let Some(spec) = &pod.spec else { return };
        let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) else {
            return;
        };
        let mut refs = references(ns, name, spec);
        refs.push((Kind::Pod, ns.clone(), name.clone()));
        for s in pod
            .status
            .iter()
            .flat_map(|s| s.resource_claim_statuses.iter().flatten())
        {
            if let Some(claim) = &s.resource_claim_name {
                refs.push((Kind::ResourceClaim, ns.clone(), claim.clone()));
            }
        }
        for r in &refs {
            *self
                .refs
                .entry(r.clone())
                .or_default()
                .entry(node.clone())
                .or_default() += 1;
        }
        self.pods
            .insert((ns.clone(), name.clone()), (node.clone(), refs));
    }

    pub fn delete_pod(&mut self, ns: &str, name: &str) {
        let Some((node, refs)) = self.pods.remove(&(ns.to_owned(), name.to_owned())) else {
            return;
        };
        for r in refs {
            if let Some(nodes) = self.refs.get_mut(&r) {
                if let Some(n) = nodes.get_mut(&node) {
                    *n -= 1;
                    if *n == 0 {
                        nodes.remove(&node);
                    }
                }
                if nodes.is_empty() {
                    self.refs.remove(&r);
                }
            }
        }
    }

    pub fn apply_pvc(&mut self, pvc: &PersistentVolumeClaim) {
        let (Some(ns), Some(name)) = (&pvc.metadata.namespace, &pvc.metadata.name) else {
            return;
        };
        let key = (ns.clone(), name.clone());
        match pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty())
        {
            Some(pv) => self.pvc_volume.insert(key, pv),
            None => self.pvc_volume.remove(&key),
        };
    }

    pub fn delete_pvc(&mut self, ns: &str, name: &str) {
        self.pvc_volume.remove(&(ns.to_owned(), name.to_owned()));
    }

    /// Records which node a VolumeAttachment is for (a node may read those of its own).
    pub fn apply_volume_attachment(&mut self, name: &str, node: &str) {
        self.attachments.insert(name.to_owned(), node.to_owned());
    }

    pub fn delete_volume_attachment(&mut self, name: &str) {
        self.attachments.remove(name);
    }

    /// Whether the VolumeAttachment `name` is for `node`.
    pub fn has_attachment(&self, node: &str, name: &str) -> bool {
        self.attachments.get(name).is_some_and(|n| n == node)
    }

    /// Whether a pod on `node` references the object.
    pub fn has(&self, node: &str, kind: Kind, ns: &str, name: &str) -> bool {
        self.refs
            .get(&(kind, ns.to_owned(), name.to_owned()))
            .is_some_and(|nodes| nodes.contains_key(node))
    }

    /// Whether a PVC used by a pod on `node` is bound to the PV `name`.
    /// Records the node of a local-path volume (its agent makes and removes the directory,
    /// so it may read and update that volume even when no pod of it uses the volume).
    pub fn apply_volume(&mut self, pv: &PersistentVolume) {
        let Some(name) = &pv.metadata.name else {
            return;
        };
        let node = pv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(LOCAL_PATH_NODE));
        match node {
            Some(n) => self.local_volumes.insert(name.clone(), n.clone()),
            None => self.local_volumes.remove(name),
        };
    }

    pub fn delete_volume(&mut self, name: &str) {
        self.local_volumes.remove(name);
    }

    /// Whether `name` is a local-path volume on `node`.
    pub fn has_local_volume(&self, node: &str, name: &str) -> bool {
        self.local_volumes.get(name).is_some_and(|n| n == node)
    }

    pub fn has_pv(&self, node: &str, name: &str) -> bool {
        self.pvc_volume
            .iter()
            .any(|((ns, pvc), pv)| pv == name && self.has(node, Kind::Pvc, ns, pvc))
    }
}

/// Everything a pod spec references by name in its own namespace.
fn references(ns: &str, pod: &str, spec: &PodSpec) -> Vec<Ref> {
    let mut out = Vec::new();
    let mut add = |k: Kind, n: &str| {
        if !n.is_empty() {
            out.push((k, ns.to_owned(), n.to_owned()));
        }
    };
    add(
        Kind::ServiceAccount,
        spec.service_account_name.as_deref().unwrap_or("default"),
    );
    for s in spec.image_pull_secrets.iter().flatten() {
        add(Kind::Secret, &s.name);
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) {
            add(Kind::Secret, s);
        }
        if let Some(c) = &v.config_map {
            add(Kind::ConfigMap, &c.name);
        }
        if let Some(p) = &v.persistent_volume_claim {
            add(Kind::Pvc, &p.claim_name);
        }
        if v.ephemeral.is_some() {
            // A generic ephemeral volume's claim is named after the pod and the volume.
            add(Kind::Pvc, &format!("{pod}-{}", v.name));
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                add(Kind::Secret, &s.name);
            }
            if let Some(c) = &src.config_map {
                add(Kind::ConfigMap, &c.name);
            }
        }
        let secret_ref = v
            .csi
            .as_ref()
            .and_then(|c| c.node_publish_secret_ref.as_ref())
            .map(|r| r.name.clone())
            .or_else(|| v.azure_file.as_ref().map(|a| a.secret_name.clone()))
            .or_else(|| {
                v.cephfs
                    .as_ref()
                    .and_then(|c| c.secret_ref.as_ref())
                    .map(|r| r.name.clone())
            })
            .or_else(|| {
                v.rbd
                    .as_ref()
                    .and_then(|c| c.secret_ref.as_ref())
                    .map(|r| r.name.clone())
            })
            .or_else(|| {
                v.iscsi
                    .as_ref()
                    .and_then(|c| c.secret_ref.as_ref())
                    .map(|r| r.name.clone())
            });
        if let Some(s) = secret_ref {
            add(Kind::Secret, &s);
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        for e in c.env_from.iter().flatten() {
            if let Some(s) = &e.secret_ref {
                add(Kind::Secret, &s.name);
            }
            if let Some(m) = &e.config_map_ref {
                add(Kind::ConfigMap, &m.name);
            }
        }
        for e in c.env.iter().flatten() {
            let Some(from) = &e.value_from else { continue };
            if let Some(s) = &from.secret_key_ref {
                add(Kind::Secret, &s.name);
            }
            if let Some(m) = &from.config_map_key_ref {
                add(Kind::ConfigMap, &m.name);
            }
        }
    }
    for c in spec.ephemeral_containers.iter().flatten() {
        for e in c.env_from.iter().flatten() {
            if let Some(s) = &e.secret_ref {
                add(Kind::Secret, &s.name);
            }
            if let Some(m) = &e.config_map_ref {
                add(Kind::ConfigMap, &m.name);
            }
        }
    }
    for c in spec.resource_claims.iter().flatten() {
        if let Some(n) = &c.resource_claim_name {
            add(Kind::ResourceClaim, n);
        }
    }
    out
}

/// The node name of a node identity (`system:node:NAME` in `system:nodes`).
pub fn node_name(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix("system:node:")?;
    user.in_group("system:nodes").then_some(name)
}

/// A node's decision: `Some(Allow)` or `Some(Deny(reason))` for a node identity, `None` for
/// anyone else.
pub fn authorize(
    graph: &Graph,
    node_rules: &[PolicyRule],
    user: &UserInfo,
    a: &AuthzAttributes<'_>,
) -> Option<Decision> {
    let node = node_name(user)?;
    if node.is_empty() {
        return Some(Decision::Deny(format!(
            "unknown node for user {:?}",
            user.name
        )));
    }
    let no = |why: &str| Decision::Deny(why.to_owned());
    let related = |kind: Kind| {
        let name = a.name.unwrap_or_default();
        if name.is_empty() {
            return no("No Object name found");
        }
        if graph.has(node, kind, a.namespace.unwrap_or_default(), name) {
            Decision::Allow
        } else {
            Decision::Deny(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    };
    let sub = a.subresource.unwrap_or_default();
    let read_namespaced = |kind: Kind| match a.verb {
        "get" | "list" | "watch" if !sub.is_empty() => no("cannot read subresource"),
        "get" | "list" | "watch" if a.namespace.unwrap_or_default().is_empty() => {
            no("can only read namespaced object of this type")
        }
        "get" | "list" | "watch" => related(kind),
        _ => no("can only read resources of this type"),
    };
    let get_only = |kind: Kind| match (a.verb, sub) {
        ("get", "") => related(kind),
        ("get", _) => no("cannot get subresource"),
        _ => no("can only get individual resources of this type"),
    };
    Some(match (a.group, a.resource) {
        ("", "secrets") => read_namespaced(Kind::Secret),
        ("", "configmaps") => read_namespaced(Kind::ConfigMap),
        ("", "persistentvolumeclaims") if sub == "status" => match a.verb {
            "update" | "patch" => related(Kind::Pvc),
            _ => no("can only get/update/patch this type"),
        },
        ("", "persistentvolumeclaims") => get_only(Kind::Pvc),
        ("", "persistentvolumes") => match (a.verb, sub, a.name) {
            ("get", "", Some(pv)) if graph.has_pv(node, pv) => Decision::Allow,
            ("get" | "update" | "patch", "", Some(pv)) if graph.has_local_volume(node, pv) => {
                Decision::Allow
            }
            ("get", "", _) => Decision::Deny(format!(
                "no relationship found between node '{node}' and this object"
            )),
            _ => no("can only get individual resources of this type"),
        },
        ("resource.k8s.io", "resourceclaims") => get_only(Kind::ResourceClaim),
        ("storage.k8s.io", "volumeattachments") => match (a.verb, sub, a.name) {
            ("get", "", Some(va)) if graph.has_attachment(node, va) => Decision::Allow,
            ("get", "", _) => Decision::Deny(format!(
                "no relationship found between node '{node}' and this object"
            )),
            _ => no("can only get individual resources of this type"),
        },
        ("", "serviceaccounts") => match (a.verb, sub) {
            ("create", "token") => related(Kind::ServiceAccount),
            ("create", _) => no("can only create token subresource of serviceaccount"),
            _ => no("can only create tokens for individual service accounts"),
        },
        ("coordination.k8s.io", "leases") => match a.verb {
            "get" | "create" | "update" | "patch" | "delete" => {
                if a.namespace != Some("kube-node-lease") {
                    no("can only access leases in the \"kube-node-lease\" system namespace")
                } else if a.verb != "create" && a.name != Some(node) {
                    no("can only access node lease with the same name as the requesting node")
                } else {
                    Decision::Allow
                }
            }
            _ => no("can only get, create, update, patch, or delete a node lease"),
        },
        ("", "nodes") => match (sub, a.verb) {
            ("", "create" | "update" | "patch") | ("status", "update" | "patch") => Decision::Allow,
            ("", "get" | "list" | "watch") => match a.name {
                Some(n) if n == node => Decision::Allow,
                None | Some("") => Decision::Deny(format!(
                    "node '{node}' cannot read all nodes, only its own Node object"
                )),
                Some(n) => Decision::Deny(format!(
                    "node '{node}' cannot read '{n}', only its own Node object"
                )),
            },
            _ => no(""),
        },
        ("", "pods") => match (sub, a.verb) {
            ("", "get") => related(Kind::Pod),
            // A node lists and watches only the pods bound to it (upstream's
            // AuthorizeNodeWithSelectors, GA in 1.34).
            ("", "list" | "watch") if selects_node(a.field_selector, node) => Decision::Allow,
            ("", "list" | "watch") if a.name.is_some_and(|n| !n.is_empty()) => related(Kind::Pod),
            ("", "list" | "watch") => {
                no("can only list/watch pods with spec.nodeName field selector")
            }
            ("", "create" | "delete") | ("status", "update" | "patch") | ("eviction", "create") => {
                Decision::Allow
            }
            _ => no(""),
        },
        _ => static_rules(node_rules, a),
    })
}

/// Whether a field selector requires `spec.nodeName` to be exactly `node`.
fn selects_node(selector: Option<&str>, node: &str) -> bool {
    selector
        .and_then(|s| crate::api::selector::FieldSelector::parse(s).ok())
        .is_some_and(|f| f.requires_exact_match("spec.nodeName") == Some(node))
}

fn static_rules(rules: &[PolicyRule], a: &AuthzAttributes<'_>) -> Decision {
    let req = Request::Resource {
        verb: a.verb,
        group: a.group,
        resource: a.resource,
        subresource: a.subresource,
        name: a.name,
    };
    if rules.iter().any(|r| rule_allows(r, &req)) {
        Decision::Allow
    } else {
        Decision::Deny(String::new())
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
