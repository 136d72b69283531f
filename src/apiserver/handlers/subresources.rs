//! Subresources with their own object shapes: `scale` (autoscaling/v1 Scale), `pods/binding`
//! and `pods/log`.

use super::super::auth::UserInfo;
use super::super::body::{decode_json, decode_object, with_warnings};
use super::super::objects::{
    check_namespace, now_rfc3339, parse_record, prepare_update_unvalidated, validate, write,
    write_admitted_view, Decision, WriteOptions,
};
use super::super::request::{Query, ResourceRequest};
use super::super::response::{self, Body};
use super::super::status::ApiError;
use super::super::ApiState;
use super::delete::check_preconditions;
use super::write::read_body;
use crate::api::patch::{self, PatchType};
use crate::api::registry::{ResourceType, Subresource};
use crate::api::selector::LabelSelector;
use crate::apiserver::admission::{Attributes, Operation};
use crate::apiserver::RequestBody;
use http::{Request, Response};
use serde_json::{json, Value};
use std::sync::Arc;

/// Where replicas and selector live for a scalable type.
struct ScaleSpec {
    spec_replicas: Vec<String>,
    status_replicas: Vec<String>,
    selector: Option<Vec<String>>,
}

fn path(p: &str) -> Vec<String> {
    p.trim_start_matches('.')
        .split('.')
        .map(str::to_owned)
        .collect()
}

fn scale_spec(rt: &ResourceType) -> ScaleSpec {
    match rt.custom.as_ref().and_then(|c| c.scale.as_ref()) {
        Some(s) => ScaleSpec {
            spec_replicas: path(&s.spec_replicas),
            status_replicas: path(&s.status_replicas),
            selector: s.label_selector.as_deref().map(path),
        },
        None => ScaleSpec {
            spec_replicas: path("spec.replicas"),
            status_replicas: path("status.replicas"),
            selector: Some(path("spec.selector")),
        },
    }
}

fn get_path<'a>(v: &'a Value, p: &[String]) -> &'a Value {
    p.iter().fold(v, |acc, k| &acc[k.as_str()])
}

fn set_path(v: &mut Value, p: &[String], new: Value) {
    let mut cur = v;
    for k in p {
        if !cur[k.as_str()].is_object() && k != p.last().expect("non-empty path") {
            cur[k.as_str()] = json!({});
        }
        cur = &mut cur[k.as_str()];
    }
    *cur = new;
}

fn to_scale(rt: &ResourceType, obj: &Value) -> Value {
    let s = scale_spec(rt);
    let m = &obj["metadata"];
    let selector = s
        .selector
        .as_ref()
        .map(|p| get_path(obj, p))
        .map(|sel| match sel {
            Value::String(s) => s.clone(),
            // A ReplicationController's selector is a plain label map.
            Value::Object(m)
                if !m.contains_key("matchLabels") && !m.contains_key("matchExpressions") =>
            {
                LabelSelector::from_json(&json!({"matchLabels": sel}))
                    .map(|l| l.to_string())
                    .unwrap_or_default()
            }
            Value::Object(_) => LabelSelector::from_json(sel)
                .map(|l| l.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        });
    let mut status = json!({"replicas": get_path(obj, &s.status_replicas).as_i64().unwrap_or(0)});
    if let Some(sel) = selector.filter(|s| !s.is_empty()) {
        status["selector"] = json!(sel);
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": get_path(obj, &s.spec_replicas).as_i64().unwrap_or(0)},
        "status": status,
    })
}

pub async fn get_scale(state: &ApiState, rr: &ResourceRequest) -> Result<Response<Body>, ApiError> {
    let rt = &rr.rt;
    let name = rr.name.as_deref().unwrap_or_default();
    let rec = state
        .store
        .get(&rt.key(rr.namespace.as_deref(), name))
        .await?
        .ok_or_else(|| ApiError::not_found(rt, name))?;
    Ok(response::json(200, &to_scale(rt, &parse_record(&rec)?)))
}

pub async fn write_scale(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    q: &Query,
    req: Request<RequestBody>,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let rt = rr.rt.clone();
    let name = rr.name.clone().unwrap_or_default();
    let is_patch = req.method() == http::Method::PATCH;
    let raw = read_body(req).await?;
    let ct = raw.content_type.clone().unwrap_or_default();
    let body = if is_patch {
        let t = patch::patch_type_from_content_type(&ct)
            .ok_or_else(|| ApiError::unsupported_media_type(&ct))?;
        (Some(t), decode_json(&raw.bytes)?)
    } else {
        (
            None,
            decode_object(raw.content_type.as_deref(), &raw.bytes)?,
        )
    };
    let opts = WriteOptions {
        subresource: None,
        through_scale: true,
        field_manager: q.field_manager.clone().unwrap_or_else(|| "unknown".into()),
        ..Default::default()
    };
    let admitted = write_admitted_view(
        state,
        &rt,
        rr.namespace.as_deref(),
        &name,
        user,
        q.dry_run,
        &opts,
        Subresource::Scale,
        |obj| to_scale(&rt, obj),
        |scale| match &body {
            (None, s) => Ok(s.clone()),
            (Some(PatchType::Json), p) => patch::json_patch(scale, p)
                .map_err(|e| ApiError::new(422, "Invalid", e.to_string())),
            (Some(_), p) => Ok(patch::merge_patch(scale, p)),
        },
        |old, new_scale| {
            let replicas = new_scale["spec"]["replicas"].as_i64().unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"),
                ));
            }
            if let Some(rv) = new_scale["metadata"]["resourceVersion"].as_str() {
                if !rv.is_empty() && Some(rv) != old["metadata"]["resourceVersion"].as_str() {
                    return Err(ApiError::conflict(&rt, &name));
                }
            }
            let mut new = old.clone();
            set_path(&mut new, &scale_spec(&rt).spec_replicas, json!(replicas));
            prepare_update_unvalidated(&rt, old, new, &opts)
        },
    )
    .await?;
    Ok(with_warnings(
        response::json(200, &to_scale(&rt, admitted.written.object())),
        &admitted.warnings,
    ))
}

