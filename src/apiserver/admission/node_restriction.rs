//! NodeRestriction: what a node (user `system:node:NAME` in group `system:nodes`) may write,
//! beyond what the Node authorizer lets it reach, as upstream's plugin decides: only its own
//! Node (not its taints, owner references, configSource, nor labels under
//! `node-restriction.kubernetes.io/` or other `kubernetes.io` / `k8s.io` labels that are not
//! kubelet labels), mirror pods bound to itself, the status of pods bound to itself,
//! evictions and deletes of its own pods, PVC status, tokens bound to its own pods, its own
//! Lease in `kube-node-lease`, its own CSINode and ResourceSlices, and CSRs for its own name.
//!
//! Invariant: requests of any other user never reach this plugin (`handles` is a prefix
//! test on the user name).

use super::{support, Admit, Attributes, Operation, Plugin};
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiState;
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

const NODE_PREFIX: &str = "system:node:";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
const RESTRICTION_NAMESPACE: &str = "node-restriction.kubernetes.io";
const MIRROR_POD: &str = "kubernetes.io/config.mirror";
/// Labels a kubelet sets on its own Node (upstream's `kubeletLabels`).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

pub struct NodeRestriction;

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map(|(ns, _)| ns).unwrap_or_default()
}

fn in_namespace(ns: &str, domain: &str) -> bool {
    ns == domain || ns.ends_with(&format!(".{domain}"))
}

fn is_kubelet_label(key: &str) -> bool {
    KUBELET_LABELS.contains(&key)
        || KUBELET_LABEL_NAMESPACES
            .iter()
            .any(|d| in_namespace(label_namespace(key), d))
}

fn is_kubernetes_label(key: &str) -> bool {
    let ns = label_namespace(key);
    in_namespace(ns, "kubernetes.io") || in_namespace(ns, "k8s.io")
}

/// Labels added, removed or changed between `old` and `new`, that a node may not touch.
fn forbidden_labels(new: &Value, old: &Value) -> Vec<String> {
    let (a, b) = (support::str_map(new), support::str_map(old));
    let modified: BTreeSet<&String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .chain(b.iter().filter(|(k, v)| a.get(*k) != Some(v)))
        .map(|(k, _)| k)
        .collect();
    modified
        .into_iter()
        .filter(|l| {
            in_namespace(label_namespace(l), RESTRICTION_NAMESPACE)
                || (is_kubernetes_label(l) && !is_kubelet_label(l))
        })
        .cloned()
        .collect()
}

fn node_name_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or_default()
}

/// The common part of every pod API-object reference (upstream's `HasAPIObjectReference`):
/// the first kind of reference a mirror pod may not have.
fn api_object_reference(pod: &Value) -> Option<&'static str> {
    let spec = &pod["spec"];
    if spec["serviceAccountName"]
        .as_str()
        .is_some_and(|s| !s.is_empty())
    {
        return Some("serviceaccounts");
    }
    let arr = |v: &Value, k: &str| v[k].as_array().cloned().unwrap_or_default();
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in arr(spec, list) {
            for e in arr(&c, "env") {
                if !e["valueFrom"]["secretKeyRef"].is_null() {
                    return Some("secrets");
                }
                if !e["valueFrom"]["configMapKeyRef"].is_null() {
                    return Some("configmaps");
                }
            }
            for e in arr(&c, "envFrom") {
                if !e["secretRef"].is_null() {
                    return Some("secrets");
                }
                if !e["configMapRef"].is_null() {
                    return Some("configmaps");
                }
            }
        }
    }
    for v in arr(spec, "volumes") {
        if !v["secret"].is_null() {
            return Some("secrets");
        }
        if !v["configMap"].is_null() {
            return Some("configmaps");
        }
        if !v["persistentVolumeClaim"].is_null() || !v["ephemeral"].is_null() {
            return Some("persistentvolumeclaims");
        }
        if !v["csi"].is_null() {
            return Some("csidrivers");
        }
        for s in arr(&v["projected"], "sources") {
            if !s["secret"].is_null() {
                return Some("secrets");
            }
            if !s["configMap"].is_null() {
                return Some("configmaps");
            }
            if !s["serviceAccountToken"].is_null() {
                return Some("serviceaccounts");
            }
            if !s["clusterTrustBundle"].is_null() {
                return Some("clustertrustbundles");
            }
            if !s["podCertificate"].is_null() {
                return Some("podcertificates");
            }
        }
        if let Some(m) = v.as_object() {
            if m.values().any(|src| !src["secretRef"].is_null()) {
                return Some("secrets");
            }
        }
    }
    if spec["resourceClaims"]
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Some("resourceclaims");
    }
    None
}

