//! Field validation through the handlers: `?fieldValidation=` on create, update and patch,
//! pruning of unknown fields from stored objects, CRD schema defaults on write and read, and
//! dry-run writes of a CRD leaving the served types alone.

use super::testing::TestServer;
use super::InProcessService;
use super::UserInfo;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Reply {
    code: u16,
    body: Value,
    warnings: Vec<String>,
}

async fn send(srv: &TestServer, method: &str, uri: &str, ct: &str, body: &str) -> Reply {
    let svc = InProcessService::new(
        srv.state.clone(),
        UserInfo::new("system:admin", &["system:masters"]),
    );
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", ct)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))
        .expect("request");
    let resp = svc.oneshot(req).await.expect("infallible");
    let code = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    Reply {
        code,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        warnings,
    }
}

const DEPLOYMENT: &str = r#"{"apiVersion": "apps/v1", "kind": "Deployment",
  "metadata": {"name": "my-dep", "labels": {"app": "nginx"}},
  "spec": {"unknownField": "foo", "replicas": 2, "replicas": 3,
    "selector": {"matchLabels": {"app": "nginx"}},
    "template": {"metadata": {"labels": {"app": "nginx"}},
      "spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}}}}"#;

#[tokio::test]
async fn strict_creates_with_unknown_or_duplicate_fields_fail_with_upstreams_message() {
    let srv = TestServer::start().await;
    let uri = "/apis/apps/v1/namespaces/default/deployments";
    let r = send(
        &srv,
        "POST",
        &format!("{uri}?fieldValidation=Strict"),
        "application/json",
        DEPLOYMENT,
    )
    .await;
    assert_eq!(
        (r.code, r.body["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    assert_eq!(
        r.body["message"],
        r#"strict decoding error: unknown field "spec.unknownField", duplicate field "spec.replicas""#
    );
    assert_eq!(
        send(
            &srv,
            "GET",
            &format!("{uri}/my-dep"),
            "application/json",
            ""
        )
        .await
        .code,
        404
    );
}

#[tokio::test]
async fn warn_creates_store_the_object_without_unknown_fields_and_say_so() {
    let srv = TestServer::start().await;
    let uri = "/apis/apps/v1/namespaces/default/deployments";
    let r = send(&srv, "POST", uri, "application/json", DEPLOYMENT).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(
        r.warnings,
        [
            r#"299 - "unknown field \"spec.unknownField\"""#,
            r#"299 - "duplicate field \"spec.replicas\"""#
        ]
    );
    let stored = send(
        &srv,
        "GET",
        &format!("{uri}/my-dep"),
        "application/json",
        "",
    )
    .await
    .body;
    assert!(stored["spec"].get("unknownField").is_none(), "{stored}");
    assert_eq!(stored["spec"]["replicas"], 3);

    let cm = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "unknownMeta": 1}, "bogus": 1}"#;
    let cms = "/api/v1/namespaces/default/configmaps";
    let r = send(
        &srv,
        "POST",
        &format!("{cms}?fieldValidation=Ignore"),
        "application/json",
        cm,
    )
    .await;
    assert_eq!((r.code, r.warnings.len()), (201, 0));
    assert!(r.body.get("bogus").is_none() && r.body["metadata"].get("unknownMeta").is_none());
    let r = send(
        &srv,
        "PUT",
        &format!("{cms}/c?fieldValidation=Strict"),
        "application/json",
        cm,
    )
    .await;
    assert_eq!(
        r.body["message"],
        r#"strict decoding error: unknown field "bogus", unknown field "metadata.unknownMeta""#
    );
    let r = send(
        &srv,
        "PATCH",
        &format!("{cms}/c"),
        "application/merge-patch+json",
        r#"{"bogus": 2, "data": {"a": "b"}}"#,
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.warnings, [r#"299 - "unknown field \"bogus\"""#]);
    assert!(r.body.get("bogus").is_none());
    assert_eq!(r.body["data"]["a"], "b");
}

fn crd(default_foo: Option<&str>) -> String {
    let mut foo = json!({"type": "string"});
    if let Some(d) = default_foo {
        foo["default"] = json!(d);
    }
    json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "noxus.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "noxus", "singular": "noxu", "kind": "Noxu", "listKind": "NoxuList"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "foo": foo,
                    "replicas": {"type": "integer", "default": 1},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}}}]}
    })
    .to_string()
}

