//! CSR signing (kube-controller-manager's `csrsigning`): issues certificates from the
//! cluster CA for approved CertificateSigningRequests of the built-in signers
//! `kubernetes.io/kube-apiserver-client`, `kubernetes.io/kube-apiserver-client-kubelet` and
//! `kubernetes.io/kubelet-serving`, honouring `spec.expirationSeconds` (at least 10 minutes,
//! at most the signing duration of one year, never past the CA).
//!
//! Invariant: a certificate is issued only for an Approved, not Failed request whose
//! subject and usages fit its signer; a request that does not fit gets the `Failed`
//! condition (reason `SignerValidationFailure`, upstream's message) instead.

use super::{
    run_on_informer, Action, Context, ControllerError, Reconciler, Signing, Stats, WorkQueue,
};
use crate::informers::Change;
use crate::pki::csr::{self, CsrInfo};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
pub const KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
/// `--cluster-signing-duration` default.
pub const SIGNING_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
const MIN_DURATION: Duration = Duration::from_secs(600);
const WORKERS: usize = 2;

pub struct CsrSigningController {
    ctx: Context,
    signing: Arc<Signing>,
    queue: WorkQueue<String>,
}

/// Whether a condition of `kind` is True on the request.
pub fn has_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

fn issued(csr: &CertificateSigningRequest) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty())
}

fn wants_signing(csr: &CertificateSigningRequest) -> bool {
    has_condition(csr, "Approved") && !has_condition(csr, "Failed") && !issued(csr)
}

