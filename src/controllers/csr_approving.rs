//! CSR auto-approval (kube-controller-manager's `csrapproving`, the SubjectAccessReview
//! approver): a `kubernetes.io/kube-apiserver-client-kubelet` request for a node client
//! certificate is approved when its requester may `create` `certificatesigningrequests/
//! selfnodeclient` (a node renewing its own certificate: requester `system:node:NAME` asking
//! for CN `system:node:NAME`) or `certificatesigningrequests/nodeclient` (bootstrap tokens,
//! granted through `system:certificates.k8s.io:certificatesigningrequests:nodeclient`).
//!
//! Invariant: the decision is the authorizer's, asked through a SubjectAccessReview for the
//! requester stamped in the CSR's spec; nothing else is approved, and nothing is denied.

use super::csr_signing::{has_condition, validate_kubelet_client, KUBELET_CLIENT};
use super::{run_on_informer, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::informers::Change;
use crate::pki::csr;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
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
        let reconciler = Arc::new(Reconcile {
            client: self.ctx.client_for("certificate-controller"),
            store: informer.store(),
        });
        let key_of = |c: &Change<CertificateSigningRequest>| match c {
            Change::Applied(csr) if csr.spec.signer_name == KUBELET_CLIENT && undecided(csr) => {
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
        let mut tried = Vec::new();
        for r in &RECOGNIZERS {
            if !(r.recognize)(&csr, &info) {
                continue;
            }
            tried.push(r.subresource);
            if !self.allowed(&csr, r.subresource).await? {
                continue;
            }
            let mut approved = (*csr).clone();
            approved
                .status
                .get_or_insert_with(Default::default)
                .conditions
                .get_or_insert_with(Vec::new)
                .push(CertificateSigningRequestCondition {
                    type_: "Approved".into(),
                    status: "True".into(),
                    reason: Some("AutoApproved".into()),
                    message: Some(r.message.into()),
                    last_update_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
                    last_transition_time: None,
                });
            Api::<CertificateSigningRequest>::all(self.client.clone())
                .replace_subresource("approval", name, &PostParams::default(), &approved)
                .await?;
            return Ok(Action::Done);
        }
        if !tried.is_empty() {
            tracing::info!(csr = %name, recognized = ?tried, "recognized csr but subject access review was not approved");
        }
        Ok(Action::Done)
    }
}
