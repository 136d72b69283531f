//! The API objects upstream's control plane keeps for itself, written at every start:
//! the system PriorityClasses (scheduling bootstrap), one Local APIService per served
//! built-in group/version (the aggregator's autoregistration), the mandatory API Priority
//! and Fairness objects (`apf_bootstrap`), the default `kubernetes` ServiceCIDR and the
//! default `local-path` StorageClass (k3s ships it; `controllers::persistentvolume`
//! provisions its volumes). The APIServices of custom groups (upstream's crdregistration controller) follow every CRD
//! write ([`sync_custom_api_services`]).
//!
//! Invariant: idempotent, one store write per object that needs one (none when it is as
//! wanted), and user changes upstream lets users make are kept: PriorityClasses and the
//! ServiceCIDR (and the StorageClass) are only created when absent. The mandatory APF objects get their spec back
//! at every start, as upstream's `apf_bootstrap` does for mandatory (not suggested) objects,
//! whatever `apf.kubernetes.io/autoupdate-spec` says.

use super::objects::{self, write, Decision, WriteOptions};
use super::status::ApiError;
use super::ApiState;
use crate::api::registry::ResourceType;
use crate::api::strategy::{apiregistration, cluster, flowcontrol, networking, scheduling};
use serde_json::{json, Value};
use std::sync::Arc;

/// What to do with a stored object that differs from the wanted one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reconcile {
    /// Leave it (the user may have changed it).
    CreateOnly,
    /// Make spec and status what we want.
    SpecAndStatus,
    /// Make the spec (and the APF auto-update annotation) what we want.
    Spec,
}

pub async fn ensure(state: &Arc<ApiState>) -> Result<(), ApiError> {
    let now = objects::now_rfc3339();
    let pc_rt = lookup(state, "scheduling.k8s.io", "priorityclasses")?;
    for spc in scheduling::SYSTEM_PRIORITY_CLASSES {
        let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": spc.name}, "value": spc.value, "description": spc.description});
        ensure_one(state, &pc_rt, pc, Reconcile::CreateOnly).await?;
    }

    let (levels, schemas) = flowcontrol::mandatory_objects();
    let pl_rt = lookup(
        state,
        "flowcontrol.apiserver.k8s.io",
        "prioritylevelconfigurations",
    )?;
    for pl in levels {
        ensure_one(state, &pl_rt, pl, Reconcile::Spec).await?;
    }
    let fs_rt = lookup(state, "flowcontrol.apiserver.k8s.io", "flowschemas")?;
    for fs in schemas {
        ensure_one(state, &fs_rt, fs, Reconcile::Spec).await?;
    }

    let sc_rt = lookup(state, "networking.k8s.io", "servicecidrs")?;
    let cidr = networking::default_service_cidr(&[state.services.cidr()], &now);
    ensure_one(state, &sc_rt, cidr, Reconcile::CreateOnly).await?;

    // Created only when absent: users may edit it or take its default annotation away.
    let class_rt = lookup(state, "storage.k8s.io", "storageclasses")?;
    let class = cluster::local_path_storage_class();
    ensure_one(state, &class_rt, class, Reconcile::CreateOnly).await?;

    api_services(state, &now).await?;
    custom_api_services(state).await
}

/// Label value of APIServices kept continuously (custom groups) rather than at start.
const MANAGED_CONTINUOUSLY: &str = "true";
const MANAGED_LABEL: &str = "kube-aggregator.kubernetes.io/automanaged";

/// Brings the custom groups' APIServices in step with the served custom types after a CRD
/// write; a failure is logged (the next CRD write or start retries), never the request's.
pub async fn sync_custom_api_services(state: &ApiState) {
    if let Err(e) = custom_api_services(state).await {
        tracing::warn!(error = %e, "syncing the APIServices of custom resource groups");
    }
}

/// One Local APIService per served custom group/version (groupPriorityMinimum 1000,
/// versionPriority 100, as upstream's crdregistration controller), unless a built-in
/// group/version has it; stale ones go.
async fn custom_api_services(state: &ApiState) -> Result<(), ApiError> {
    let _one_at_a_time = state.crd_api_services.lock().await;
    let rt = lookup(state, "apiregistration.k8s.io", "apiservices")?;
    let now = objects::now_rfc3339();
    let mut wanted: Vec<String> = Vec::new();
    for t in state.registry.all() {
        let builtin = apiregistration::priority(&t.group, &t.version).is_some()
            || t.group == "apiregistration.k8s.io";
        let name = apiregistration::name_of(&t.group, &t.version);
        if t.custom.is_none() || builtin || wanted.contains(&name) {
            continue;
        }
        wanted.push(name.clone());
        let svc = json!({
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": name, "labels": {MANAGED_LABEL: MANAGED_CONTINUOUSLY}},
            "spec": {"group": t.group, "version": t.version,
                     "groupPriorityMinimum": 1000, "versionPriority": 100},
            "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local",
                "message": "Local APIServices are always available", "lastTransitionTime": now}]},
        });
        ensure_one(state, &rt, svc, Reconcile::SpecAndStatus).await?;
    }
    let (records, _) = state.store.list(&rt.storage_prefix()).await?;
    for r in &records {
        let svc = objects::parse_record(r)?;
        let name = objects::name_of(&svc).to_owned();
        let continuous =
            svc["metadata"]["labels"][MANAGED_LABEL].as_str() == Some(MANAGED_CONTINUOUSLY);
        if continuous && !wanted.contains(&name) {
            write(state, &rt, None, &name, false, |cur| {
                Ok(match cur {
                    Some(c) => Decision::Delete(c),
                    None => Decision::Keep(Value::Null),
                })
            })
            .await?;
        }
    }
    Ok(())
}

