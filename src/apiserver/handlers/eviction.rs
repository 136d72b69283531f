//! `POST pods/<name>/eviction` (policy/v1 and v1beta1 `Eviction`): a pod deletion that
//! honours the PodDisruptionBudget covering the pod (kube-apiserver's EvictionREST).
//!
//! Invariant: a disruption is granted only by decrementing the budget's
//! `status.disruptionsAllowed` (and recording the pod in `status.disruptedPods`) in one
//! atomic read-modify-write of the budget, so two concurrent evictions can never both spend
//! the last allowed disruption. The disruption controller recomputes the budget afterwards.

use super::super::body::{decode_delete_options, decode_object};
use super::super::objects::{now_rfc3339, parse_record, write, write_locked, Decision, Written};
use super::super::request::{Query, ResourceRequest};
use super::super::response::{self, Body};
use super::super::status::ApiError;
use super::super::ApiState;
use super::delete::{delete_object, DeleteOptions};
use super::subresources::admit_subresource_create;
use super::write::read_body;
use crate::api::selector::LabelSelector;
use crate::apiserver::{RequestBody, UserInfo};
use http::{Request, Response};
use serde_json::{json, Value};
use std::sync::Arc;

/// More unconfirmed disruptions than this on one budget refuse further evictions
/// (upstream's MaxDisruptedPodSize: the controller is far behind).
const MAX_DISRUPTED_PODS: usize = 2000;
const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// The 429 a client retries on: the budget allows no disruption now.
fn too_many_requests(cause: String, retry_after: u64) -> ApiError {
    let mut details = json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]});
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
    }
    ApiError {
        details: Some(details),
        ..ApiError::too_many_requests(VIOLATION)
    }
}

/// The budget has not been looked at by the controller since its spec changed.
fn still_processing(pdb: &str) -> ApiError {
    too_many_requests(
        format!("The disruption budget {pdb} is still being processed by the server."),
        10,
    )
}

fn forbidden_pdb(pdb: &str, why: &str) -> ApiError {
    ApiError::forbidden_resource("policy", "poddisruptionbudget", pdb, why)
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// A pod that is terminal, not started or already going away has disrupted nothing more
/// by being deleted: no budget is consulted.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending")
        || !pod["metadata"]["deletionTimestamp"].is_null()
}

/// Whether the delete must be pinned to the pod version the decision was made on (a
/// running pod could become Ready meanwhile and then count toward the budget).
fn pin_resource_version(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod["metadata"]["deletionTimestamp"].is_null()
}

fn success() -> Response<Body> {
    response::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

pub async fn evict(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    q: &Query,
    req: Request<RequestBody>,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let pods = rr.rt.clone();
    let ns = rr.namespace.clone().unwrap_or_default();
    let name = rr.name.clone().unwrap_or_default();
    let raw = read_body(req).await?;
    let mut eviction = decode_object(raw.content_type.as_deref(), &raw.bytes)?;
    match eviction["apiVersion"].as_str() {
        None | Some("policy/v1" | "policy/v1beta1") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported eviction version: {other}"
            )))
        }
    }
    if eviction["metadata"]["name"].as_str() != Some(name.as_str()) {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    // Admission sees the Eviction as a create of `pods/eviction`, before any budget is looked
    // at, as upstream runs it: NodeRestriction lets a kubelet evict only its own pods, and
    // webhooks registered for evictions see (and may change) them.
    admit_subresource_create(state, rr, Some("eviction"), user, q.dry_run, &mut eviction).await?;
    let options_body = match &eviction["deleteOptions"] {
        Value::Null => decode_delete_options(None, b"")?,
        v => v.clone(),
    };
    let mut opts = DeleteOptions::from_request(&pods, &options_body, q)?;
    let caller_pinned = opts.precondition_rv.is_some();

    let rec = state
        .store
        .get(&pods.key(Some(&ns), &name))
        .await?
        .ok_or_else(|| ApiError::not_found(&pods, &name))?;
    let pod = parse_record(&rec)?;
    let pod_rv = pod["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_owned);

    if can_ignore_budget(&pod) {
        if pin_resource_version(&pod) && !caller_pinned {
            opts.precondition_rv = pod_rv;
        }
        delete_with_condition(state, &pods, &ns, &name, &mut opts).await?;
        return Ok(success());
    }

    let Some(pdbs) = state
        .registry
        .lookup("policy", "v1", "poddisruptionbudgets")
    else {
        return Err(ApiError::internal("poddisruptionbudgets are not served"));
    };
    let (records, _) = state.store.list(&pdbs.namespace_prefix(Some(&ns))).await?;
    let labels = pod["metadata"]["labels"].as_object();
    let mut matching = Vec::new();
    for r in &records {
        let pdb = parse_record(r)?;
        // An invalid or empty selector matches no pod (never every pod).
        let selects = LabelSelector::from_json(&pdb["spec"]["selector"])
            .is_ok_and(|s| !s.is_empty() && s.matches(labels));
        if selects {
            matching.push(pdb);
        }
    }
    if matching.len() > 1 {
        return Ok(response::json(
            500,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                "code": 500}),
        ));
    }
    let mut pinned_by_us = false;
    if let Some(pdb) = matching.first() {
        let pdb_name = pdb["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let always_allow = pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow";
        let current = pdb["status"]["currentHealthy"].as_i64().unwrap_or(0);
        let desired = pdb["status"]["desiredHealthy"].as_i64().unwrap_or(0);
        // An unready pod does not count as healthy: evicting it spends no disruption when
        // the policy allows it always, or (IfHealthyBudget) while the budget is met.
        let unready_free = !is_ready(&pod) && (always_allow || (current >= desired && desired > 0));
        if unready_free {
            pinned_by_us = true;
        } else {
            check_and_decrement(state, &pdbs, &ns, &name, &pdb_name, opts.dry_run).await?;
        }
    }
    if pinned_by_us && !caller_pinned {
        opts.precondition_rv = pod_rv;
    }
    match delete_with_condition(state, &pods, &ns, &name, &mut opts).await {
        Ok(()) => Ok(success()),
        // The pod changed since the decision (it may be Ready now): the client retries.
        Err(e) if e.code == 409 && pinned_by_us && !caller_pinned => {
            let pdb = matching
                .first()
                .and_then(|p| p["metadata"]["name"].as_str())
                .unwrap_or_default();
            Err(still_processing(pdb))
        }
        Err(e) => Err(e),
    }
}

