//! What a node is once it has joined: its name, a client acting as `system:node:NAME`, the
//! cluster CA, its current kubelet serving certificate and its podCIDR. The kubelet and the
//! kubelet API are built from this ([`crate::agent::start`] hands it out).
//!
//! Invariant: `serving` always holds a certificate the cluster CA signed for this node's
//! names; a renewal replaces it (watchers see the new one) without a restart.

use tokio::sync::watch;

/// A kubelet serving certificate and its key (PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert").finish_non_exhaustive()
    }
}

/// A joined node.
#[derive(Clone)]
pub struct NodeIdentity {
    pub name: String,
    /// Acts as `system:node:<name>` (the Node authorizer and NodeRestriction apply).
    pub client: kube::Client,
    /// The cluster CA bundle (PEM): what kubelet API clients' certificates chain to.
    pub ca_pem: String,
    pub serving: watch::Receiver<ServingCert>,
    /// The node's podCIDR once the server's node-ipam-controller has allocated it.
    pub pod_cidr: watch::Receiver<Option<String>>,
}