/// Both admission phases for `obj`, the body of a create of `<resource>/<subresource>` whose
/// object is a kind of its own (a Binding, an Eviction, a TokenRequest), as upstream's create
/// handler runs them: before anything stored is looked at. `obj` ends as admitted.
pub(super) async fn admit_subresource_create(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    subresource: Option<&str>,
    user: &UserInfo,
    dry_run: bool,
    obj: &mut Value,
) -> Result<(), ApiError> {
    let name = rr.name.as_deref().unwrap_or_default();
    let attrs = Attributes::new(
        Operation::Create,
        &rr.rt,
        subresource,
        rr.namespace.as_deref(),
        name,
        user,
        dry_run,
    );
    state
        .admission
        .admit_request_object(state, &attrs, obj)
        .await
}

/// `POST pods/<name>/binding`, and its older form `POST namespaces/<ns>/bindings` naming the
/// pod in the Binding's `metadata.name`: the scheduler's way to set spec.nodeName, once. As
/// upstream's binding storage: the Binding is admitted as a create of `pods/binding` (or of
/// `bindings`; NamespaceLifecycle refuses it in a terminating namespace, webhooks for
/// bindings see it), its uid, if set, must be the pod's, and its annotations are copied onto
/// the pod.
pub async fn bind(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    q: &Query,
    req: Request<RequestBody>,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let raw = read_body(req).await?;
    let mut binding = decode_object(raw.content_type.as_deref(), &raw.bytes)?;
    let named = binding["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let (rt, name) = if rr.subresource.is_none() {
        // The top-level `bindings` resource, checked as any create of it: the pod is the
        // one the Binding names.
        check_namespace(&rr.rt, rr.namespace.as_deref(), &mut binding)?;
        validate(&rr.rt, &binding)?;
        let name = named.unwrap_or_default();
        let pods = state
            .registry
            .lookup("", "v1", "pods")
            .ok_or_else(|| ApiError::internal("the pods resource is not registered"))?;
        let named_rr = ResourceRequest {
            name: Some(name.clone()),
            ..rr.clone()
        };
        admit_subresource_create(state, &named_rr, None, user, q.dry_run, &mut binding).await?;
        (pods, name)
    } else {
        let name = rr.name.clone().unwrap_or_default();
        if named.is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(
                "name in URL does not match name in Binding object",
            ));
        }
        admit_subresource_create(state, rr, Some("binding"), user, q.dry_run, &mut binding).await?;
        (rr.rt.clone(), name)
    };
    let node = binding["target"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if node.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            format!("Binding \"{name}\" is invalid: target.name: Required value"),
        ));
    }
    let pinned = |field: &str| {
        binding["metadata"][field]
            .as_str()
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let (uid, resource_version) = (pinned("uid"), pinned("resourceVersion"));
    let annotations = binding["metadata"]["annotations"].take();
    write(state, &rt, rr.namespace.as_deref(), &name, q.dry_run, {
        let rt = rt.clone();
        let name = name.clone();
        move |cur| {
            let mut pod = cur.ok_or_else(|| ApiError::not_found(&rt, &name))?;
            check_preconditions(&rt, &name, &pod, uid.as_deref(), resource_version.as_deref())?;
            if !pod["metadata"]["deletionTimestamp"].is_null() {
                return Err(ApiError::conflict_because(&rt, &name, "pod is being deleted, cannot be assigned to a host"));
            }
            if let Some(existing) = pod["spec"]["nodeName"].as_str().filter(|s| !s.is_empty()) {
                return Err(ApiError::conflict_because(
                    &rt,
                    &name,
                    &format!("pod {name} is already assigned to node \"{existing}\""),
                ));
            }
            if let Some(extra) = annotations.as_object().filter(|a| !a.is_empty()) {
                let meta = &mut pod["metadata"];
                if !meta["annotations"].is_object() {
                    meta["annotations"] = json!({});
                }
                for (k, v) in extra {
                    meta["annotations"][k] = v.clone();
                }
            }
            pod["spec"]["nodeName"] = json!(node);
            let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now_rfc3339()});
            match pod["status"]["conditions"].as_array_mut() {
                Some(c) => {
                    c.retain(|x| x["type"] != "PodScheduled");
                    c.push(cond);
                }
                None => pod["status"]["conditions"] = json!([cond]),
            }
            Ok(Decision::Put { obj: pod, created: false })
        }
    })
    .await?;
    Ok(response::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}
