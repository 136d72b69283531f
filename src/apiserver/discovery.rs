//! Discovery: `/version`, aggregated (apidiscovery.k8s.io/v2) and legacy `/api`, `/apis`,
//! `/apis/<group>`, `/api/v1`, `/apis/<group>/<version>`.

use super::response::{self, Body};
use super::status::ApiError;
use super::{ApiState, KUBE_GIT_VERSION};
use http::Response;
use serde_json::{json, Value};

const AGGREGATED_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "emulationMajor": "1",
        "emulationMinor": "35",
        "gitVersion": KUBE_GIT_VERSION,
        "gitCommit": option_env!("SKIFF_GIT_COMMIT").unwrap_or("unknown"),
        "gitTreeState": "clean",
        "buildDate": option_env!("SKIFF_BUILD_DATE").unwrap_or("1970-01-01T00:00:00Z"),
        "goVersion": "n/a (rust)",
        "compiler": "rustc",
        "platform": format!("linux/{}", if cfg!(target_arch = "x86_64") { "amd64" } else if cfg!(target_arch = "aarch64") { "arm64" } else { std::env::consts::ARCH }),
    })
}

/// Which aggregated discovery version the client accepts, if any.
fn aggregated_version(accept: Option<&str>) -> Option<&'static str> {
    let accept = accept?;
    for part in accept.split(',') {
        let p: Vec<&str> = part.split(';').map(str::trim).collect();
        let has = |kv: &str| p.contains(&kv);
        if has("as=APIGroupDiscoveryList") && has("g=apidiscovery.k8s.io") {
            if has("v=v2") {
                return Some("v2");
            }
            if has("v=v2beta1") {
                return Some("v2beta1");
            }
        }
    }
    None
}

fn group_discovery(state: &ApiState, group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = state
                .registry
                .resources_of(group, v)
                .iter()
                .map(|r| r.discovery_v2())
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

fn aggregated(state: &ApiState, core: bool, version: &str) -> Response<Body> {
    let items: Vec<Value> = state
        .registry
        .groups()
        .into_iter()
        .filter(|g| g.name.is_empty() == core)
        .map(|g| group_discovery(state, &g.name, &g.versions))
        .collect();
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    });
    let ct = if version == "v2" {
        AGGREGATED_V2
    } else {
        AGGREGATED_V2BETA1
    };
    response::json_typed(200, ct, &body)
}

pub fn core(state: &ApiState, accept: Option<&str>) -> Response<Body> {
    if let Some(v) = aggregated_version(accept) {
        return aggregated(state, true, v);
    }
    response::json(
        200,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }),
    )
}

fn api_group(g: &crate::api::registry::GroupInfo) -> Value {
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{}/{v}", g.name), "version": v}))
        .collect();
    json!({
        "name": g.name,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn groups(state: &ApiState, accept: Option<&str>) -> Response<Body> {
    if let Some(v) = aggregated_version(accept) {
        return aggregated(state, false, v);
    }
    let groups: Vec<Value> = state
        .registry
        .groups()
        .iter()
        .filter(|g| !g.name.is_empty())
        .map(api_group)
        .collect();
    response::json(
        200,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
    )
}

pub fn group(state: &ApiState, name: &str) -> Result<Response<Body>, ApiError> {
    let g = state
        .registry
        .groups()
        .into_iter()
        .find(|g| g.name == name && !name.is_empty())
        .ok_or_else(ApiError::no_route)?;
    let mut body = api_group(&g);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Ok(response::json(200, &body))
}

pub fn resource_list(
    state: &ApiState,
    group: &str,
    version: &str,
) -> Result<Response<Body>, ApiError> {
    if !state.registry.group_version_exists(group, version) {
        return Err(ApiError::no_route());
    }
    let resources: Vec<Value> = state
        .registry
        .resources_of(group, version)
        .iter()
        .flat_map(|r| r.discovery_v1())
        .collect();
    let gv = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Ok(response::json(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    ))
}
