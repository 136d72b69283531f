//! Minimal OpenAPI v3: an index of group-versions and per-group-version documents that list
//! every kind's PATCH operation with the `fieldValidation` parameter. That is what kubectl's
//! and helm's validation check for; real schemas are not served.

use super::response::{self, Body};
use super::status::ApiError;
use super::ApiState;
use http::Response;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

fn document_for(state: &ApiState, group: &str, version: &str) -> Option<Value> {
    let resources = state.registry.resources_of(group, version);
    if resources.is_empty() {
        return None;
    }
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for r in resources {
        let item = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let params = json!([
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ]);
        let op = |action: &str| {
            json!({
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
            })
        };
        paths.insert(
            item,
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
        let schema_name = format!(
            "{}.{}.{}",
            if r.group.is_empty() {
                "io.k8s.api.core"
            } else {
                &r.group
            },
            r.version,
            r.kind
        );
        schemas.insert(
            schema_name,
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [gvk],
                "x-kubernetes-preserve-unknown-fields": true,
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": super::KUBE_GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

fn hash(doc: &Value) -> String {
    hex::encode_upper(Sha256::digest(doc.to_string().as_bytes()))
}

pub fn index(state: &ApiState) -> Response<Body> {
    let mut paths = Map::new();
    for g in state.registry.groups() {
        for v in &g.versions {
            let Some(doc) = document_for(state, &g.name, v) else {
                continue;
            };
            let key = if g.name.is_empty() {
                format!("api/{v}")
            } else {
                format!("apis/{}/{v}", g.name)
            };
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", hash(&doc))}),
            );
        }
    }
    response::json(200, &json!({"paths": paths}))
}

pub fn document(state: &ApiState, group: &str, version: &str) -> Result<Response<Body>, ApiError> {
    let doc = document_for(state, group, version).ok_or_else(ApiError::no_route)?;
    Ok(response::json(200, &doc))
}

/// `/openapi/v2` as kubectl requests it (gnostic `openapi_v2.Document` in protobuf): a valid
/// document without definitions. kubectl falls back to it for kinds the v3 index does not
/// list yet (a custom resource whose CRD is in the same file); with no schema for a kind it
/// skips client-side validation, as against kube-apiserver for schemaless kinds.
pub fn v2_document() -> Response<Body> {
    fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
        // Length-delimited field (wire type 2); every length here is < 128.
        let mut out = vec![(tag << 3) | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }
    let mut info = field(1, b"Kubernetes");
    info.extend(field(2, super::KUBE_GIT_VERSION.as_bytes()));
    let mut doc = field(1, b"2.0"); // swagger
    doc.extend(field(2, &info)); // info
    doc.extend(field(8, &[])); // paths
    response::bytes(
        200,
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        bytes::Bytes::from(doc),
    )
}
