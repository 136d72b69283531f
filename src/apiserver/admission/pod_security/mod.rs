//! The PodSecurity admission plugin (upstream's `pod-security-admission` as kube-apiserver
//! runs it, with kube-apiserver's defaults: every mode `privileged:latest`, no exemptions).
//!
//! - Namespaces: the `pod-security.kubernetes.io/{enforce,audit,warn}[-version]` labels must
//!   be valid on create, and on updates that change them (422 as upstream); an update that
//!   tightens `enforce` dry-runs the namespace's existing pods and warns about violators.
//! - Pods: creates and updates that change the pod's images are evaluated: `enforce`
//!   refuses (403 `violates PodSecurity "level:version": ...`), `warn` adds a
//!   `would violate PodSecurity ...` warning. Metadata/status-only updates and the
//!   `status`, `binding`, `eviction`, `exec`, ... subresources are not evaluated.
//! - Workload resources (Deployments, ReplicaSets, StatefulSets, DaemonSets, Jobs, CronJobs,
//!   ReplicationControllers, PodTemplates): their pod template gets `warn` evaluation only.
//! - `audit` is parsed but only feeds audit-log annotations upstream; skiff has no audit log,
//!   so audit violations are not recorded anywhere.
//!
//! Invariant: requests in namespaces without policy labels cost one namespace read; nothing
//! but pods, workload resources and namespaces is looked at.

mod baseline;
pub mod policy;
mod restricted;
#[cfg(test)]
mod tests;

use super::{Admit, Attributes, Operation, Plugin};
use crate::api::validation::{causes_json, format_invalid_message};
use crate::apiserver::objects::parse_record;
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiState;
use policy::{
    evaluate, forbidden_detail, forbidden_reason, policy_of, Evaluations, Level, LevelVersion,
    PodView,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Upstream checks at most this many existing pods when a namespace's enforce level changes.
const MAX_PODS_TO_CHECK: usize = 3000;

/// Pod subresources whose writes cannot change what PodSecurity checks.
const IGNORED_POD_SUBRESOURCES: [&str; 8] = [
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

/// `group/resource` of the kinds holding a pod template.
const WORKLOADS: [(&str, &str); 8] = [
    ("", "replicationcontrollers"),
    ("", "podtemplates"),
    ("apps", "replicasets"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
];

#[derive(Default)]
pub struct PodSecurity;

impl Plugin for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        if !matches!(attrs.operation, Operation::Create | Operation::Update) {
            return false;
        }
        match attrs.subresource {
            None => {
                attrs.is("", "pods")
                    || attrs.is("", "namespaces")
                    || WORKLOADS.iter().any(|(g, r)| attrs.is(g, r))
            }
            Some(sub) => attrs.is("", "pods") && !IGNORED_POD_SUBRESOURCES.contains(&sub),
        }
    }

    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            let Some(obj) = obj else { return Ok(()) };
            if attrs.is("", "namespaces") {
                return validate_namespace(state, attrs, obj, old).await;
            }
            let Some(ns) = attrs.namespace else {
                return Ok(());
            };
            let Some(namespace) = read_namespace(state, ns).await? else {
                return Ok(());
            };
            let (policy, _label_errors) = policy_of(namespace["metadata"]["labels"].as_object());
            if attrs.is("", "pods") {
                if policy.fully_privileged() {
                    return Ok(());
                }
                if attrs.operation == Operation::Update
                    && old.is_some_and(|o| !significant_pod_update(obj, o))
                {
                    return Ok(());
                }
                let pod = PodView {
                    meta: &obj["metadata"],
                    spec: &obj["spec"],
                };
                return evaluate_pod(attrs, policy.enforce, policy.warn, &pod, true);
            }
            // A workload: warn (and, upstream, audit) about its pod template; never refuse.
            if policy.warn.level == Level::Privileged {
                return Ok(());
            }
            let Some(template) = pod_template(attrs, obj) else {
                return Ok(());
            };
            let pod = PodView {
                meta: &template["metadata"],
                spec: &template["spec"],
            };
            evaluate_pod(attrs, policy.enforce, policy.warn, &pod, false)
        })
    }
}

/// Enforce (when `enforce` is set) then warn, as upstream's `EvaluatePod`.
fn evaluate_pod(
    attrs: &Attributes<'_>,
    enforce_lv: LevelVersion,
    warn_lv: LevelVersion,
    pod: &PodView<'_>,
    enforce: bool,
) -> Result<(), ApiError> {
    let mut evaluations = Evaluations::default();
    if enforce {
        let violations = evaluations.get(enforce_lv, pod);
        if !violations.is_empty() {
            return Err(attrs.forbidden(format!(
                "violates PodSecurity \"{enforce_lv}\": {}",
                forbidden_detail(violations)
            )));
        }
    }
    let violations = evaluations.get(warn_lv, pod);
    if !violations.is_empty() {
        attrs.warn(format!(
            "would violate PodSecurity \"{warn_lv}\": {}",
            forbidden_detail(violations)
        ));
    }
    Ok(())
}

async fn read_namespace(state: &ApiState, ns: &str) -> Result<Option<Value>, ApiError> {
    let Some(rt) = state.registry.lookup("", "v1", "namespaces") else {
        return Ok(None);
    };
    state
        .store
        .get(&rt.key(None, ns))
        .await?
        .map(|r| parse_record(&r))
        .transpose()
}

