//! create, update (PUT) and patch (JSON patch, merge patch, strategic merge patch and
//! server-side apply), for objects and their status subresource.

use super::super::admission::{Attributes, Operation};
use super::super::auth::UserInfo;
use super::super::body::{self, decode_for, read_limited, with_warnings};
use super::super::objects::{
    self, finish_create, name_of, prepare_create_unvalidated, prepare_update_unvalidated, write,
    write_admitted, Decision, WriteOptions, Written,
};
use super::super::request::{Query, ResourceRequest};
use super::super::response::{self, Body};
use super::super::status::ApiError;
use super::super::{crd, ApiState};
use crate::api::patch::{self, PatchError, PatchType};
use crate::api::registry::{ResourceType, Subresource};
use crate::api::requester::Requester;
use crate::api::strategy::Bookkeeping;
use crate::apiserver::RequestBody;
use http::{Request, Response};
use serde_json::Value;
use std::sync::Arc;

pub(super) struct RawBody {
    pub content_type: Option<String>,
    pub bytes: bytes::Bytes,
}

pub(super) async fn read_body(req: Request<RequestBody>) -> Result<RawBody, ApiError> {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let length = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = read_limited(req.into_body(), length).await?;
    Ok(RawBody {
        content_type,
        bytes,
    })
}

/// The asynchronous part of the bookkeeping: a CRD write changes the custom groups'
/// APIServices.
pub(super) async fn after_write_async(state: &ApiState, rt: &ResourceType, written: &Written) {
    if rt.strategy.bookkeeping == Bookkeeping::CustomTypes
        && !matches!(written, Written::Unchanged(_))
    {
        crate::apiserver::system_objects::sync_custom_api_services(state).await;
    }
}

/// Bookkeeping after a successful write that other parts of the server react to. A dry run
/// stored nothing, so nothing follows from it (a dry-run CRD serves no types).
async fn after_write(state: &ApiState, rt: &ResourceType, written: &Written, dry_run: bool) {
    if dry_run {
        return;
    }
    // The last finalizer removed from an object being deleted: it is gone now.
    if let Written::Deleted(o) = written {
        super::delete::after_delete(state, rt, o);
    }
    if rt.strategy.bookkeeping == Bookkeeping::CustomTypes {
        match written {
            Written::Created(o, _) | Written::Updated(o, _) => crd::register(state, o),
            Written::Unchanged(_) | Written::Deleted(_) => {}
        }
    }
    after_write_async(state, rt, written).await;
}

/// The requester a create records, only for kinds whose strategy asks for it.
fn requester_for(rt: &ResourceType, user: &UserInfo) -> Option<Requester> {
    rt.strategy.prepare_for_create_by.map(|_| user.requester())
}

pub async fn create(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    q: &Query,
    req: Request<RequestBody>,
    manager: String,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let rt = &rr.rt;
    if rt.custom.as_ref().is_some_and(|c| c.terminating) {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "create not allowed while custom resource definition is terminating",
        ));
    }
    let raw = read_body(req).await?;
    let (mut obj, warnings) = decode_for(
        rt,
        raw.content_type.as_deref(),
        &raw.bytes,
        q.field_validation,
    )?;
    let opts = WriteOptions {
        subresource: None,
        through_scale: false,
        field_manager: manager,
        server_side_apply: false,
        requester: requester_for(rt, user),
    };
    prepare_create_unvalidated(state, rt, rr.namespace.as_deref(), &mut obj, &opts)?;
    let name = name_of(&obj).to_owned();
    let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
    let taken_ip = cluster_ip_taken(rt, &obj);
    let result =
        create_admitted(state, rt, ns.as_deref(), &name, user, q.dry_run, obj, &opts).await;
    let stored = result.as_ref().ok().filter(|_| !q.dry_run);
    give_back_cluster_ips(state, &taken_ip, stored.map(|(w, _)| w));
    let (written, admission_warnings) = result?;
    after_write(state, rt, &written, q.dry_run).await;
    let mut all = warnings;
    all.extend(admission_warnings);
    Ok(with_warnings(response::written(201, &written), &all))
}

/// A create through admission: mutating plugins, validation, validating plugins, then the
/// store (409 if the name is taken). A create needs no retry: it never read an object.
#[allow(clippy::too_many_arguments)]
async fn create_admitted(
    state: &Arc<ApiState>,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    name: &str,
    user: &UserInfo,
    dry_run: bool,
    mut obj: Value,
    opts: &WriteOptions,
) -> Result<(Written, Vec<String>), ApiError> {
    let attrs = Attributes::new(Operation::Create, rt, None, ns, name, user, dry_run);
    let admitted = state.admission.interested(&attrs);
    if admitted {
        state.admission.admit(state, &attrs, &mut obj, None).await?;
    }
    finish_create(rt, &mut obj, opts)?;
    if admitted {
        state
            .admission
            .validate(state, &attrs, Some(&obj), None)
            .await?;
    }
    let written = write(state, rt, ns, name, dry_run, {
        let rt = rt.clone();
        let name = name.to_owned();
        move |cur| match cur {
            Some(_) => Err(ApiError::already_exists(&rt, &name)),
            None => Ok(Decision::Put {
                obj: obj.clone(),
                created: true,
            }),
        }
    })
    .await?;
    Ok((written, attrs.take_warnings()))
}

