//! Authorization of `skiff server`: the authorizer the API server consults for every request,
//! as kube-apiserver's `--authorization-mode=Node,RBAC` behind its privileged-group check.
//!
//! - [`rbac`]: pure rule matching (`PolicyRule` against a request; coverage for escalation).
//! - [`index`]: subject → rules, rebuilt from the RBAC informer caches on every change.
//! - [`bootstrap_policy`]: upstream's default roles and bindings, reconciled at every start.
//! - [`node`]: the Node authorizer's graph (what each node's pods reference) and decisions.
//! - [`ClusterAuthorizer`]: `system:masters` first (allowed everything, no lookup), then the
//!   Node authorizer for node identities, then RBAC from the current index.
//!
//! Invariant: decisions never wait: they read the last built index (an `Arc` swapped in by
//! the rebuild task), so a change to a role or binding takes effect within one rebuild
//! (about a millisecond for a thousand bindings) of reaching the informer.

pub mod bootstrap_policy;
pub mod index;
pub mod join_bindings;
pub mod node;
pub mod rbac;

use crate::apiserver::{
    Authorizer, AuthzAttributes, Decision, SubjectRules, UserInfo, MASTERS_GROUP,
};
use crate::informers::{Informer, InformerError, Informers};
use futures::StreamExt;
use index::Index;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use parking_lot::RwLock;
use rbac::Request;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The API server's privileged loopback identity (in `system:masters`), as upstream's.
pub const LOOPBACK_USER: &str = "system:apiserver";

/// The identity an in-process controller acts as: the service account `kube-system/<name>`
/// (upstream's `--use-service-account-credentials`), which the bootstrap policy binds to
/// `system:controller:<name>`.
pub fn controller_identity(name: &str) -> UserInfo {
    UserInfo::new(
        &format!("system:serviceaccount:kube-system:{name}"),
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            crate::apiserver::AUTHENTICATED_GROUP,
        ],
    )
}

/// The server's authorizer: privileged groups, then RBAC.
pub struct ClusterAuthorizer {
    index: RwLock<Arc<Index>>,
    node_graph: RwLock<node::Graph>,
    /// Upstream's static `system:node` rules, for what the graph does not subdivide.
    node_rules: Vec<PolicyRule>,
}

impl ClusterAuthorizer {
    /// An authorizer over a fixed index (tests, benchmarks), with `node_rules` for nodes.
    pub fn with_index(index: Index) -> ClusterAuthorizer {
        ClusterAuthorizer {
            index: RwLock::new(Arc::new(index)),
            node_graph: RwLock::new(node::Graph::default()),
            node_rules: Vec::new(),
        }
    }

    /// The Node authorizer's decision, when `user` is a node and it allows the request;
    /// otherwise the reason it gave (upstream's union authorizer then asks RBAC).
    fn node_decision(&self, user: &UserInfo, attrs: &AuthzAttributes<'_>) -> Option<Decision> {
        if !user.name.starts_with("system:node:") {
            return None;
        }
        node::authorize(&self.node_graph.read(), &self.node_rules, user, attrs)
    }

    fn index(&self) -> Arc<Index> {
        self.index.read().clone()
    }
}

impl Authorizer for ClusterAuthorizer {
    fn authorize(&self, user: &UserInfo, attrs: &AuthzAttributes<'_>) -> Decision {
        if user.in_group(MASTERS_GROUP) {
            return Decision::Allow;
        }
        let node_reason = match self.node_decision(user, attrs) {
            Some(Decision::Allow) => return Decision::Allow,
            Some(Decision::Deny(reason)) => reason,
            None => String::new(),
        };
        let req = Request::Resource {
            verb: attrs.verb,
            group: attrs.group,
            resource: attrs.resource,
            subresource: attrs.subresource,
            name: attrs.name,
        };
        if self.index.read().allows(user, attrs.namespace, &req) {
            Decision::Allow
        } else {
            Decision::Deny(node_reason)
        }
    }

    fn authorize_non_resource(&self, user: &UserInfo, verb: &str, path: &str) -> Decision {
        if user.in_group(MASTERS_GROUP) {
            return Decision::Allow;
        }
        if self
            .index
            .read()
            .allows(user, None, &Request::NonResource { verb, path })
        {
            Decision::Allow
        } else {
            Decision::Deny(String::new())
        }
    }

