//! The OpenAPI documents as clients use them: `/openapi/v2` in JSON with a CRD's schema under
//! its upstream name (what the conformance suite polls), `kubectl explain` on a custom
//! resource (OpenAPI v3), and a Table asked of a create-only resource answered 406.

mod common;

use common::process::eventually;
use common::TestServer;
use std::time::Duration;

const GADGET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.tools.example.com
spec:
  group: tools.example.com
  names: {plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        description: Gadget CRD for testing explain.
        type: object
        properties:
          spec:
            description: Specification of the Gadget.
            type: object
            properties:
              parts:
                description: List of parts.
                type: array
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {description: Name of the part., type: string}
"#;

const DEFINITION: &str = "com.example.tools.v1.Gadget";

fn v2_definitions(server: &TestServer) -> serde_json::Value {
    let reply = server.request("GET", "/openapi/v2").send();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let doc = reply.json();
    assert_eq!(doc["swagger"], "2.0", "{doc}");
    doc["definitions"].clone()
}

#[test]
fn crd_schema_is_published_in_openapi_v2_and_explained_by_kubectl() {
    let server = TestServer::start();
    server.apply("crd.yaml", GADGET_CRD);

    let defs = v2_definitions(&server);
    let def = &defs[DEFINITION];
    assert_eq!(
        def["description"], "Gadget CRD for testing explain.",
        "{def}"
    );
    assert_eq!(
        def["properties"]["spec"]["properties"]["parts"]["items"]["required"],
        serde_json::json!(["name"])
    );
    assert!(defs["io.k8s.api.core.v1.Pod"].is_object());

    // ETag: an unchanged document is not sent again.
    let reply = server.request("GET", "/openapi/v2").send();
    let etag = reply.header("etag").expect("ETag header");
    let again = server
        .request("GET", "/openapi/v2")
        .header("If-None-Match", &etag)
        .send();
    assert_eq!(again.status, 304);
    // Protobuf stays available for clients that ask for it.
    let pb = server
        .request("GET", "/openapi/v2")
        .header(
            "Accept",
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        )
        .send();
    assert_eq!(pb.status, 200);
    assert!(pb
        .header("content-type")
        .is_some_and(|ct| ct.contains("protobuf")));

    let out = server.kubectl_ok(&["explain", "gadgets"]);
    assert!(out.contains("Gadget CRD for testing explain."), "{out}");
    assert!(out.contains("APIVersion defines"), "{out}");
    assert!(out.contains("Specification of the Gadget."), "{out}");
    let out = server.kubectl_ok(&["explain", "gadgets.spec.parts"]);
    assert!(out.contains("<[]Object>"), "{out}");
    assert!(out.contains("Name of the part."), "{out}");
    let out = server.kubectl_ok(&["explain", "gadgets.metadata"]);
    assert!(out.contains("creationTimestamp"), "{out}");
    let run = server.kubectl(&["explain", "gadgets.spec.wheels"]).fails();
    assert!(
        run.output().contains("field \"wheels\" does not exist"),
        "{run:?}"
    );

    server.kubectl_ok(&["delete", "crd", "gadgets.tools.example.com"]);
    eventually(
        Duration::from_secs(30),
        "definition removed",
        || match v2_definitions(&server).get(DEFINITION) {
            None => Ok(()),
            Some(_) => Err("still published".to_owned()),
        },
    );
}

#[test]
fn table_of_a_self_subject_access_review_is_not_acceptable() {
    let server = TestServer::start();
    let body = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview","spec":{"nonResourceAttributes":{"path":"/","verb":"get"}}}"#;
    let reply = server
        .request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        )
        .content_type("application/json")
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(body)
        .send();
    reply.expect_status(406, "NotAcceptable");
    let out = server.kubectl_ok(&["auth", "can-i", "get", "pods"]);
    assert_eq!(out.trim(), "yes");
}