/// The pod template of a workload object, if it has one.
fn pod_template<'v>(attrs: &Attributes<'_>, obj: &'v Value) -> Option<&'v Value> {
    let t = if attrs.is("", "podtemplates") {
        &obj["template"]
    } else if attrs.is("batch", "cronjobs") {
        &obj["spec"]["jobTemplate"]["spec"]["template"]
    } else {
        &obj["spec"]["template"]
    };
    t.is_object().then_some(t)
}

/// Upstream's `isSignificantPodUpdate`: only changed container counts or images (and added
/// or changed ephemeral containers) can change the outcome of the checks on an update, as
/// validation makes the rest of the pod spec immutable.
fn significant_pod_update(pod: &Value, old: &Value) -> bool {
    let list = |o: &Value, k: &str| o["spec"][k].as_array().cloned().unwrap_or_default();
    for k in ["containers", "initContainers"] {
        let (new, prev) = (list(pod, k), list(old, k));
        if new.len() != prev.len() || new.iter().zip(&prev).any(|(a, b)| a["image"] != b["image"]) {
            return true;
        }
    }
    let prev = list(old, "ephemeralContainers");
    list(pod, "ephemeralContainers").iter().any(|c| {
        match prev.iter().find(|o| o["name"] == c["name"]) {
            None => true,
            Some(o) => o["image"] != c["image"],
        }
    })
}

async fn validate_namespace(
    state: &ApiState,
    attrs: &Attributes<'_>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let (new_policy, new_errs) = policy_of(obj["metadata"]["labels"].as_object());
    let invalid = || {
        let name = obj["metadata"]["name"].as_str().unwrap_or(attrs.name);
        ApiError::invalid(
            attrs.rt,
            name,
            format_invalid_message("Namespace", name, &new_errs),
            causes_json(&new_errs),
        )
    };
    let Some(old) = old.filter(|_| attrs.operation == Operation::Update) else {
        return if new_errs.is_empty() {
            Ok(())
        } else {
            Err(invalid())
        };
    };
    let (old_policy, old_errs) = policy_of(old["metadata"]["labels"].as_object());
    if !new_errs.is_empty() && (old_errs.is_empty() || new_errs != old_errs) {
        return Err(invalid());
    }
    let (new_e, old_e) = (new_policy.enforce, old_policy.enforce);
    if new_e == old_e
        || new_e.level == Level::Privileged
        || (new_e.version == old_e.version && new_e.level <= old_e.level)
    {
        return Ok(());
    }
    let ns = obj["metadata"]["name"].as_str().unwrap_or(attrs.name);
    for w in existing_pod_warnings(state, ns, new_e).await {
        attrs.warn(w);
    }
    Ok(())
}

/// Upstream's `EvaluatePodsInNamespace`: one line per distinct set of violations, naming the
/// first pod (by name) and how many others share it; one pod per controller checked first.
async fn existing_pod_warnings(state: &ApiState, ns: &str, enforce: LevelVersion) -> Vec<String> {
    let pods = match list_pods(state, ns).await {
        Ok(p) => p,
        Err(_) => {
            return vec!["failed to list pods while checking new PodSecurity enforce level".into()]
        }
    };
    let pods = prioritize(pods);
    let total = pods.len();
    // reason → (first pod name, count), in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut counts: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for pod in pods.iter().take(MAX_PODS_TO_CHECK) {
        let view = PodView {
            meta: &pod["metadata"],
            spec: &pod["spec"],
        };
        let violations = evaluate(enforce, &view);
        if violations.is_empty() {
            continue;
        }
        let reason = forbidden_reason(&violations);
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        match counts.get_mut(&reason) {
            Some((first, n)) => {
                if name < first.as_str() {
                    *first = name.to_owned();
                }
                *n += 1;
            }
            None => {
                order.push(reason.clone());
                counts.insert(reason, (name.to_owned(), 1));
            }
        }
    }
    let mut warnings = Vec::new();
    let checked = total.min(MAX_PODS_TO_CHECK);
    if checked < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
        ));
    }
    if !order.is_empty() {
        warnings.push(format!(
            "existing pods in namespace \"{ns}\" violate the new PodSecurity enforce level \"{enforce}\""
        ));
    }
    let mut lines: Vec<String> = order
        .into_iter()
        .map(|reason| {
            let (first, n) = &counts[&reason];
            match n {
                1 => format!("{first}: {reason}"),
                2 => format!("{first} (and 1 other pod): {reason}"),
                n => format!("{first} (and {} other pods): {reason}", n - 1),
            }
        })
        .collect();
    lines.sort();
    warnings.extend(lines);
    warnings
}

async fn list_pods(state: &ApiState, ns: &str) -> Result<Vec<Value>, ApiError> {
    let Some(rt) = state.registry.lookup("", "v1", "pods") else {
        return Ok(Vec::new());
    };
    let (records, _) = state.store.list(&rt.namespace_prefix(Some(ns))).await?;
    records.iter().map(parse_record).collect()
}

/// Pods without a controller and the first pod of each controller, then the other replicas.
fn prioritize(pods: Vec<Value>) -> Vec<Value> {
    let mut seen = HashSet::new();
    let (mut first, mut rest) = (Vec::new(), Vec::new());
    for pod in pods {
        let controller = pod["metadata"]["ownerReferences"]
            .as_array()
            .and_then(|refs| refs.iter().find(|r| r["controller"] == Value::Bool(true)))
            .map(|r| r["uid"].as_str().unwrap_or_default().to_owned());
        match controller {
            Some(uid) if seen.contains(&uid) => rest.push(pod),
            Some(uid) => {
                seen.insert(uid);
                first.push(pod);
            }
            None => first.push(pod),
        }
    }
    first.extend(rest);
    first
}