    fn rules_for(&self, user: &UserInfo, namespace: &str) -> SubjectRules {
        if user.in_group(MASTERS_GROUP) {
            let all = || Some(vec!["*".to_owned()]);
            return SubjectRules {
                rules: vec![
                    PolicyRule {
                        verbs: vec!["*".into()],
                        api_groups: all(),
                        resources: all(),
                        ..PolicyRule::default()
                    },
                    PolicyRule {
                        verbs: vec!["*".into()],
                        non_resource_urls: all(),
                        ..PolicyRule::default()
                    },
                ],
                incomplete: false,
                evaluation_error: None,
            };
        }
        let is_node = node::node_name(user).is_some();
        SubjectRules {
            rules: self.index().rules_for(user, Some(namespace)),
            incomplete: is_node,
            evaluation_error: is_node
                .then(|| "node authorizer does not support user rule resolution".to_owned()),
        }
    }
}

/// The RBAC informers the index is built from.
#[derive(Clone)]
pub struct RbacInformers {
    /// The bootstrap policy written at start: what a lagging cache does not hold yet.
    policy: Arc<bootstrap_policy::Policy>,
    cluster_roles: Informer<ClusterRole>,
    roles: Informer<Role>,
    cluster_bindings: Informer<ClusterRoleBinding>,
    bindings: Informer<RoleBinding>,
}

impl RbacInformers {
    pub fn new(informers: &Informers, policy: Arc<bootstrap_policy::Policy>) -> RbacInformers {
        RbacInformers {
            policy,
            cluster_roles: informers.typed(),
            roles: informers.typed(),
            cluster_bindings: informers.typed(),
            bindings: informers.typed(),
        }
    }

    /// Waits for the first list of all four.
    pub async fn synced(&self) -> Result<(), InformerError> {
        self.cluster_roles.synced().await?;
        self.roles.synced().await?;
        self.cluster_bindings.synced().await?;
        self.bindings.synced().await
    }

    fn build(&self) -> Index {
        let p = &self.policy;
        Index::build(
            &with_policy(self.cluster_roles.store().state(), &p.cluster_roles),
            &with_policy(self.roles.store().state(), &p.roles),
            &with_policy(
                self.cluster_bindings.store().state(),
                &p.cluster_role_bindings,
            ),
            &with_policy(self.bindings.store().state(), &p.role_bindings),
        )
    }
}

/// The cached objects, plus the policy objects the cache does not hold (yet): the policy was
/// written just before the caches started, and a decision must never miss a bootstrap grant
/// because a cache lags. A cached object always wins over the policy's version (user edits
/// of `autoupdate: "false"` roles).
fn with_policy<K>(mut cached: Vec<Arc<K>>, policy: &[K]) -> Vec<Arc<K>>
where
    K: kube::Resource + Clone,
{
    let have: std::collections::HashSet<(Option<String>, Option<String>)> = cached
        .iter()
        .map(|k| (k.meta().namespace.clone(), k.meta().name.clone()))
        .collect();
    for k in policy {
        if !have.contains(&(k.meta().namespace.clone(), k.meta().name.clone())) {
            cached.push(Arc::new(k.clone()));
        }
    }
    cached
}

/// The RBAC authorizer of a server and the task keeping its index current.
pub struct Rbac {
    pub authorizer: Arc<ClusterAuthorizer>,
    informers: RbacInformers,
    pods: Informer<Pod>,
    claims: Informer<PersistentVolumeClaim>,
    attachments: Informer<VolumeAttachment>,
    volumes: Informer<PersistentVolume>,
}

