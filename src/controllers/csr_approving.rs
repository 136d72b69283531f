//! CSR auto-approval (kube-controller-manager's `csrapproving`, the SubjectAccessReview
//! approver): a `kubernetes.io/kube-apiserver-client-kubelet` request for a node client
//! certificate is approved when its requester may `create` `certificatesigningrequests/
//! selfnodeclient` (a node renewing its own certificate: requester `system:node:NAME` asking
//! for CN `system:node:NAME`) or `certificatesigningrequests/nodeclient` (bootstrap tokens,
//! granted through `system:certificates.k8s.io:certificatesigningrequests:nodeclient`).
//!
//! Kubelet serving certificates (`kubernetes.io/kubelet-serving`): upstream leaves their
//! approval to an external approver; here (as k3s signs them itself) a request is approved
//! when its requester is the node `system:node:NAME` (in `system:nodes`) asking for
//! CN `system:node:NAME` and only names its Node has: DNS names among the node name and its
//! Hostname/InternalDNS/ExternalDNS addresses, IPs among its InternalIP/ExternalIP
//! addresses ([`serving_request_fits_node`]). A request made before its Node shows the
//! addresses is looked at again with backoff.
//!
//! Invariant: client certificates are the authorizer's decision, asked through a
//! SubjectAccessReview for the requester stamped in the CSR's spec; serving certificates
//! are approved only for the requesting node's own names; nothing else is approved, and
//! nothing is denied.