/// One APIService per served built-in group/version; stale auto-managed ones (a version no
/// longer served) are removed.
async fn api_services(state: &ApiState, now: &str) -> Result<(), ApiError> {
    let rt = lookup(state, "apiregistration.k8s.io", "apiservices")?;
    let mut wanted = Vec::new();
    for g in state.registry.groups() {
        for v in &g.versions {
            if let Some(svc) = apiregistration::local_api_service(&g.name, v, now) {
                wanted.push(
                    svc["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
                ensure_one(state, &rt, svc, Reconcile::SpecAndStatus).await?;
            }
        }
    }
    let (records, _) = state.store.list(&rt.storage_prefix()).await?;
    for r in &records {
        let svc = objects::parse_record(r)?;
        let name = objects::name_of(&svc).to_owned();
        let automanaged = svc["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"]
            .as_str()
            == Some("onstart");
        if automanaged && !wanted.contains(&name) {
            write(state, &rt, None, &name, false, |cur| {
                Ok(match cur {
                    Some(c) => Decision::Delete(c),
                    None => Decision::Keep(Value::Null),
                })
            })
            .await?;
        }
    }
    Ok(())
}

fn lookup(state: &ApiState, group: &str, plural: &str) -> Result<Arc<ResourceType>, ApiError> {
    state
        .registry
        .lookup(group, "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("{plural}.{group} are not registered")))
}

/// Everything of `obj` but metadata (what reconciling compares).
fn body(obj: &Value, with_status: bool) -> Value {
    let mut b = obj.clone();
    if let Some(o) = b.as_object_mut() {
        o.remove("metadata");
        o.remove("apiVersion");
        o.remove("kind");
        if !with_status {
            o.remove("status");
        }
    }
    b
}

/// Creates `want` when absent, else reconciles the stored object as `how` says, in one
/// write (none when nothing changes).
async fn ensure_one(
    state: &ApiState,
    rt: &Arc<ResourceType>,
    want: Value,
    how: Reconcile,
) -> Result<(), ApiError> {
    let name = objects::name_of(&want).to_owned();
    let opts = WriteOptions {
        subresource: None,
        field_manager: "skiff-apiserver".into(),
        ..Default::default()
    };
    // Defaulting first, so a stored object (defaulted when written) compares equal.
    let mut fresh = want.clone();
    objects::prepare_create(state, rt, None, &mut fresh, &opts)?;
    if let Some(status) = want.get("status") {
        fresh["status"] = status.clone();
    }
    let rt2 = rt.clone();
    write(state, rt, None, &name, false, move |cur| {
        let Some(cur) = cur else {
            return Ok(Decision::Put {
                obj: fresh.clone(),
                created: true,
            });
        };
        let with_status = how == Reconcile::SpecAndStatus;
        let annotations_differ = fresh["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
            .any(|(k, v)| &cur["metadata"]["annotations"][k] != v);
        if how == Reconcile::CreateOnly
            || (body(&cur, with_status) == body(&fresh, with_status) && !annotations_differ)
        {
            return Ok(Decision::Keep(cur));
        }
        let mut new = cur.clone();
        for (k, v) in fresh.as_object().into_iter().flatten() {
            if !matches!(k.as_str(), "metadata" | "status") {
                new[k] = v.clone();
            }
        }
        for (k, v) in fresh["metadata"]["labels"]
            .as_object()
            .into_iter()
            .flatten()
        {
            new["metadata"]["labels"][k] = v.clone();
        }
        for (k, v) in fresh["metadata"]["annotations"]
            .as_object()
            .into_iter()
            .flatten()
        {
            new["metadata"]["annotations"][k] = v.clone();
        }
        let mut new = objects::prepare_update(&rt2, &cur, new, &opts)?;
        if with_status {
            new["status"] = fresh["status"].clone();
        }
        Ok(Decision::Put {
            obj: new,
            created: false,
        })
    })
    .await
    .map(|_| ())
}