impl Rbac {
    /// Waits for the RBAC caches and builds the first index.
    /// The node graph fills from the pod and PVC informers as they list (nodes are not
    /// waited for: until then they get their static rules only).
    pub async fn start(
        shared: &Informers,
        policy: Arc<bootstrap_policy::Policy>,
    ) -> Result<Rbac, InformerError> {
        let node_rules = policy.node_rules();
        let expected_cluster_roles = policy.cluster_roles.len();
        let informers = RbacInformers::new(shared, policy);
        informers.synced().await?;
        // The policy was written before the informers started, so their first lists hold
        // it; should a cache still lag (a relist racing the writes), wait for it briefly
        // rather than serve with a partial index.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while informers.cluster_roles.store().state().len() < expected_cluster_roles
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let mut authorizer = ClusterAuthorizer::with_index(informers.build());
        authorizer.node_rules = node_rules;
        Ok(Rbac {
            authorizer: Arc::new(authorizer),
            informers,
            pods: shared.typed(),
            claims: shared.typed(),
            attachments: shared.typed(),
            volumes: shared.typed(),
        })
    }

    /// Rebuilds the index after every burst of role and binding changes, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), InformerError> {
        let graph = feed_node_graph(
            self.authorizer.clone(),
            self.pods.clone(),
            self.claims.clone(),
            self.attachments.clone(),
            self.volumes.clone(),
        );
        tokio::select! {
            r = self.rebuild_index(shutdown) => r,
            r = graph => r,
        }
    }

    async fn rebuild_index(&self, shutdown: CancellationToken) -> Result<(), InformerError> {
        let i = &self.informers;
        let mut changes = futures::stream::select_all([
            i.cluster_roles.subscribe().map(|_| ()).boxed(),
            i.roles.subscribe().map(|_| ()).boxed(),
            i.cluster_bindings.subscribe().map(|_| ()).boxed(),
            i.bindings.subscribe().map(|_| ()).boxed(),
        ]);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = changes.next() => {
                    if next.is_none() {
                        return Err(InformerError::StreamEnded("the RBAC informers".into()));
                    }
                }
            }
            // Coalesce what is already queued: one rebuild per burst.
            while let Some(Some(())) = futures::FutureExt::now_or_never(changes.next()) {}
            let index = Arc::new(self.informers.build());
            *self.authorizer.index.write() = index;
        }
    }
}

/// Keeps the Node authorizer's graph in step with pods and PVCs.
async fn feed_node_graph(
    authorizer: Arc<ClusterAuthorizer>,
    pods: Informer<Pod>,
    claims: Informer<PersistentVolumeClaim>,
    attachments: Informer<VolumeAttachment>,
    volumes: Informer<PersistentVolume>,
) -> Result<(), InformerError> {
    use crate::informers::Change;
    enum Ev {
        Pod(Change<Pod>),
        Pvc(Change<PersistentVolumeClaim>),
        Va(Change<VolumeAttachment>),
        Pv(Change<PersistentVolume>),
    }
    let mut events = futures::stream::select_all([
        pods.subscribe().map(Ev::Pod).boxed(),
        claims.subscribe().map(Ev::Pvc).boxed(),
        attachments.subscribe().map(Ev::Va).boxed(),
        volumes.subscribe().map(Ev::Pv).boxed(),
    ]);
    while let Some(ev) = events.next().await {
        let mut g = authorizer.node_graph.write();
        let name = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            (
                m.namespace.clone().unwrap_or_default(),
                m.name.clone().unwrap_or_default(),
            )
        };
        match ev {
            Ev::Pod(Change::Applied(p)) => g.apply_pod(&p),
            Ev::Pod(Change::Deleted(p)) => {
                let (ns, n) = name(&p.metadata);
                g.delete_pod(&ns, &n);
            }
            Ev::Pvc(Change::Applied(c)) => g.apply_pvc(&c),
            Ev::Pvc(Change::Deleted(c)) => {
                let (ns, n) = name(&c.metadata);
                g.delete_pvc(&ns, &n);
            }
            Ev::Va(Change::Applied(va)) => {
                g.apply_volume_attachment(&name(&va.metadata).1, &va.spec.node_name)
            }
            Ev::Va(Change::Deleted(va)) => g.delete_volume_attachment(&name(&va.metadata).1),
            Ev::Pv(Change::Applied(pv)) => g.apply_volume(&pv),
            Ev::Pv(Change::Deleted(pv)) => g.delete_volume(&name(&pv.metadata).1),
        }
    }
    Err(InformerError::StreamEnded(
        "the node authorizer's pods and PVCs".into(),
    ))
}

#[cfg(test)]
mod tests;