use super::csr_signing::{
    has_condition, validate_kubelet_client, validate_kubelet_serving, KUBELET_CLIENT,
    KUBELET_SERVING,
};
use super::{run_on_informer, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::informers::Change;
use crate::pki::csr;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const WORKERS: usize = 2;

/// One kind of request this approver recognises, and the permission that approves it.
struct Recognizer {
    subresource: &'static str,
    message: &'static str,
    recognize: fn(&CertificateSigningRequest, &csr::CsrInfo) -> bool,
}

fn is_node_client(csr: &CertificateSigningRequest, info: &csr::CsrInfo) -> bool {
    csr.spec.signer_name == KUBELET_CLIENT
        && validate_kubelet_client(info, csr.spec.usages.as_deref().unwrap_or_default()).is_ok()
}

fn is_self_node_client(csr: &CertificateSigningRequest, info: &csr::CsrInfo) -> bool {
    is_node_client(csr, info) && csr.spec.username.as_deref() == Some(info.common_name.as_str())
}

const RECOGNIZERS: [Recognizer; 2] = [
    Recognizer {
        subresource: "selfnodeclient",
        message: "Auto approving self kubelet client certificate after SubjectAccessReview.",
        recognize: is_self_node_client,
    },
    Recognizer {
        subresource: "nodeclient",
        message: "Auto approving kubelet client certificate after SubjectAccessReview.",
        recognize: is_node_client,
    },
];

pub struct CsrApprovingController {
    ctx: Context,
    queue: WorkQueue<String>,
}

fn undecided(csr: &CertificateSigningRequest) -> bool {
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    !issued && !has_condition(csr, "Approved") && !has_condition(csr, "Denied")
}

impl CsrApprovingController {
    pub fn new(ctx: Context) -> CsrApprovingController {
        CsrApprovingController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let informer = self.ctx.informers.typed::<CertificateSigningRequest>();
        let nodes = self.ctx.informers.typed::<Node>();
        let reconciler = Arc::new(Reconcile {
            client: self.ctx.client_for("certificate-controller"),
            store: informer.store(),
            nodes: nodes.store(),
        });
        let key_of = |c: &Change<CertificateSigningRequest>| match c {
            Change::Applied(csr)
                if (csr.spec.signer_name == KUBELET_CLIENT
                    || csr.spec.signer_name == KUBELET_SERVING)
                    && undecided(csr) =>
            {
                csr.metadata.name.clone()
            }
            _ => None,
        };
        // Shutdown also ends the wait for the informer's first list.
        let stop = shutdown.clone();
        tokio::select! {
            r = run_on_informer(informer, key_of, reconciler, self.queue, WORKERS, shutdown) => r,
            _ = stop.cancelled() => Ok(()),
        }
    }
}

struct Reconcile {
    client: kube::Client,
    store: kube::runtime::reflector::Store<CertificateSigningRequest>,
    nodes: kube::runtime::reflector::Store<Node>,
}

/// Whether a kubelet-serving request may be approved for its requester's Node (`None`
/// when the Node is not known yet); the error says why not.
pub fn serving_request_fits_node(
    csr: &CertificateSigningRequest,
    info: &csr::CsrInfo,
    node: Option<&Node>,
) -> Result<(), String> {
    let spec = &csr.spec;
    validate_kubelet_serving(info, spec.usages.as_deref().unwrap_or_default())?;
    let user = spec.username.as_deref().unwrap_or_default();
    let Some(name) = user.strip_prefix("system:node:") else {
        return Err(format!("requester {user:?} is not a node"));
    };
    if !spec.groups.iter().flatten().any(|g| g == "system:nodes") {
        return Err(format!("requester {user:?} is not in system:nodes"));
    }
    if info.common_name != user {
        return Err(format!(
            "common name {:?} is not the requester {user:?}",
            info.common_name
        ));
    }
    let Some(node) = node else {
        return Err(format!("node {name:?} is not registered yet"));
    };
    let addresses = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .cloned()
        .unwrap_or_default();
    let of = |kinds: &[&str]| -> Vec<String> {
        addresses
            .iter()
            .filter(|a| kinds.contains(&a.type_.as_str()))
            .map(|a| a.address.clone())
            .collect()
    };
    let mut dns = of(&["Hostname", "InternalDNS", "ExternalDNS"]);
    dns.push(name.to_owned());
    let ips = of(&["InternalIP", "ExternalIP"]);
    if let Some(d) = info.dns_names.iter().find(|d| !dns.contains(d)) {
        return Err(format!("DNS name {d:?} is not an address of node {name:?}"));
    }
    let same_ip =
        |a: &str, b: &str| match (a.parse::<std::net::IpAddr>(), b.parse::<std::net::IpAddr>()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        };
    if let Some(ip) = info
        .ip_addresses
        .iter()
        .find(|ip| !ips.iter().any(|n| same_ip(ip, n)))
    {
        return Err(format!(
            "IP address {ip} is not an address of node {name:?}"
        ));
    }
    Ok(())
}

impl Reconcile {
    /// Asks the authorizer whether the CSR's requester may create `subresource`.
    async fn allowed(
        &self,
        csr: &CertificateSigningRequest,
        subresource: &str,
    ) -> Result<bool, ControllerError> {
        let spec = &csr.spec;
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: spec.username.clone(),
                uid: spec.uid.clone(),
                groups: spec.groups.clone(),
                extra: spec.extra.clone(),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("certificates.k8s.io".into()),
                    resource: Some("certificatesigningrequests".into()),
                    verb: Some("create".into()),
                    subresource: Some(subresource.into()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &sar)
            .await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

impl Reconcile {
    async fn approve(
        &self,
        name: &str,
        csr: &CertificateSigningRequest,
        message: &str,
    ) -> Result<(), ControllerError> {
        let mut approved = csr.clone();
        approved
            .status
            .get_or_insert_with(Default::default)
            .conditions
            .get_or_insert_with(Vec::new)
            .push(CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                reason: Some("AutoApproved".into()),
                message: Some(message.into()),
                last_update_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
                last_transition_time: None,
            });
        Api::<CertificateSigningRequest>::all(self.client.clone())
            .replace_subresource("approval", name, &PostParams::default(), &approved)
            .await?;
        Ok(())
    }

    async fn reconcile_serving(
        &self,
        name: &str,
        csr: &CertificateSigningRequest,
        info: &csr::CsrInfo,
    ) -> Result<Action, ControllerError> {
        let node_name = csr
            .spec
            .username
            .as_deref()
            .and_then(|u| u.strip_prefix("system:node:"))
            .unwrap_or_default();
        let node = (!node_name.is_empty())
            .then(|| {
                self.nodes
                    .get(&kube::runtime::reflector::ObjectRef::new(node_name))
            })
            .flatten();
        match serving_request_fits_node(csr, info, node.as_deref()) {
            Ok(()) => {
                self.approve(
                    name,
                    csr,
                    "Auto approving kubelet serving certificate for the node's own names.",
                )
                .await?;
                Ok(Action::Done)
            }
            // The Node may not show its addresses yet: look again.
            Err(why) if node.is_none() || why.contains("is not an address") => {
                tracing::debug!(csr = %name, reason = %why, "kubelet serving csr not approved yet");
                Ok(Action::Backoff)
            }
            Err(why) => {
                tracing::info!(csr = %name, reason = %why, "kubelet serving csr not approved");
                Ok(Action::Done)
            }
        }
    }
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "csrapproving";

    async fn reconcile(&self, name: &String) -> Result<Action, ControllerError> {
        let Some(csr) = self
            .store
            .get(&kube::runtime::reflector::ObjectRef::new(name))
        else {
            return Ok(Action::Done);
        };
        if !undecided(&csr) {
            return Ok(Action::Done);
        }
        let Ok(info) = csr::parse(&csr.spec.request.0) else {
            return Ok(Action::Done);
        };
        if csr.spec.signer_name == KUBELET_SERVING {
            return self.reconcile_serving(name, &csr, &info).await;
        }
        let mut tried = Vec::new();
        for r in &RECOGNIZERS {
            if !(r.recognize)(&csr, &info) {
                continue;
            }
            tried.push(r.subresource);
            if !self.allowed(&csr, r.subresource).await? {
                continue;
            }
            self.approve(name, &csr, r.message).await?;
            return Ok(Action::Done);
        }
        if !tried.is_empty() {
            tracing::info!(csr = %name, recognized = ?tried, "recognized csr but subject access review was not approved");
        }
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestSpec;
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};

    fn request(user: &str, groups: &[&str]) -> CertificateSigningRequest {
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                signer_name: KUBELET_SERVING.into(),
                username: Some(user.into()),
                groups: Some(groups.iter().map(|g| g.to_string()).collect()),
                usages: Some(vec!["digital signature".into(), "server auth".into()]),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn info(cn: &str, dns: &[&str], ips: &[&str]) -> csr::CsrInfo {
        csr::CsrInfo {
            common_name: cn.into(),
            organizations: vec!["system:nodes".into()],
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ip_addresses: ips.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn node(addresses: &[(&str, &str)]) -> Node {
        Node {
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(t, a)| NodeAddress {
                            type_: t.to_string(),
                            address: a.to_string(),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_node_gets_serving_certificates_for_its_own_names_only() {
        let n1 = node(&[("InternalIP", "10.0.0.5"), ("Hostname", "host-a")]);
        let req = request("system:node:n1", &["system:nodes", "system:authenticated"]);
        let fits = |i: &csr::CsrInfo, n: Option<&Node>| serving_request_fits_node(&req, i, n);
        assert_eq!(
            fits(
                &info("system:node:n1", &["n1", "host-a"], &["10.0.0.5"]),
                Some(&n1)
            ),
            Ok(())
        );
        assert!(
            fits(&info("system:node:n1", &["n1"], &["10.0.0.6"]), Some(&n1))
                .unwrap_err()
                .contains("10.0.0.6")
        );
        assert!(fits(&info("system:node:n1", &["n2"], &[]), Some(&n1))
            .unwrap_err()
            .contains("\"n2\""));
        assert!(fits(&info("system:node:n2", &["n1"], &[]), Some(&n1)).is_err());
        assert!(fits(&info("system:node:n1", &["n1"], &[]), None)
            .unwrap_err()
            .contains("not registered"));
        let stranger = request("system:bootstrap:abcdef", &["system:bootstrappers"]);
        assert!(serving_request_fits_node(
            &stranger,
            &info("system:node:n1", &["n1"], &[]),
            Some(&n1)
        )
        .is_err());
    }
}
