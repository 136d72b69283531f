//! What the API server itself keeps in the cluster (upstream's bootstrap controllers): the
//! built-in namespaces, the `kubernetes` Service with its Endpoints and EndpointSlice
//! pointing at this server, and the in-memory service-IP allocations. Namespace deletion,
//! garbage collection and custom-resource cleanup are controllers (`crate::controllers`).
//!
//! Invariant: idempotent; run at every start.

use super::objects::{parse_record, write, Decision};
use super::status::ApiError;
use super::ApiState;
use crate::api::registry::ResourceType;
use serde_json::{json, Value};
use std::sync::Arc;

const BUILTIN_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what every cluster has from the start and rebuilds in-memory allocations.
pub async fn bootstrap(state: &Arc<ApiState>) -> Result<(), ApiError> {
    let ns_rt = state
        .registry
        .lookup("", "v1", "namespaces")
        .ok_or_else(|| ApiError::internal("namespaces are not registered"))?;
    for ns in BUILTIN_NAMESPACES {
        create_if_absent(
            state,
            &ns_rt,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )
        .await?;
    }
    // Service IPs in use.
    let (services, _) = state.store.list("core/services/").await?;
    for r in &services {
        let svc = parse_record(r)?;
        if let Some(ip) = svc["spec"]["clusterIP"]
            .as_str()
            .and_then(|s| s.parse().ok())
        {
            if state.services.contains(ip) {
                state.services.reserve(ip);
            }
        }
    }
    let svc_rt = state
        .registry
        .lookup("", "v1", "services")
        .ok_or_else(|| ApiError::internal("services are not registered"))?;
    let first = state.services.first().to_string();
    create_if_absent(
        state,
        &svc_rt,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kubernetes", "namespace": "default",
                            "labels": {"component": "apiserver", "provider": "kubernetes"}},
               "spec": {"clusterIP": first, "type": "ClusterIP",
                        "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
    )
    .await?;
    kubernetes_endpoints(state).await?;
    super::system_objects::ensure(state).await
}

/// The `kubernetes` Endpoints and EndpointSlice: this server's advertised address, set at
/// every start (the address may have changed).
async fn kubernetes_endpoints(state: &Arc<ApiState>) -> Result<(), ApiError> {
    let ip = state.advertise.ip().to_string();
    let port = state.advertise.port();
    let address_type = if state.advertise.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    };
    let ep_rt = lookup(state, "", "v1", "endpoints")?;
    put(
        state,
        &ep_rt,
        Some("default"),
        json!({"apiVersion": "v1", "kind": "Endpoints",
               "metadata": {"name": "kubernetes", "namespace": "default",
                            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
               "subsets": [{"addresses": [{"ip": ip}],
                            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}),
    )
    .await?;
    let slice_rt = lookup(state, "discovery.k8s.io", "v1", "endpointslices")?;
    put(
        state,
        &slice_rt,
        Some("default"),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "kubernetes", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "kubernetes"}},
               "addressType": address_type,
               "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
               "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
    )
    .await
}

fn lookup(
    state: &ApiState,
    group: &str,
    version: &str,
    plural: &str,
) -> Result<Arc<ResourceType>, ApiError> {
    state
        .registry
        .lookup(group, version, plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))
}

/// Creates `obj`, or replaces the stored one's content (keeping its identity), in one write.
async fn put(
    state: &Arc<ApiState>,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    obj: Value,
) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let opts = super::objects::WriteOptions {
        subresource: None,
        field_manager: "skiff-apiserver".into(),
        ..Default::default()
    };
    let mut fresh = obj.clone();
    super::objects::prepare_create(state, rt, ns, &mut fresh, &opts)?;
    let rt2 = rt.clone();
    write(state, rt, ns, &name, false, move |cur| {
        let Some(cur) = cur else {
            return Ok(Decision::Put {
                obj: fresh.clone(),
                created: true,
            });
        };
        let mut want = obj.clone();
        want["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
        let new = super::objects::prepare_update(&rt2, &cur, want, &opts)?;
        Ok(Decision::Put {
            obj: new,
            created: false,
        })
    })
    .await
    .map(|_| ())
}

async fn create_if_absent(
    state: &Arc<ApiState>,
    rt: &Arc<ResourceType>,
    ns: Option<&str>,
    mut obj: Value,
) -> Result<(), ApiError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if state.store.get(&rt.key(ns, &name)).await?.is_some() {
        return Ok(());
    }
    let opts = super::objects::WriteOptions {
        subresource: None,
        field_manager: "skiff-apiserver".into(),
        ..Default::default()
    };
    super::objects::prepare_create(state, rt, ns, &mut obj, &opts)?;
    let r = write(state, rt, ns, &name, false, move |cur| {
        Ok(match cur {
            Some(existing) => Decision::Keep(existing),
            None => Decision::Put {
                obj: obj.clone(),
                created: true,
            },
        })
    })
    .await;
    r.map(|_| ())
}
