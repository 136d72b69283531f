//! Authorization of `skiff server`: the authorizer the API server consults for every request,
//! as kube-apiserver's `--authorization-mode=Node,RBAC` behind its privileged-group check.
//!
//! - [`rbac`]: pure rule matching (`PolicyRule` against a request; coverage for escalation).
//! - [`index`]: subject → rules, rebuilt from the RBAC informer caches on every change.
//! - [`bootstrap_policy`]: upstream's default roles and bindings, reconciled at every start.
//! - [`ClusterAuthorizer`]: `system:masters` first (allowed everything, no lookup), then
//!   RBAC from the current index.
//!
//! Invariant: decisions never wait: they read the last built index (an `Arc` swapped in by
//! the rebuild task), so a change to a role or binding takes effect within one rebuild
//! (about a millisecond for a thousand bindings) of reaching the informer.

pub mod bootstrap_policy;
pub mod index;
pub mod rbac;

use crate::apiserver::{
    Authorizer, AuthzAttributes, Decision, SubjectRules, UserInfo, MASTERS_GROUP,
};
use crate::informers::{Informer, InformerError, Informers};
use futures::StreamExt;
use index::Index;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
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
}

impl ClusterAuthorizer {
    /// An authorizer over a fixed index (tests, benchmarks).
    pub fn with_index(index: Index) -> ClusterAuthorizer {
        ClusterAuthorizer {
            index: RwLock::new(Arc::new(index)),
        }
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
            Decision::Deny(String::new())
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
        SubjectRules {
            rules: self.index().rules_for(user, Some(namespace)),
            incomplete: false,
            evaluation_error: None,
        }
    }
}

/// The RBAC informers the index is built from.
#[derive(Clone)]
pub struct RbacInformers {
    cluster_roles: Informer<ClusterRole>,
    roles: Informer<Role>,
    cluster_bindings: Informer<ClusterRoleBinding>,
    bindings: Informer<RoleBinding>,
}

impl RbacInformers {
    pub fn new(informers: &Informers) -> RbacInformers {
        RbacInformers {
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
        Index::build(
            &self.cluster_roles.store().state(),
            &self.roles.store().state(),
            &self.cluster_bindings.store().state(),
            &self.bindings.store().state(),
        )
    }
}

/// The RBAC authorizer of a server and the task keeping its index current.
pub struct Rbac {
    pub authorizer: Arc<ClusterAuthorizer>,
    informers: RbacInformers,
}

impl Rbac {
    /// Waits for the RBAC caches and builds the first index.
    pub async fn start(informers: &Informers) -> Result<Rbac, InformerError> {
        let informers = RbacInformers::new(informers);
        informers.synced().await?;
        let authorizer = Arc::new(ClusterAuthorizer::with_index(informers.build()));
        Ok(Rbac {
            authorizer,
            informers,
        })
    }

    /// Rebuilds the index after every burst of role and binding changes, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), InformerError> {
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

#[cfg(test)]
mod tests;