/// Marks the pod with the DisruptionTarget condition (reason EvictionByEvictionAPI) unless
/// it is terminal, then deletes it; a resourceVersion precondition applies to the marking
/// and then moves to the marked version.
async fn delete_with_condition(
    state: &Arc<ApiState>,
    pods: &Arc<crate::api::registry::ResourceType>,
    ns: &str,
    name: &str,
    opts: &mut DeleteOptions,
) -> Result<(), ApiError> {
    if !opts.dry_run {
        let rt = pods.clone();
        let pod_name = name.to_owned();
        let expect_rv = opts.precondition_rv.clone();
        let expect_uid = opts.precondition_uid.clone();
        let marked = write(state, pods, Some(ns), name, false, move |cur| {
            let mut pod = cur.ok_or_else(|| ApiError::not_found(&rt, &pod_name))?;
            let m = &pod["metadata"];
            let stale = |have: &Value, want: &Option<String>| {
                want.as_deref().is_some_and(|w| have.as_str() != Some(w))
            };
            if stale(&m["resourceVersion"], &expect_rv) || stale(&m["uid"], &expect_uid) {
                // The delete below reports the failed precondition in upstream's words.
                return Ok(Decision::Keep(pod));
            }
            if matches!(phase(&pod), "Succeeded" | "Failed") || !m["deletionTimestamp"].is_null() {
                return Ok(Decision::Keep(pod));
            }
            let cond = json!({"type": "DisruptionTarget", "status": "True",
                "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
                "lastTransitionTime": now_rfc3339()});
            let mut conds = pod["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            conds.retain(|c| c["type"] != "DisruptionTarget");
            conds.push(cond);
            pod["status"]["conditions"] = Value::Array(conds);
            Ok(Decision::Put {
                obj: pod,
                created: false,
            })
        })
        .await?;
        if let (Written::Updated(pod, _), Some(_)) = (&marked, &opts.precondition_rv) {
            opts.precondition_rv = pod["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_owned);
        }
    }
    delete_object(state, pods, Some(ns), name, opts).await?;
    Ok(())
}

/// Spends one of the budget's allowed disruptions on `pod`, atomically.
async fn check_and_decrement(
    state: &ApiState,
    pdbs: &Arc<crate::api::registry::ResourceType>,
    ns: &str,
    pod: &str,
    pdb_name: &str,
    dry_run: bool,
) -> Result<(), ApiError> {
    let pod = pod.to_owned();
    let name = pdb_name.to_owned();
    let rt = pdbs.clone();
    write_locked(state, pdbs, Some(ns), pdb_name, dry_run, move |cur| {
        let mut pdb = cur.ok_or_else(|| ApiError::not_found(&rt, &name))?;
        let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
        let status = &pdb["status"];
        if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
            return Err(still_processing(&name));
        }
        let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
        if allowed < 0 {
            return Err(forbidden_pdb(&name, "pdb disruptions allowed is negative"));
        }
        if status["disruptedPods"]
            .as_object()
            .is_some_and(|m| m.len() > MAX_DISRUPTED_PODS)
        {
            return Err(forbidden_pdb(
                &name,
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if allowed == 0 {
            return Err(too_many_requests(
                format!(
                    "The disruption budget {name} needs {} healthy pods and has {} currently",
                    status["desiredHealthy"].as_i64().unwrap_or(0),
                    status["currentHealthy"].as_i64().unwrap_or(0)
                ),
                0,
            ));
        }
        let now = now_rfc3339();
        let st = &mut pdb["status"];
        st["disruptionsAllowed"] = json!(allowed - 1);
        if allowed - 1 == 0 {
            set_insufficient(st, generation, &now);
        }
        if !st["disruptedPods"].is_object() {
            st["disruptedPods"] = json!({});
        }
        st["disruptedPods"][pod.as_str()] = json!(now);
        Ok(Decision::Put {
            obj: pdb,
            created: false,
        })
    })
    .await?;
    Ok(())
}

/// The DisruptionAllowed condition once the last allowed disruption is spent.
fn set_insufficient(status: &mut Value, generation: i64, now: &str) {
    let cond = json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
        "message": "", "observedGeneration": generation, "lastTransitionTime": now});
    let conds = status["conditions"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<Value> = Vec::with_capacity(conds.len() + 1);
    let mut found = false;
    for c in conds {
        if c["type"] == "DisruptionAllowed" {
            found = true;
            if c["status"] == "False" {
                out.push(c);
            } else {
                out.push(cond.clone());
            }
        } else {
            out.push(c);
        }
    }
    if !found {
        out.push(cond);
    }
    status["conditions"] = Value::Array(out);
}