impl NodeRestriction {
    /// The pod `name` in the request's namespace: the fields `keep` names, all for none.
    async fn pod(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        name: &str,
        keep: &[&str],
    ) -> Result<Value, ApiError> {
        let ns = attrs.namespace.unwrap_or_default();
        support::get_fields(state, "", "pods", Some(ns), name, keep)
            .await?
            .ok_or_else(|| ApiError {
                details: Some(serde_json::json!({"name": name, "kind": "pods"})),
                ..ApiError::new(404, "NotFound", format!("pods \"{name}\" not found"))
            })
    }

    async fn admit_pod(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        node: &str,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let forbid = |m: String| Err(attrs.forbidden(m));
        match (attrs.subresource, attrs.operation) {
            (None, Operation::Create) => {
                let pod = obj.unwrap_or(&Value::Null);
                if pod["metadata"]["annotations"].get(MIRROR_POD).is_none() {
                    return forbid(format!("pod does not have \"{MIRROR_POD}\" annotation, node \"{node}\" can only create mirror pods"));
                }
                if node_name_of(pod) != node {
                    return forbid(format!("node \"{node}\" can only create pods with spec.nodeName set to itself"));
                }
                let owners = pod["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
                if owners.len() > 1 {
                    return forbid(format!("node \"{node}\" can only create pods with a single owner reference set to itself"));
                }
                let Some(owner) = owners.first() else {
                    return forbid(format!("node \"{node}\" can only create pods with an owner reference set to itself"));
                };
                if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
                    return forbid(format!("node \"{node}\" can only create pods with an owner reference set to itself"));
                }
                if owner["controller"] != true {
                    return forbid(format!("node \"{node}\" can only create pods with a controller owner reference set to itself"));
                }
                if owner["blockOwnerDeletion"] == true {
                    return forbid(format!("node \"{node}\" must not set blockOwnerDeletion on an owner reference"));
                }
                let Some(node_obj) = support::get(state, "", "nodes", None, node).await? else {
                    return Err(ApiError {
                        details: Some(serde_json::json!({"name": node, "kind": "nodes"})),
                        ..ApiError::new(404, "NotFound", format!("nodes \"{node}\" not found"))
                    });
                };
                let uid = node_obj["metadata"]["uid"].as_str().unwrap_or_default();
                let owner_uid = owner["uid"].as_str().unwrap_or_default();
                if owner_uid != uid {
                    return forbid(format!("node {node} UID mismatch: expected {owner_uid} got {uid}"));
                }
                if let Some(kind) = api_object_reference(pod) {
                    return forbid(format!("node \"{node}\" can not create pods that reference {kind}"));
                }
                Ok(())
            }
            (None, Operation::Delete) => {
                let existing = self.pod(state, attrs, attrs.name, &["spec.nodeName"]).await?;
                if node_name_of(&existing) != node {
                    return forbid(format!("node \"{node}\" can only delete pods with spec.nodeName set to itself"));
                }
                Ok(())
            }
            (None, op) => forbid(format!(
                "unexpected operation \"{}\", node \"{node}\" can only create and delete mirror pods",
                op.as_str()
            )),
            (Some("status"), Operation::Update) => {
                let (new, old) = (obj.unwrap_or(&Value::Null), old.unwrap_or(&Value::Null));
                if node_name_of(old) != node {
                    return forbid(format!("node \"{node}\" can only update pod status for pods with spec.nodeName set to itself"));
                }
                if support::str_map(&new["metadata"]["labels"]) != support::str_map(&old["metadata"]["labels"]) {
                    return forbid(format!("node \"{node}\" cannot update labels through pod status"));
                }
                if new["status"]["resourceClaimStatuses"] != old["status"]["resourceClaimStatuses"] {
                    return forbid(format!("node \"{node}\" cannot update resource claim statues"));
                }
                if new["status"]["extendedResourceClaimStatus"] != old["status"]["extendedResourceClaimStatus"] {
                    return forbid(format!("node \"{node}\" cannot update extended resource claim status"));
                }
                Ok(())
            }
            (Some("status"), op) => forbid(format!("unexpected operation \"{}\"", op.as_str())),
            (Some("eviction"), Operation::Create) => {
                let pod_name = if attrs.name.is_empty() {
                    obj.and_then(|e| e["metadata"]["name"].as_str()).unwrap_or_default()
                } else {
                    attrs.name
                };
                if pod_name.is_empty() {
                    return forbid("could not determine pod from request data".into());
                }
                let existing = self.pod(state, attrs, pod_name, &["spec.nodeName"]).await?;
                if node_name_of(&existing) != node {
                    return forbid(format!("node {node} can only evict pods with spec.nodeName set to itself"));
                }
                Ok(())
            }
            (Some("eviction"), op) => forbid(format!("unexpected operation {}", op.as_str())),
            (Some(other), _) => forbid(format!(
                "unexpected pod subresource \"{other}\", only 'status' and 'eviction' are allowed"
            )),
        }
    }