pub async fn update(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    q: &Query,
    req: Request<RequestBody>,
    manager: String,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let rt = &rr.rt;
    let name = rr.name.clone().unwrap_or_default();
    let raw = read_body(req).await?;
    let (mut obj, warnings) = decode_for(
        rt,
        raw.content_type.as_deref(),
        &raw.bytes,
        q.field_validation,
    )?;
    objects::check_namespace(rt, rr.namespace.as_deref(), &mut obj)?;
    let opts = WriteOptions {
        subresource: rr.subresource,
        through_scale: false,
        field_manager: manager,
        server_side_apply: false,
        requester: None,
    };
    let admitted = write_admitted(
        state,
        rt,
        rr.namespace.as_deref(),
        &name,
        user,
        q.dry_run,
        &opts.clone(),
        false,
        |cur| match cur {
            None => Err(ApiError::not_found(rt, &name)),
            Some(old) => Ok(Decision::Put {
                obj: prepare_update_unvalidated(rt, old, obj.clone(), &opts)?,
                created: false,
            }),
        },
    )
    .await?;
    after_write(state, rt, &admitted.written, q.dry_run).await;
    let mut all = warnings;
    all.extend(admitted.warnings);
    Ok(with_warnings(
        response::written(200, &admitted.written),
        &all,
    ))
}

