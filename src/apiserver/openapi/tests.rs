use super::*;
use crate::api::registry::types_from_crd;
use serde_json::json;

fn crd(versions: Value) -> Value {
    json!({
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
            "versions": versions,
        },
    })
}

fn schema() -> Value {
    json!({
        "type": "object",
        "description": "A cron tab",
        "properties": {"spec": {"type": "object", "description": "Specification of CronTab",
            "properties": {"cronSpec": {"type": "string", "description": "When to run"}}}},
    })
}

fn v2_of(registry: &Registry) -> Value {
    let r = render(registry, registry.generation());
    serde_json::from_slice(&r.v2_json).expect("v2 is JSON")
}

#[test]
fn crd_schema_is_published_under_its_reversed_group_name() {
    let registry = Registry::new();
    registry.set_custom(
        "crontabs.stable.example.com",
        types_from_crd(&crd(json!([
            {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema()}},
        ]))),
    );
    let doc = v2_of(&registry);
    assert_eq!(doc["swagger"], "2.0");
    let def = &doc["definitions"]["com.example.stable.v1.CronTab"];
    assert_eq!(def["description"], "A cron tab");
    assert_eq!(
        def["properties"]["spec"]["properties"]["cronSpec"]["type"],
        "string"
    );
    assert_eq!(
        def["properties"]["metadata"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(doc["definitions"][schema::OBJECT_META].is_object());
    assert_eq!(
        def["x-kubernetes-group-version-kind"],
        json!([{"group": "stable.example.com", "version": "v1", "kind": "CronTab"}])
    );
    // Built-in kinds are there too, under their package names.
    assert!(doc["definitions"]["io.k8s.api.core.v1.Pod"].is_object());
    assert!(doc["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());
    assert!(doc["definitions"]["io.k8s.api.rbac.v1.Role"].is_object());
    // Kinds of the other apiservers keep upstream's definition names.
    assert!(
        doc["definitions"]["io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.APIService"]
            .is_object()
    );
    assert!(doc["definitions"]["io.k8s.api.flowcontrol.v1.FlowSchema"].is_object());
    assert!(
        doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"]
            .is_object()
    );
}

#[test]
fn definition_disappears_when_its_version_stops_being_served_or_the_crd_goes() {
    let registry = Registry::new();
    let version = |name: &str, served: bool| {
        json!({"name": name, "served": served, "storage": name == "v1",
               "schema": {"openAPIV3Schema": schema()}})
    };
    let name = "crontabs.stable.example.com";
    registry.set_custom(
        name,
        types_from_crd(&crd(json!([version("v1", true), version("v2", true)]))),
    );
    let doc = v2_of(&registry);
    assert!(doc["definitions"]["com.example.stable.v2.CronTab"].is_object());
    registry.set_custom(
        name,
        types_from_crd(&crd(json!([version("v1", true), version("v2", false)]))),
    );
    let doc = v2_of(&registry);
    assert!(doc["definitions"]["com.example.stable.v1.CronTab"].is_object());
    assert!(doc["definitions"]
        .get("com.example.stable.v2.CronTab")
        .is_none());
    registry.set_custom(name, Vec::new());
    let doc = v2_of(&registry);
    assert!(doc["definitions"]
        .get("com.example.stable.v1.CronTab")
        .is_none());
}

#[test]
fn v3_document_carries_the_crd_schema_for_explain() {
    let registry = Registry::new();
    registry.set_custom(
        "crontabs.stable.example.com",
        types_from_crd(&crd(json!([
            {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema()}},
        ]))),
    );
    let r = render(&registry, registry.generation());
    let doc: Value =
        serde_json::from_slice(&r.v3["apis/stable.example.com/v1"]).expect("v3 is JSON");
    let s = &doc["components"]["schemas"]["com.example.stable.v1.CronTab"];
    assert_eq!(
        s["properties"]["spec"]["description"],
        "Specification of CronTab"
    );
    assert_eq!(
        s["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    let index: Value = serde_json::from_slice(&r.v3_index).expect("index is JSON");
    let url = index["paths"]["apis/stable.example.com/v1"]["serverRelativeURL"]
        .as_str()
        .expect("url");
    assert!(url.starts_with("/openapi/v3/apis/stable.example.com/v1?hash="));
}

#[test]
fn preserve_unknown_root_is_a_bare_object_in_v2() {
    let registry = Registry::new();
    registry.set_custom(
        "crontabs.stable.example.com",
        types_from_crd(&crd(json!([{"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]))),
    );
    let doc = v2_of(&registry);
    let def = &doc["definitions"]["com.example.stable.v1.CronTab"];
    assert_eq!(def["type"], "object");
    assert!(def.get("properties").is_none());
}

#[test]
fn cache_rebuilds_only_when_the_served_types_change() {
    let registry = Registry::new();
    let cache = Cache::default();
    let a = cache.get(&registry);
    let b = cache.get(&registry);
    assert!(Arc::ptr_eq(&a, &b));
    registry.set_custom(
        "crontabs.stable.example.com",
        types_from_crd(&crd(
            json!([{"name": "v1", "served": true, "storage": true}]),
        )),
    );
    let c = cache.get(&registry);
    assert!(!Arc::ptr_eq(&a, &c));
    assert_ne!(a.v2_etag, c.v2_etag);
}

#[tokio::test]
async fn v2_is_json_by_default_protobuf_on_request_and_304_on_a_matching_etag() {
    let srv = crate::apiserver::testing::TestServer::start().await;
    let mut headers = HeaderMap::new();
    let resp = v2(&srv.state, &headers);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let etag = resp.headers()["etag"].clone();
    headers.insert(http::header::IF_NONE_MATCH, etag);
    assert_eq!(v2(&srv.state, &headers).status(), 304);
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static(V2_PROTOBUF_ACCEPT),
    );
    let resp = v2(&srv.state, &headers);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], V2_PROTOBUF_CT);
}

#[test]
fn v2_definition_is_the_crd_schema_plus_type_meta_only() {
    // What the conformance suite compares: drop apiVersion, kind, metadata and the GVK
    // extension, and the rest must equal the CRD's schema.
    let registry = Registry::new();
    let with_enum = json!({
        "type": "object",
        "description": "Foo",
        "properties": {"spec": {"type": "object", "properties": {"bars": {"type": "array",
            "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"},
                "feeling": {"type": "string", "enum": ["Great", "Down"]}}}}}}},
    });
    registry.set_custom(
        "crontabs.stable.example.com",
        types_from_crd(&crd(json!([{"name": "v1", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": with_enum}}]))),
    );
    let mut def = v2_of(&registry)["definitions"]["com.example.stable.v1.CronTab"].clone();
    let o = def.as_object_mut().expect("object");
    o.remove("x-kubernetes-group-version-kind");
    let props = o["properties"].as_object_mut().expect("properties");
    for added in ["apiVersion", "kind", "metadata"] {
        assert!(props.remove(added).is_some(), "{added} added");
    }
    assert_eq!(def, with_enum);
}