    fn admit_node(
        &self,
        attrs: &Attributes<'_>,
        node: &str,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let forbid = |m: String| Err(attrs.forbidden(m));
        if attrs.name != node {
            return forbid(format!(
                "node \"{node}\" is not allowed to modify node \"{}\"",
                attrs.name
            ));
        }
        let new = obj.unwrap_or(&Value::Null);
        match attrs.operation {
            Operation::Create => {
                if !new["spec"]["configSource"].is_null() {
                    return forbid(format!(
                        "node \"{node}\" is not allowed to create pods with a non-nil configSource"
                    ));
                }
                let labels = forbidden_labels(&new["metadata"]["labels"], &Value::Null);
                if !labels.is_empty() {
                    return forbid(format!(
                        "node \"{node}\" is not allowed to set the following labels: {}",
                        labels.join(", ")
                    ));
                }
            }
            Operation::Update => {
                let old = old.unwrap_or(&Value::Null);
                let cs = &new["spec"]["configSource"];
                if !cs.is_null() && *cs != old["spec"]["configSource"] {
                    return forbid(format!("node \"{node}\" is not allowed to update configSource to a new non-nil configSource"));
                }
                let empty_is_null = |v: &Value| {
                    if v.as_array().is_some_and(|a| a.is_empty()) {
                        Value::Null
                    } else {
                        v.clone()
                    }
                };
                if empty_is_null(&new["spec"]["taints"]) != empty_is_null(&old["spec"]["taints"]) {
                    return forbid(format!("node \"{node}\" is not allowed to modify taints"));
                }
                if empty_is_null(&new["metadata"]["ownerReferences"])
                    != empty_is_null(&old["metadata"]["ownerReferences"])
                {
                    return forbid(format!(
                        "node \"{node}\" is not allowed to modify ownerReferences"
                    ));
                }
                let labels =
                    forbidden_labels(&new["metadata"]["labels"], &old["metadata"]["labels"]);
                if !labels.is_empty() {
                    return forbid(format!(
                        "is not allowed to modify labels: {}",
                        labels.join(", ")
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn admit_pvc(
        &self,
        attrs: &Attributes<'_>,
        node: &str,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        match (attrs.subresource, attrs.operation) {
            (Some("status"), Operation::Update) => {
                let strip = |v: Option<&Value>| {
                    let mut v = v.cloned().unwrap_or(Value::Null);
                    if let Some(m) = v["metadata"].as_object_mut() {
                        m.remove("resourceVersion");
                        m.remove("managedFields");
                    }
                    if let Some(s) = v["status"].as_object_mut() {
                        for k in [
                            "capacity",
                            "conditions",
                            "allocatedResourceStatuses",
                            "allocatedResources",
                        ] {
                            s.remove(k);
                        }
                    }
                    v
                };
                let (new, old) = (strip(obj), strip(old));
                if new != old {
                    let changed: Vec<String> = ["metadata", "spec", "status"]
                        .iter()
                        .filter(|k| new[**k] != old[**k])
                        .map(|k| k.to_string())
                        .collect();
                    return Err(attrs.forbidden(format!("node \"{node}\" is not allowed to update fields other than status.quantity and status.conditions: {}", changed.join(", "))));
                }
                Ok(())
            }
            (Some("status"), op) => {
                Err(attrs.forbidden(format!("unexpected operation \"{}\"", op.as_str())))
            }
            _ => Err(attrs.forbidden("may only update PVC status")),
        }
    }

    async fn admit_token(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        node: &str,
        obj: Option<&Value>,
    ) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create || attrs.subresource != Some("token") {
            return Ok(());
        }
        let forbid = |m: String| Err(attrs.forbidden(m));
        let r = &obj.unwrap_or(&Value::Null)["spec"]["boundObjectRef"];
        let rname = r["name"].as_str().unwrap_or_default();
        if r.is_null() || r["apiVersion"] != "v1" || r["kind"] != "Pod" || rname.is_empty() {
            return forbid("node requested token not bound to a pod".into());
        }
        let ruid = r["uid"].as_str().unwrap_or_default();
        if ruid.is_empty() {
            return forbid("node requested token with a pod binding without a uid".into());
        }
        // What the checks below and `pod_uses_audience` read.
        let keep = [
            "metadata.uid",
            "metadata.namespace",
            "spec.nodeName",
            "spec.volumes",
        ];
        let pod = self.pod(state, attrs, rname, &keep).await?;
        if pod["metadata"]["uid"] != ruid {
            return forbid(format!("the UID in the bound object reference ({ruid}) does not match the UID in record. The object might have been deleted and then recreated"));
        }
        if node_name_of(&pod) != node {
            return forbid(
                "node requested token bound to a pod scheduled on a different node".into(),
            );
        }
        self.check_audience(state, attrs, obj, &pod).await
    }

    /// Upstream's ServiceAccountNodeAudienceRestriction (beta, on since 1.33): a node may ask
    /// for at most one audience, and only one the pod uses (a projected token source, or a
    /// CSI driver of its volumes that requests tokens for it), unless the authorizer grants
    /// `request-serviceaccounts-token-audience` on that audience.
    async fn check_audience(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        obj: Option<&Value>,
        pod: &Value,
    ) -> Result<(), ApiError> {
        let audiences = obj.unwrap_or(&Value::Null)["spec"]["audiences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let audience = match audiences.as_slice() {
            [] => "",
            [one] => one.as_str().unwrap_or_default(),
            _ => return Err(attrs.forbidden("node may only request 0 or 1 audiences")),
        };
        if pod_uses_audience(state, pod, audience).await? {
            return Ok(());
        }
        let user = attrs.user;
        let decision = state.authorizer().authorize(
            user,
            &crate::apiserver::AuthzAttributes {
                verb: "request-serviceaccounts-token-audience",
                resource: audience,
                namespace: attrs.namespace,
                name: Some(attrs.name),
                ..Default::default()
            },
        );
        if decision == crate::apiserver::Decision::Allow {
            return Ok(());
        }
        Err(attrs.forbidden(format!(
            "audience {audience:?} not found in pod spec volume, {} is not authorized to request tokens for this audience",
            user.name
        )))
    }

    fn admit_csr(
        &self,
        attrs: &Attributes<'_>,
        node: &str,
        obj: Option<&Value>,
    ) -> Result<(), ApiError> {
        if attrs.operation != Operation::Create {
            return Ok(());
        }
        let csr = obj.unwrap_or(&Value::Null);
        let signer = csr["spec"]["signerName"].as_str().unwrap_or_default();
        if signer != "kubernetes.io/kubelet-serving"
            && signer != "kubernetes.io/kube-apiserver-client-kubelet"
        {
            return Ok(());
        }
        let cn = csr_common_name(csr["spec"]["request"].as_str().unwrap_or_default())
            .map_err(|e| attrs.forbidden(format!("unable to parse csr: {e}")))?;
        if cn != format!("{NODE_PREFIX}{node}") {
            return Err(attrs.forbidden(format!(
                "can only create a node CSR with CN={NODE_PREFIX}{node}"
            )));
        }
        Ok(())
    }

    async fn check(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        // Upstream's `NodeIdentity`: the Node authorizer's own test.
        let Some(node) = crate::authz::node::node_name(attrs.user) else {
            return Ok(());
        };
        if node.is_empty() {
            return Err(attrs.forbidden(format!(
                "could not determine node from user \"{}\"",
                attrs.user.name
            )));
        }
        let obj_name = |o: Option<&Value>| {
            o.and_then(|o| o["metadata"]["name"].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        match (attrs.rt.group.as_str(), attrs.rt.plural.as_str()) {
            ("", "pods") => self.admit_pod(state, attrs, node, obj, old).await,
            ("", "nodes") => self.admit_node(attrs, node, obj, old),
            ("", "persistentvolumeclaims") => self.admit_pvc(attrs, node, obj, old),
            ("", "serviceaccounts") => self.admit_token(state, attrs, node, obj).await,
            ("coordination.k8s.io", "leases") => {
                if attrs.namespace != Some(NODE_LEASE_NAMESPACE) {
                    return Err(attrs.forbidden(format!(
                        "can only access leases in the \"{NODE_LEASE_NAMESPACE}\" system namespace"
                    )));
                }
                let name = if attrs.operation == Operation::Create {
                    obj_name(obj)
                } else {
                    attrs.name.to_owned()
                };
                if name != node {
                    return Err(attrs.forbidden(
                        "can only access node lease with the same name as the requesting node",
                    ));
                }
                Ok(())
            }
            ("storage.k8s.io", "csinodes") => {
                let name = if attrs.operation == Operation::Create {
                    obj_name(obj)
                } else {
                    attrs.name.to_owned()
                };
                if name != node {
                    return Err(attrs.forbidden(
                        "can only access CSINode with the same name as the requesting node",
                    ));
                }
                Ok(())
            }
            ("resource.k8s.io", "resourceslices") => {
                let (subject, verb) = match attrs.operation {
                    Operation::Create => (obj, "create"),
                    Operation::Delete => (old, "delete"),
                    _ => return Ok(()),
                };
                let slice_node = subject.and_then(|s| s["spec"]["nodeName"].as_str());
                if slice_node != Some(node) {
                    return Err(attrs.forbidden(format!("can only {verb} ResourceSlice with the same NodeName as the requesting node")));
                }
                Ok(())
            }
            ("certificates.k8s.io", "certificatesigningrequests") => {
                self.admit_csr(attrs, node, obj)
            }
            _ => Ok(()),
        }
    }
}

/// The subject common name of a PEM certificate request.
fn csr_common_name(request_b64: &str) -> Result<String, String> {
    use x509_parser::prelude::FromDer;
    let pem_bytes = base64::engine::general_purpose::STANDARD
        .decode(request_b64)
        .map_err(|e| e.to_string())?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem_bytes).map_err(|e| e.to_string())?;
    if pem.label != "CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .map_err(|e| e.to_string())?;
    let cn = csr
        .certification_request_info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(cn)
}

/// Resources upstream's plugin looks at; anything else a node writes passes.
const WATCHED: &[(&str, &str)] = &[
    ("", "pods"),
    ("", "nodes"),
    ("", "persistentvolumeclaims"),
    ("", "serviceaccounts"),
    ("coordination.k8s.io", "leases"),
    ("storage.k8s.io", "csinodes"),
    ("resource.k8s.io", "resourceslices"),
    ("certificates.k8s.io", "certificatesigningrequests"),
];

impl Plugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        attrs.operation != Operation::Connect
            && attrs.user.name.starts_with(NODE_PREFIX)
            && WATCHED.iter().any(|(g, r)| attrs.is(g, r))
    }

    fn admit<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: &'a mut Value,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move { self.check(state, attrs, Some(obj), old).await })
    }

    /// Deletes have no mutating phase: they are checked here.
    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        _obj: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            if attrs.operation != Operation::Delete {
                return Ok(());
            }
            self.check(state, attrs, None, old).await
        })
    }
}

