//! The OpenAPI documents: `/openapi/v2` (JSON by default, protobuf on request) and
//! `/openapi/v3` (an index of group-versions plus one document per group-version).
//!
//! Both are derived from the registry by [`schema`]: every served kind, custom resources with
//! the schema of their CRD version. Each kind's item path lists PUT/PATCH with the
//! `fieldValidation` parameter, which is what kubectl and helm look for before they leave
//! validation to the server.
//!
//! Invariant: the rendered documents are cached and rebuilt only when the registry's
//! generation changes (a CRD created, changed or deleted), so a poll of `/openapi/v2` costs a
//! lock and a clone of `Bytes`. The cache holds one rendering (tens of KB).

mod proto;
mod schema;

use super::response::{self, Body};
use super::status::ApiError;
use super::ApiState;
use crate::api::registry::{Registry, ResourceType};
use bytes::Bytes;
use http::{HeaderMap, Response};
use parking_lot::Mutex;
use schema::Flavor;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;

/// Media type of the protobuf v2 document, as clients ask for it.
const V2_PROTOBUF_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// ... and as upstream labels the answer.
const V2_PROTOBUF_CT: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The documents for one registry generation, rendered once.
struct Rendered {
    generation: u64,
    v2_json: Bytes,
    v2_etag: String,
    v2_protobuf: Bytes,
    v2_protobuf_etag: String,
    v3_index: Bytes,
    /// Keyed by `api/v1` / `apis/<group>/<version>`.
    v3: HashMap<String, Bytes>,
}

/// Rendered documents, shared by all requests.
#[derive(Default)]
pub struct Cache(Mutex<Option<Arc<Rendered>>>);

impl Cache {
    fn get(&self, registry: &Registry) -> Arc<Rendered> {
        // Held while rendering, so concurrent pollers after a change render once.
        let mut slot = self.0.lock();
        let generation = registry.generation();
        match slot.as_ref() {
            Some(r) if r.generation == generation => r.clone(),
            _ => {
                let r = Arc::new(render(registry, generation));
                *slot = Some(r.clone());
                r
            }
        }
    }
}

fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", hex::encode_upper(Sha256::digest(bytes)))
}

fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn item_path(rt: &ResourceType) -> String {
    let prefix = format!("/{}", gv_key(&rt.group, &rt.version));
    if rt.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", rt.plural)
    } else {
        format!("{prefix}/{}/{{name}}", rt.plural)
    }
}

/// The item path's operations. Only writable kinds get PUT/PATCH (their `fieldValidation`
/// parameter is what clients probe for).
fn operations(rt: &ResourceType, flavor: Flavor) -> Value {
    let definition = schema::definition_name(rt);
    let param = |name: &str| match flavor {
        Flavor::V2 => json!({"name": name, "in": "query", "type": "string", "uniqueItems": true}),
        Flavor::V3 => {
            json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
        }
    };
    let ok = match flavor {
        Flavor::V2 => {
            json!({"200": {"description": "OK", "schema": {"$ref": format!("#/definitions/{definition}")}}})
        }
        Flavor::V3 => json!({"200": {"description": "OK", "content": {"application/json": {
            "schema": {"$ref": format!("#/components/schemas/{definition}")}}}}}),
    };
    let op = |action: &str, params: Value| {
        json!({
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": schema::gvk(rt),
            "parameters": params,
            "responses": ok,
        })
    };
    let writes = json!([
        param("fieldValidation"),
        param("fieldManager"),
        param("dryRun")
    ]);
    let mut ops = Map::new();
    for (verb, method, params) in [
        ("get", "get", json!([])),
        ("update", "put", writes.clone()),
        ("patch", "patch", writes.clone()),
        ("delete", "delete", json!([param("dryRun")])),
    ] {
        if rt.has_verb(verb) {
            ops.insert(method.into(), op(method, params));
        }
    }
    Value::Object(ops)
}

/// `/openapi/v2` as JSON: every served kind under `definitions`.
fn v2_document(types: &[Arc<ResourceType>]) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    definitions.insert(schema::OBJECT_META.into(), schema::object_meta());
    for rt in types {
        let ops = operations(rt, Flavor::V2);
        if ops.as_object().is_some_and(|o| !o.is_empty()) {
            paths.insert(item_path(rt), ops);
        }
        definitions.insert(
            schema::definition_name(rt),
            schema::kind_schema(rt, Flavor::V2),
        );
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": super::KUBE_GIT_VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}

/// One group-version's v3 document.
fn v3_document(types: &[&Arc<ResourceType>]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(schema::OBJECT_META.into(), schema::object_meta());
    for rt in types {
        paths.insert(item_path(rt), operations(rt, Flavor::V3));
        schemas.insert(
            schema::definition_name(rt),
            schema::kind_schema(rt, Flavor::V3),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": super::KUBE_GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn render(registry: &Registry, generation: u64) -> Rendered {
    let types = registry.all();
    let v2_json = Bytes::from(v2_document(&types).to_string());
    let v2_protobuf = proto::minimal_v2_document();
    let mut v3 = HashMap::new();
    let mut index = Map::new();
    for g in registry.groups() {
        for v in &g.versions {
            let of_gv: Vec<_> = types
                .iter()
                .filter(|r| r.group == g.name && &r.version == v)
                .collect();
            let doc = Bytes::from(v3_document(&of_gv).to_string());
            let key = gv_key(&g.name, v);
            let hash = hex::encode_upper(Sha256::digest(&doc));
            index.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            );
            v3.insert(key, doc);
        }
    }
    Rendered {
        generation,
        v2_etag: etag_of(&v2_json),
        v2_json,
        v2_protobuf_etag: etag_of(&v2_protobuf),
        v2_protobuf,
        v3_index: Bytes::from(json!({"paths": index}).to_string()),
        v3,
    }
}

pub fn index(state: &ApiState) -> Response<Body> {
    let r = state.openapi.get(&state.registry);
    response::bytes(200, "application/json", r.v3_index.clone())
}

pub fn document(state: &ApiState, group: &str, version: &str) -> Result<Response<Body>, ApiError> {
    let r = state.openapi.get(&state.registry);
    let doc =
        r.v3.get(&gv_key(group, version))
            .ok_or_else(ApiError::no_route)?;
    Ok(response::bytes(200, "application/json", doc.clone()))
}

/// `/openapi/v2`: protobuf when the client asks for it (kubectl's fallback path), else JSON.
/// `If-None-Match` with the current ETag gets 304, as pollers rely on.
pub fn v2(state: &ApiState, headers: &HeaderMap) -> Response<Body> {
    let r = state.openapi.get(&state.registry);
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let wants_protobuf = header(http::header::ACCEPT).is_some_and(|a| {
        a.split(',').any(|m| {
            let media = m.split(';').next().unwrap_or_default().trim();
            media == V2_PROTOBUF_ACCEPT || media == V2_PROTOBUF_CT
        })
    });
    let (body, etag, ct) = if wants_protobuf {
        (&r.v2_protobuf, &r.v2_protobuf_etag, V2_PROTOBUF_CT)
    } else {
        (&r.v2_json, &r.v2_etag, "application/json")
    };
    let matches = header(http::header::IF_NONE_MATCH).is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim() == etag.as_str() || t.trim() == "*")
    });
    let mut resp = if matches {
        response::bytes(304, ct, Bytes::new())
    } else {
        response::bytes(200, ct, body.clone())
    };
    if let Ok(v) = http::HeaderValue::from_str(etag) {
        resp.headers_mut().insert(http::header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests;