/// Turns a patch failure into upstream's Status.
fn patch_error(rt: &ResourceType, name: &str, e: PatchError) -> ApiError {
    match e {
        PatchError::Conflict { ref conflicts } => {
            // Each manager is already in upstream's printed form (`"m" using apps/v1`).
            let causes: Vec<Value> = conflicts
                .iter()
                .map(|(m, f)| serde_json::json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": f}))
                .collect();
            let mut err = ApiError::new(409, "Conflict", e.to_string());
            err.details = Some(
                serde_json::json!({"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}),
            );
            err
        }
        PatchError::UnsupportedKind { .. } => {
            ApiError::new(415, "UnsupportedMediaType", e.to_string())
        }
        PatchError::Malformed(_) | PatchError::InvalidApply(_) => {
            ApiError::bad_request(e.to_string())
        }
        PatchError::JsonPatchFailed { .. } | PatchError::Unprocessable(_) => {
            ApiError::new(422, "Invalid", e.to_string())
        }
    }
}

/// A JSON patch as upstream applies it to a built-in kind: against the object as Go
/// serializes it, where a status struct is always present (`"status": {}`), so
/// `add /status/x` works on an object without status yet. A status left empty is dropped
/// again, as skiff stores it.
fn json_patch_builtin(
    rt: &ResourceType,
    old: &Value,
    patch_doc: &Value,
) -> Result<Value, PatchError> {
    let fill = rt.custom.is_none()
        && rt.subresources.contains(&Subresource::Status)
        && old.get("status").is_none();
    if !fill {
        return patch::json_patch(old, patch_doc);
    }
    let mut filled = old.clone();
    filled["status"] = Value::Object(Default::default());
    let mut out = patch::json_patch(&filled, patch_doc)?;
    if out["status"].as_object().is_some_and(|m| m.is_empty()) {
        if let Some(m) = out.as_object_mut() {
            m.remove("status");
        }
    }
    Ok(out)
}

pub async fn patch(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    q: &Query,
    req: Request<RequestBody>,
    manager: String,
    user: &UserInfo,
) -> Result<Response<Body>, ApiError> {
    let rt = rr.rt.clone();
    let name = rr.name.clone().unwrap_or_default();
    let raw = read_body(req).await?;
    let ct = raw.content_type.clone().unwrap_or_default();
    let ptype = patch::patch_type_from_content_type(&ct)
        .ok_or_else(|| ApiError::unsupported_media_type(&ct))?;
    let (patch_doc, warnings) = match ptype {
        PatchType::Apply => body::decode_apply(&rt, &raw.bytes, q.field_validation, &name)?,
        PatchType::Json => (body::decode_json(&raw.bytes)?, Vec::new()),
        PatchType::Merge | PatchType::Strategic => {
            body::decode_merge_patch(&rt, &raw.bytes, q.field_validation)?
        }
    };
    if ptype == PatchType::Apply && q.field_manager.is_none() {
        return Err(ApiError::bad_request(
            "PATCH /apply requires fieldManager to be set",
        ));
    }
    if ptype == PatchType::Apply {
        let mut check = patch_doc.clone();
        objects::check_type(&rt, &mut check)?;
        let body_name = name_of(&check);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
    }
    let opts = WriteOptions {
        subresource: rr.subresource,
        through_scale: false,
        field_manager: manager.clone(),
        // The apply entry, not an update entry, owns the fields an apply sets.
        server_side_apply: ptype == PatchType::Apply,
        // Server-side apply may create the object.
        requester: requester_for(&rt, user),
    };
    let force = q.force;
    let ns = rr.namespace.clone();
    let may_create = ptype == PatchType::Apply && rr_is_main(opts.subresource);
    let subresource = opts.recorded_subresource();
    // Cluster IPs given to Services this apply would create: the closure may run more than
    // once (lost races), and only an object actually stored keeps its address.
    let mut allocated_ips: Vec<String> = Vec::new();
    let admitted = write_admitted(
        state,
        &rt,
        rr.namespace.as_deref(),
        &name,
        user,
        q.dry_run,
        &opts.clone(),
        may_create,
        |cur| {
            let now = objects::now_rfc3339();
            let av = rt.api_version();
            let apply = |live, force| {
                patch::apply(
                    live,
                    &patch_doc,
                    &manager,
                    subresource,
                    force,
                    &rt.group,
                    &rt.kind,
                    &av,
                    &now,
                )
            };
            match cur {
                None if may_create => {
                    // Server-side apply is an upsert.
                    let mut obj = apply(None, force).map_err(|e| patch_error(&rt, &name, e))?;
                    if obj["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .is_empty()
                    {
                        obj["metadata"]["name"] = Value::String(name.clone());
                    }
                    prepare_create_unvalidated(state, &rt, ns.as_deref(), &mut obj, &opts)?;
                    // Prepared: the address (chosen or allocated) is now held for it.
                    allocated_ips.extend(cluster_ip_taken(&rt, &obj));
                    Ok(Decision::Put { obj, created: true })
                }
                None => Err(ApiError::not_found(&rt, &name)),
                Some(old) => {
                    let patched = match ptype {
                        PatchType::Json => json_patch_builtin(&rt, old, &patch_doc),
                        PatchType::Merge => Ok(patch::merge_patch(old, &patch_doc)),
                        PatchType::Strategic => {
                            if rt.custom.is_some() {
                                Err(PatchError::UnsupportedKind {
                                    group: rt.group.clone(),
                                    kind: rt.kind.clone(),
                                })
                            } else {
                                patch::strategic_merge_patch(old, &patch_doc, &rt.group, &rt.kind)
                            }
                        }
                        PatchType::Apply => match apply(Some(old), force) {
                            Err(PatchError::Conflict { conflicts })
                                if upgrades_client_side_apply(old, &manager, &conflicts) =>
                            {
                                apply(Some(old), true)
                            }
                            other => other,
                        },
                    }
                    .map_err(|e| patch_error(&rt, &name, e))?;
                    // A JSON patch can add anything; what the type lacks is not stored.
                    let mut patched = patched;
                    crate::api::schema::prune(&rt, &mut patched, &mut Vec::new());
                    Ok(Decision::Put {
                        obj: prepare_update_unvalidated(&rt, old, patched, &opts)?,
                        created: false,
                    })
                }
            }
        },
    )
    .await;
    let stored = admitted.as_ref().ok().filter(|_| !q.dry_run);
    give_back_cluster_ips(state, &allocated_ips, stored.map(|a| &a.written));
    let admitted = admitted?;
    let written = admitted.written;
    after_write(state, &rt, &written, q.dry_run).await;
    let code = if matches!(written, Written::Created(..)) {
        201
    } else {
        200
    };
    let mut all = warnings;
    all.extend(admitted.warnings);
    Ok(with_warnings(response::written(code, &written), &all))
}

/// kubectl's move from client-side to server-side apply: like upstream's last-applied
/// manager, `kubectl apply --server-side` (manager `kubectl`) may take over fields that only
/// `kubectl-client-side-apply` holds on an object carrying the last-applied annotation.
fn upgrades_client_side_apply(live: &Value, manager: &str, conflicts: &[(String, String)]) -> bool {
    manager == "kubectl"
        && live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
        && conflicts
            .iter()
            .all(|(m, _)| m.starts_with("\"kubectl-client-side-apply\""))
}

/// The cluster IP a prepared new Service holds (its preparation took it), if any.
fn cluster_ip_taken(rt: &ResourceType, prepared: &Value) -> Option<String> {
    (rt.strategy.bookkeeping == Bookkeeping::ClusterIp)
        .then(|| prepared["spec"]["clusterIP"].as_str().map(str::to_owned))
        .flatten()
}

/// Gives back the cluster IPs a create took (`taken`: one per attempt) but for the one the
/// Service it stored holds (`stored`: `None` after a failure or a dry run, an update when
/// an attempt lost a race to another create).
fn give_back_cluster_ips<'a>(
    state: &ApiState,
    taken: impl IntoIterator<Item = &'a String>,
    stored: Option<&Written>,
) {
    let kept = match stored {
        Some(Written::Created(obj, _)) => obj["spec"]["clusterIP"].as_str(),
        _ => None,
    };
    for ip in taken.into_iter().filter(|ip| Some(ip.as_str()) != kept) {
        state.services.release(ip);
    }
}

fn rr_is_main(sub: Option<Subresource>) -> bool {
    sub.is_none()
}