#[cfg(test)]
mod tests;

/// Whether `pod` uses `audience`: a projected service-account token source names it, or a
/// CSI driver behind one of its volumes (inline, or PVC → PV) requests tokens for it.
async fn pod_uses_audience(
    state: &ApiState,
    pod: &Value,
    audience: &str,
) -> Result<bool, ApiError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let projected = v["projected"]["sources"].as_array().into_iter().flatten();
        if projected
            .filter_map(|src| src.get("serviceAccountToken"))
            .any(|t| t["audience"].as_str().unwrap_or_default() == audience)
        {
            return Ok(true);
        }
        let driver = if let Some(d) = v["csi"]["driver"].as_str() {
            Some(d.to_owned())
        } else if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
            csi_driver_of_claim(state, ns, claim).await?
        } else {
            None
        };
        let Some(driver) = driver else { continue };
        let Some(d) = support::get(state, "storage.k8s.io", "csidrivers", None, &driver).await?
        else {
            continue;
        };
        let requests = d["spec"]["tokenRequests"].as_array().into_iter().flatten();
        if requests
            .map(|r| r["audience"].as_str().unwrap_or_default())
            .any(|a| a == audience)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn csi_driver_of_claim(
    state: &ApiState,
    ns: &str,
    claim: &str,
) -> Result<Option<String>, ApiError> {
    let Some(pvc) = support::get(state, "", "persistentvolumeclaims", Some(ns), claim).await?
    else {
        return Ok(None);
    };
    let Some(pv_name) = pvc["spec"]["volumeName"].as_str().filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let pv = support::get(state, "", "persistentvolumes", None, pv_name).await?;
    Ok(pv.and_then(|pv| pv["spec"]["csi"]["driver"].as_str().map(str::to_owned)))
}
