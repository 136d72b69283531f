//! delete and deletecollection: preconditions, finalizers, graceful pod deletion,
//! namespace termination and owner-reference propagation.
//!
//! Propagation follows upstream: Background deletes the object now (the garbage collector
//! then deletes its dependents), Foreground keeps it with the `foregroundDeletion`
//! finalizer until its blocking dependents are gone, Orphan keeps it with the `orphan`
//! finalizer until the collector has removed its owner references from the dependents.
//! A CustomResourceDefinition is kept with the cleanup finalizer until its custom
//! resources are gone. The controllers in `crate::controllers` do the waiting work.

use super::super::auth::UserInfo;
use super::super::body::decode_delete_options;
use super::super::objects::{admit_delete, meta_mut, now_rfc3339, write, Decision, Written};
use super::super::request::{Query, ResourceRequest};
use super::super::response::{self, Body};
use super::super::status::ApiError;
use super::super::{crd, ApiState};
use super::read::Filter;
use super::write::read_body;
use crate::api::registry::ResourceType;
use crate::api::strategy::Bookkeeping;
use crate::apiserver::RequestBody;
use http::{Request, Response};
use serde_json::{json, Value};
use std::sync::Arc;

pub use crate::api::strategy::Propagation;

#[derive(Debug, Clone)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

impl Default for DeleteOptions {
    fn default() -> Self {
        DeleteOptions {
            propagation: Propagation::Background,
            grace_period_seconds: None,
            precondition_uid: None,
            precondition_rv: None,
            dry_run: false,
        }
    }
}

impl DeleteOptions {
    /// Merges the body's DeleteOptions with the query parameters (the body wins, as upstream).
    /// `rt` gives the kind's default policy when the request names none.
    pub(super) fn from_request(
        rt: &ResourceType,
        body: &Value,
        q: &Query,
    ) -> Result<DeleteOptions, ApiError> {
        let policy = body["propagationPolicy"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| q.propagation_policy.clone());
        let orphan = body["orphanDependents"].as_bool();
        let propagation = match (policy.as_deref(), orphan) {
            (Some("Background"), _) => Propagation::Background,
            (None, None) => (rt.strategy.delete.default_propagation)(&rt.version),
            (None, Some(false)) => Propagation::Background,
            (Some("Foreground"), _) => Propagation::Foreground,
            (Some("Orphan"), _) | (None, Some(true)) => Propagation::Orphan,
            (Some(other), _) => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!("propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""),
                ))
            }
        };
        let dry_run = q.dry_run
            || body["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == "All"));
        Ok(DeleteOptions {
            propagation,
            grace_period_seconds: body["gracePeriodSeconds"]
                .as_i64()
                .or(q.grace_period_seconds),
            precondition_uid: body["preconditions"]["uid"].as_str().map(str::to_owned),
            precondition_rv: body["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_owned),
            dry_run,
        })
    }
}