#[tokio::test]
async fn custom_resources_are_pruned_by_their_schema_and_defaulted_on_write_and_read() {
    let srv = TestServer::start().await;
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    assert_eq!(
        send(&srv, "POST", crds, "application/json", &crd(None))
            .await
            .code,
        201
    );
    let uri = "/apis/example.com/v1/namespaces/default/noxus";
    let cr = r#"{"apiVersion": "example.com/v1", "kind": "Noxu", "metadata": {"name": "a"},
                 "unknownField": 1, "spec": {"bar": 1, "free": {"x": 1}}}"#;
    let r = send(
        &srv,
        "POST",
        &format!("{uri}?fieldValidation=Strict"),
        "application/json",
        cr,
    )
    .await;
    assert_eq!(
        r.body["message"],
        r#"strict decoding error: unknown field "spec.bar", unknown field "unknownField""#
    );
    let r = send(&srv, "POST", uri, "application/json", cr).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.warnings.len(), 2);
    assert_eq!(r.body["spec"], json!({"free": {"x": 1}, "replicas": 1}));
    assert!(r.body.get("unknownField").is_none());

    // A default added to the schema later shows on objects read from storage.
    let mut new = send(
        &srv,
        "GET",
        &format!("{crds}/noxus.example.com"),
        "application/json",
        "",
    )
    .await
    .body;
    new["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["foo"]["default"] = json!("dflt");
    let r = send(
        &srv,
        "PUT",
        &format!("{crds}/noxus.example.com"),
        "application/json",
        &new.to_string(),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.body);
    let got = send(&srv, "GET", &format!("{uri}/a"), "application/json", "")
        .await
        .body;
    assert_eq!(got["spec"]["foo"], "dflt", "{got}");
    let list = send(&srv, "GET", uri, "application/json", "").await.body;
    assert_eq!(list["items"][0]["spec"]["foo"], "dflt", "{list}");
}

#[tokio::test]
async fn strict_apply_names_unknown_fields_and_repeated_yaml_keys_like_upstream() {
    let srv = TestServer::start().await;
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    assert_eq!(
        send(&srv, "POST", crds, "application/json", &crd(None))
            .await
            .code,
        201
    );
    let uri =
        "/apis/example.com/v1/namespaces/default/noxus/b?fieldManager=m&fieldValidation=Strict";
    let ct = "application/apply-patch+yaml";
    let unknown = "apiVersion: example.com/v1\nkind: Noxu\nmetadata:\n  name: b\nunknownField: x\nspec:\n  foo: a\n";
    let r = send(&srv, "PATCH", uri, ct, unknown).await;
    assert_eq!(r.code, 400);
    let msg = r.body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(".unknownField: field not declared in schema"),
        "{msg}"
    );
    let dup = "\napiVersion: example.com/v1\nkind: Noxu\nmetadata:\n  name: b\nspec:\n  free:\n    x: 1\n  foo: a\n  foo: b\n";
    let r = send(&srv, "PATCH", uri, ct, dup).await;
    let msg = r.body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(r#"line 10: key "foo" already set in map"#),
        "{msg}"
    );
    // Without Strict a repeated key keeps its last value, like upstream's YAML decoding.
    let r = send(&srv, "PATCH", &uri.replace("Strict", "Ignore"), ct, dup).await;
    assert_eq!(
        (r.code, &r.body["spec"]["foo"]),
        (201, &json!("b")),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn a_dry_run_write_of_a_crd_changes_no_served_types() {
    let srv = TestServer::start().await;
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let uri = "/apis/example.com/v1/namespaces/default/noxus";
    let r = send(
        &srv,
        "POST",
        &format!("{crds}?dryRun=All"),
        "application/json",
        &crd(None),
    )
    .await;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = send(&srv, "GET", uri, "application/json", "").await;
    assert_eq!(r.code, 404, "a dry-run CRD is served: {}", r.body);

    // Stored for real, then a dry-run change of its schema leaves the stored one in force.
    assert_eq!(
        send(&srv, "POST", crds, "application/json", &crd(None))
            .await
            .code,
        201
    );
    let r = send(
        &srv,
        "PUT",
        &format!("{crds}/noxus.example.com?dryRun=All"),
        "application/json",
        &crd(Some("dflt")),
    )
    .await;
    assert_eq!(r.code, 200, "{}", r.body);
    let cr = r#"{"apiVersion": "example.com/v1", "kind": "Noxu", "metadata": {"name": "a"}, "spec": {}}"#;
    let r = send(&srv, "POST", uri, "application/json", cr).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert!(r.body["spec"].get("foo").is_none(), "{}", r.body);
}