impl CsrSigningController {
    pub fn new(ctx: Context, signing: Arc<Signing>) -> CsrSigningController {
        CsrSigningController {
            ctx,
            signing,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let informer = self.ctx.informers.typed::<CertificateSigningRequest>();
        let reconciler = Arc::new(Reconcile {
            api: Api::all(self.ctx.client_for("certificate-controller")),
            store: informer.store(),
            signing: self.signing,
        });
        let key_of = |c: &Change<CertificateSigningRequest>| match c {
            Change::Applied(csr) if wants_signing(csr) => csr.metadata.name.clone(),
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
    api: Api<CertificateSigningRequest>,
    store: kube::runtime::reflector::Store<CertificateSigningRequest>,
    signing: Arc<Signing>,
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "csrsigning";

    async fn reconcile(&self, name: &String) -> Result<Action, ControllerError> {
        let Some(csr) = self
            .store
            .get(&kube::runtime::reflector::ObjectRef::new(name))
        else {
            return Ok(Action::Done);
        };
        if !wants_signing(&csr) {
            return Ok(Action::Done);
        }
        let signer = csr.spec.signer_name.as_str();
        if ![KUBE_APISERVER_CLIENT, KUBELET_CLIENT, KUBELET_SERVING].contains(&signer) {
            return Ok(Action::Done);
        }
        let request = &csr.spec.request.0;
        let info = match csr::parse(request) {
            Ok(i) => i,
            Err(e) => {
                // Upstream retries such requests forever; the body never changes, so say
                // it once.
                tracing::warn!(csr = %name, error = %e, "unable to parse csr");
                return Ok(Action::Done);
            }
        };
        let usages = csr.spec.usages.clone().unwrap_or_default();
        let mut updated = (*csr).clone();
        let status = updated.status.get_or_insert_with(Default::default);
        match check_signer(signer, &info, &usages) {
            Err(message) => {
                status.conditions.get_or_insert_with(Vec::new).push(
                    CertificateSigningRequestCondition {
                        type_: "Failed".into(),
                        status: "True".into(),
                        reason: Some("SignerValidationFailure".into()),
                        message: Some(message),
                        last_update_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
                        last_transition_time: None,
                    },
                );
            }
            Ok(()) => {
                let ttl = duration(csr.spec.expiration_seconds);
                let pem = csr::sign(&self.signing.ca, request, &usages, ttl).map_err(|e| {
                    ControllerError::Invalid(format!("error auto signing csr: {e}"))
                })?;
                status.certificate = Some(k8s_openapi::ByteString(pem.into_bytes()));
            }
        }
        self.api
            .replace_status(name, &PostParams::default(), &updated)
            .await?;
        Ok(Action::Done)
    }
}

/// How long a certificate for `expiration_seconds` lives.
pub fn duration(expiration_seconds: Option<i32>) -> Duration {
    match expiration_seconds {
        None => SIGNING_DURATION,
        Some(s) => Duration::from_secs(s.max(0) as u64).clamp(MIN_DURATION, SIGNING_DURATION),
    }
}

/// Whether a request fits its signer (upstream's `isKubeletServing`, `isKubeletClient`,
/// `isKubeAPIServerClient`); the error is the `Failed` condition's message.
pub fn check_signer(signer: &str, info: &CsrInfo, usages: &[String]) -> Result<(), String> {
    match signer {
        KUBELET_SERVING => validate_kubelet_serving(info, usages),
        KUBELET_CLIENT => validate_kubelet_client(info, usages),
        _ => validate_apiserver_client_usages(usages),
    }
}

fn set(u: &[&str]) -> BTreeSet<String> {
    u.iter().map(|s| s.to_string()).collect()
}

fn validate_apiserver_client_usages(usages: &[String]) -> Result<(), String> {
    let mut client_auth = false;
    for u in usages {
        match u.as_str() {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(format!("invalid usage for client certificate: {other}")),
        }
    }
    if !client_auth {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

fn nodes_org(info: &CsrInfo) -> Result<(), String> {
    if info.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    Ok(())
}

/// Upstream's `ValidateKubeletClientCSR`.
pub fn validate_kubelet_client(info: &CsrInfo, usages: &[String]) -> Result<(), String> {
    nodes_org(info)?;
    if !info.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !info.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !info.ip_addresses.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if !info.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    if !info.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    let got: BTreeSet<String> = usages.iter().cloned().collect();
    let full = set(&["digital signature", "key encipherment", "client auth"]);
    if got != full && got != set(&["digital signature", "client auth"]) {
        return Err(format!("usages did not match {}", go_list(&full)));
    }
    Ok(())
}

/// Upstream's `ValidateKubeletServingCSR`.
pub fn validate_kubelet_serving(info: &CsrInfo, usages: &[String]) -> Result<(), String> {
    nodes_org(info)?;
    if info.dns_names.is_empty() && info.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !info.emails.is_empty() {
        return Err("Email subjectAltNames are not allowed".into());
    }
    if !info.uris.is_empty() {
        return Err("URI subjectAltNames are not allowed".into());
    }
    let got: BTreeSet<String> = usages.iter().cloned().collect();
    let full = set(&["digital signature", "key encipherment", "server auth"]);
    if got != full && got != set(&["digital signature", "server auth"]) {
        return Err(format!("usages did not match {}", go_list(&full)));
    }
    if !info.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

/// A sorted string set as Go's `%v` prints a `[]string`.
fn go_list(s: &BTreeSet<String>) -> String {
    format!("[{}]", s.iter().cloned().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(cn: &str, orgs: &[&str], dns: &[&str]) -> CsrInfo {
        CsrInfo {
            common_name: cn.into(),
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            ..CsrInfo::default()
        }
    }

    fn u(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn apiserver_client_needs_client_auth_and_nothing_else() {
        let i = info("jane", &["devs"], &[]);
        assert!(check_signer(
            KUBE_APISERVER_CLIENT,
            &i,
            &u(&["client auth", "digital signature"])
        )
        .is_ok());
        assert_eq!(
            check_signer(KUBE_APISERVER_CLIENT, &i, &u(&["server auth"])).unwrap_err(),
            "invalid usage for client certificate: server auth"
        );
        assert_eq!(
            check_signer(KUBE_APISERVER_CLIENT, &i, &u(&["digital signature"])).unwrap_err(),
            "missing required usage for client certificate: client auth"
        );
    }

    #[test]
    fn kubelet_client_rules_are_upstreams() {
        let ok = info("system:node:n1", &["system:nodes"], &[]);
        let usages = u(&["digital signature", "client auth"]);
        assert!(check_signer(KUBELET_CLIENT, &ok, &usages).is_ok());
        assert!(check_signer(
            KUBELET_CLIENT,
            &ok,
            &u(&["key encipherment", "digital signature", "client auth"])
        )
        .is_ok());
        assert_eq!(
            check_signer(
                KUBELET_CLIENT,
                &info("system:node:n1", &["devs"], &[]),
                &usages
            )
            .unwrap_err(),
            "subject organization is not system:nodes"
        );
        assert_eq!(
            check_signer(KUBELET_CLIENT, &info("n1", &["system:nodes"], &[]), &usages).unwrap_err(),
            "subject common name does not begin with system:node:"
        );
        assert_eq!(
            check_signer(
                KUBELET_CLIENT,
                &info("system:node:n1", &["system:nodes"], &["n1"]),
                &usages
            )
            .unwrap_err(),
            "DNS subjectAltNames are not allowed"
        );
        assert_eq!(
            check_signer(KUBELET_CLIENT, &ok, &u(&["client auth"])).unwrap_err(),
            "usages did not match [client auth digital signature key encipherment]"
        );
    }

    #[test]
    fn kubelet_serving_rules_are_upstreams() {
        let usages = u(&["digital signature", "server auth"]);
        assert!(check_signer(
            KUBELET_SERVING,
            &info("system:node:n1", &["system:nodes"], &["n1"]),
            &usages
        )
        .is_ok());
        assert_eq!(
            check_signer(
                KUBELET_SERVING,
                &info("system:node:n1", &["system:nodes"], &[]),
                &usages
            )
            .unwrap_err(),
            "DNS or IP subjectAltName is required"
        );
        assert_eq!(
            check_signer(
                KUBELET_SERVING,
                &info("system:node:n1", &["system:nodes"], &["n1"]),
                &u(&["client auth"])
            )
            .unwrap_err(),
            "usages did not match [digital signature key encipherment server auth]"
        );
    }

    #[test]
    fn requested_durations_are_clamped() {
        assert_eq!(duration(None), SIGNING_DURATION);
        assert_eq!(duration(Some(60)), Duration::from_secs(600));
        assert_eq!(duration(Some(3600)), Duration::from_secs(3600));
        assert_eq!(duration(Some(i32::MAX)), SIGNING_DURATION);
    }
}
