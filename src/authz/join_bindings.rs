//! The ClusterRoleBindings that let a host join with a token, as `kubeadm init` creates
//! them (its `bootstraptoken/clusterinfo` and `node` phases) and `skiff server` reconciles
//! at every start with the rest of the bootstrap policy:
//! - `kubeadm:kubelet-bootstrap`: the token group may create and watch CSRs
//!   (`system:node-bootstrapper`);
//! - `kubeadm:node-autoapprove-bootstrap`: the token group's node-client CSRs are
//!   auto-approved (`...:certificatesigningrequests:nodeclient`);
//! - `kubeadm:node-autoapprove-certificate-rotation`: nodes' renewals of their own client
//!   certificate are auto-approved (`...:selfnodeclient`).
//!
//! The token group is kubeadm's `system:bootstrappers:kubeadm:default-node-token`: `skiff
//! token create` puts new tokens in it, and the server token authenticates in it too.
//!
//! Invariant: only groups are bound, never a user, so deleting a token (or changing the
//! server token) takes its rights away with it.

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// The group join tokens authenticate in.
pub const NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

fn binding(name: &str, role: &str, group: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([(
                super::bootstrap_policy::AUTOUPDATE.to_owned(),
                "true".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Group".into(),
            name: group.into(),
            namespace: None,
        }]),
    }
}

/// The three bindings.
pub fn bindings() -> Vec<ClusterRoleBinding> {
    vec![
        binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            NODE_TOKEN_GROUP,
        ),
        binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            NODE_TOKEN_GROUP,
        ),
        binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            "system:nodes",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bound_role_is_in_the_bootstrap_policy() {
        let policy = super::super::bootstrap_policy::policy().unwrap();
        for b in bindings() {
            assert!(
                policy
                    .cluster_roles
                    .iter()
                    .any(|r| r.metadata.name.as_deref() == Some(b.role_ref.name.as_str())),
                "{}",
                b.role_ref.name
            );
            assert!(policy
                .cluster_role_bindings
                .iter()
                .any(|p| p.metadata.name == b.metadata.name));
        }
    }
}