/// Deletes one object with all of upstream's deletion semantics. Returns what happened:
/// `Written::Deleted` when it is gone, `Written::Updated`/`Unchanged` when it now waits for
/// finalizers, a kubelet, or namespace cleanup.
pub async fn delete_object(
    state: &Arc<ApiState>,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Written, ApiError> {
    let node_gone = pod_node_is_gone(state, rt, ns, name).await?;
    let written = write(state, rt, ns, name, opts.dry_run, {
        let rt = rt.clone();
        let name = name.to_owned();
        let opts = opts.clone();
        move |cur| decide(&rt, &name, cur, &opts, node_gone)
    })
    .await?;
    if opts.dry_run {
        return Ok(written);
    }
    match &written {
        Written::Deleted(obj) => after_delete(state, rt, obj),
        Written::Updated(obj, _) if rt.strategy.bookkeeping == Bookkeeping::CustomTypes => {
            // A terminating definition stops accepting new objects.
            crd::register(state, obj)
        }
        _ => {}
    }
    super::write::after_write_async(state, rt, &written).await;
    Ok(written)
}

/// Bookkeeping once an object is gone for good.
pub fn after_delete(state: &ApiState, rt: &ResourceType, obj: &Value) {
    match rt.strategy.bookkeeping {
        Bookkeeping::ClusterIp => {
            if let Some(ip) = obj["spec"]["clusterIP"].as_str() {
                state.services.release(ip);
            }
        }
        Bookkeeping::CustomTypes => crd::unregister(state, obj),
        Bookkeeping::None => {}
    }
}

/// Whether `name` is gracefully deleted (a pod) and bound to a node that does not exist:
/// nothing will ever confirm its termination, so it is removed at once (upstream's pod GC
/// does the same for orphans).
async fn pod_node_is_gone(
    state: &ApiState,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
) -> Result<bool, ApiError> {
    let Some(graceful) = rt.strategy.delete.graceful else {
        return Ok(false);
    };
    let Some(rec) = state.store.get(&rt.key(ns, name)).await? else {
        return Ok(false);
    };
    // Only the fields naming the node are parsed: the whole object is parsed again by
    // the delete itself.
    let pod = super::super::objects::parse_record_fields(&rec, graceful.node_fields)?;
    match (graceful.node)(&pod) {
        None => Ok(false),
        Some(node) => Ok(state
            .store
            .get(&format!("core/nodes/{node}"))
            .await?
            .is_none()),
    }
}

/// Upstream's storage preconditions: a write pinned to a uid or resourceVersion conflicts
/// (409) with an object that has another.
pub(super) fn check_preconditions(
    rt: &ResourceType,
    name: &str,
    obj: &Value,
    uid: Option<&str>,
    resource_version: Option<&str>,
) -> Result<(), ApiError> {
    let m = &obj["metadata"];
    for (field, want, key) in [
        ("UID", uid, "uid"),
        ("ResourceVersion", resource_version, "resourceVersion"),
    ] {
        let Some(want) = want else { continue };
        let have = m[key].as_str().unwrap_or_default();
        if want != have {
            return Err(ApiError::conflict_because(
                rt,
                name,
                &format!("Precondition failed: {field} in precondition: {want}, {field} in object meta: {have}"),
            ));
        }
    }
    Ok(())
}

fn decide(
    rt: &ResourceType,
    name: &str,
    cur: Option<Value>,
    opts: &DeleteOptions,
    node_gone: bool,
) -> Result<Decision, ApiError> {
    let Some(mut obj) = cur else {
        return Err(ApiError::not_found(rt, name));
    };
    check_preconditions(
        rt,
        name,
        &obj,
        opts.precondition_uid.as_deref(),
        opts.precondition_rv.as_deref(),
    )?;
    let m = &obj["metadata"];
    let rules = rt.strategy.delete;
    let has_finalizers = m["finalizers"].as_array().is_some_and(|a| !a.is_empty());
    let already_deleting = !m["deletionTimestamp"].is_null();
    // Pods on a node end gracefully: the kubelet stops them and confirms with grace 0.
    let grace = match rules.graceful {
        Some(g) if !node_gone && (g.node)(&obj).is_some() => {
            (g.period)(&obj, opts.grace_period_seconds)
        }
        _ => 0,
    };
    if already_deleting {
        if rules.graceful.is_some() && grace == 0 && !has_finalizers {
            return Ok(Decision::Delete(obj));
        }
        // Only a shorter grace period may follow (upstream's BeforeDelete): the kubelet's
        // final grace-0 delete of a pod still held by a finalizer is recorded, so the pod
        // goes as soon as the finalizer does.
        let current = m["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
        if rules.graceful.is_some() && grace < current {
            let started = m["deletionTimestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
                .unwrap_or_else(chrono::Utc::now)
                - chrono::Duration::seconds(current);
            let ts = (started + chrono::Duration::seconds(grace))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            let mm = meta_mut(&mut obj);
            mm.insert("deletionTimestamp".into(), json!(ts));
            mm.insert("deletionGracePeriodSeconds".into(), json!(grace));
            return Ok(Decision::Put {
                obj,
                created: false,
            });
        }
        return Ok(Decision::Keep(obj));
    }
    let spec_finalizers = rules.spec_finalizers
        && obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
    let foreground = opts.propagation == Propagation::Foreground;
    let orphan = opts.propagation == Propagation::Orphan;
    let cleanup = rules.finalizer;
    if has_finalizers || spec_finalizers || grace > 0 || foreground || orphan || cleanup.is_some() {
        let now = chrono::Utc::now();
        let ts = if grace > 0 {
            (now + chrono::Duration::seconds(grace))
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        } else {
            now_rfc3339()
        };
        let mm = meta_mut(&mut obj);
        // The first deletionTimestamp changes what controllers of the object may do: its
        // generation goes up (if it has one), as upstream's BeforeDelete / markAsDeleting.
        if let Some(g) = mm
            .get("generation")
            .and_then(Value::as_i64)
            .filter(|g| *g > 0)
        {
            mm.insert("generation".into(), json!(g + 1));
        }
        mm.insert("deletionTimestamp".into(), json!(ts));
        mm.insert("deletionGracePeriodSeconds".into(), json!(grace));
        let added = [
            (foreground, "foregroundDeletion"),
            (orphan, "orphan"),
            (cleanup.is_some(), cleanup.unwrap_or_default()),
        ];
        for (_, finalizer) in added.iter().filter(|(wanted, _)| *wanted) {
            let fins = mm.entry("finalizers").or_insert_with(|| json!([]));
            if let Some(a) = fins.as_array_mut() {
                if !a.iter().any(|f| f == finalizer) {
                    a.push(json!(finalizer));
                }
            }
        }
        (rules.mark_deleting)(&mut obj);
        return Ok(Decision::Put {
            obj,
            created: false,
        });
    }
    Ok(Decision::Delete(obj))
}

pub async fn delete(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    q: &Query,
    req: Request<RequestBody>,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let raw = read_body(req).await?;
    let body = decode_delete_options(raw.content_type.as_deref(), &raw.bytes)?;
    let opts = DeleteOptions::from_request(&rr.rt, &body, q)?;
    // Upstream answers 202 for an object not deleted at once only when the deprecated
    // orphanDependents was false; a graceful or finalized deletion is otherwise 200.
    let accepted = body["orphanDependents"].as_bool() == Some(false);
    let name = rr.name.as_deref().unwrap_or_default();
    admit_delete(
        state,
        &rr.rt,
        rr.namespace.as_deref(),
        name,
        user,
        opts.dry_run,
    )
    .await?;
    let written = delete_object(state, &rr.rt, rr.namespace.as_deref(), name, &opts).await?;
    let code = match written {
        Written::Deleted(_) => 200,
        _ if accepted => 202,
        _ => 200,
    };
    Ok(response::written(code, &written))
}

pub async fn delete_collection(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    q: &Query,
    req: Request<RequestBody>,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let rt = &rr.rt;
    let raw = read_body(req).await?;
    let body = decode_delete_options(raw.content_type.as_deref(), &raw.bytes)?;
    let opts = DeleteOptions::from_request(&rr.rt, &body, q)?;
    let filter = Filter::new(rt, q, None)?;
    let (records, rev) = state
        .store
        .list(&rt.namespace_prefix(rr.namespace.as_deref()))
        .await?;
    let mut items = Vec::new();
    for r in records {
        let obj = super::super::objects::parse_record(&r)?;
        if !filter.matches(&obj) {
            continue;
        }
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let admitted = admit_delete(state, rt, ns.as_deref(), &name, user, opts.dry_run).await;
        let deleted = match admitted {
            Ok(()) => delete_object(state, rt, ns.as_deref(), &name, &opts).await,
            Err(e) => Err(e),
        };
        match deleted {
            Ok(w) => items.push(w.object().clone()),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(response::json(
        200,
        &json!({"apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind),
                "metadata": {"resourceVersion": rev.to_string()}, "items": items}),
    ))
}
