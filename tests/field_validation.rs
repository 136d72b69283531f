//! Server-side field validation with real kubectl: `--validate=strict` fails on unknown and
//! repeated fields with upstream's message, `--validate=warn` prints upstream's warnings,
//! and whatever the mode, unknown fields (built-in kinds and custom resources with a
//! schema) are not stored.

mod common;

use common::{manifests, TestServer};

const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  unknownMeta: x
spec:
  unknownField: foo
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        bogus: true
"#;

#[test]
fn strict_apply_of_a_deployment_with_unknown_fields_fails_and_stores_nothing() {
    let server = TestServer::start();
    let path = server.write_file("dep.yaml", DEPLOYMENT);
    let run = server
        .kubectl(&["apply", "--validate=strict", "-f", &path.to_string_lossy()])
        .fails();
    assert!(
        run.stderr.contains(
            r#"strict decoding error: unknown field "metadata.unknownMeta", unknown field "spec.template.spec.containers[0].bogus", unknown field "spec.unknownField""#
        ),
        "{run}"
    );
    server
        .kubectl(&["get", "deployment", "web", "-n", "default"])
        .fails();
}

#[test]
fn warn_apply_stores_the_deployment_without_unknown_fields_and_prints_warnings() {
    let server = TestServer::start();
    let path = server.write_file("dep.yaml", DEPLOYMENT);
    let run = server
        .kubectl(&["apply", "--validate=warn", "-f", &path.to_string_lossy()])
        .ok();
    for field in [
        "metadata.unknownMeta",
        "spec.template.spec.containers[0].bogus",
        "spec.unknownField",
    ] {
        let warning = format!("Warning: unknown field \"{field}\"");
        assert!(run.stderr.contains(&warning), "missing {warning:?}:\n{run}");
    }
    let d = server.kubectl_json(&["get", "deployment", "web", "-n", "default"]);
    assert!(d["spec"].get("unknownField").is_none(), "{d}");
    assert!(d["metadata"].get("unknownMeta").is_none(), "{d}");
    assert!(
        d["spec"]["template"]["spec"]["containers"][0]
            .get("bogus")
            .is_none(),
        "{d}"
    );
    assert_eq!(d["spec"]["replicas"], 1);
}

#[test]
fn custom_resources_with_undeclared_fields_are_refused_by_create_and_pruned_when_allowed() {
    let server = TestServer::start();
    server.apply("crd.yaml", manifests::WIDGET_CRD);
    server.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
    ]);
    let cr = format!(
        "{}  texture: rough\nextra: 1\n",
        manifests::widget("w1", "default", 3, "blue")
    );
    let path = server.write_file("w1.yaml", &cr);
    let path = path.to_string_lossy();
    // kubectl's default is --validate=strict.
    let run = server.kubectl(&["create", "-f", &path]).fails();
    assert!(
        run.stderr.contains(
            r#"strict decoding error: unknown field "extra", unknown field "spec.texture""#
        ),
        "{run}"
    );
    let run = server
        .kubectl(&["create", "--validate=warn", "-f", &path])
        .ok();
    assert!(
        run.stderr
            .contains(r#"Warning: unknown field "spec.texture""#),
        "{run}"
    );
    let w = server.kubectl_json(&["get", "widget", "w1", "-n", "default"]);
    assert!(w.get("extra").is_none(), "{w}");
    assert!(w["spec"].get("texture").is_none(), "{w}");
    assert_eq!(
        (w["spec"]["size"].as_i64(), w["spec"]["shape"].as_str()),
        (Some(3), Some("round"))
    );
}

const GADGET_CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  names: {plural: gadgets, singular: gadget, kind: Gadget, listKind: GadgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [mode]
            properties:
              mode: {type: string, enum: [fast, slow]}
              replicas: {type: integer, minimum: 1, maximum: 5}
"#;

#[test]
fn custom_resources_that_break_their_schema_get_422_and_nothing_is_stored() {
    let server = TestServer::start();
    server.apply("crd.yaml", GADGET_CRD);
    server.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.com",
    ]);
    let gadget = |spec: &str| {
        format!("apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g1\n  namespace: default\nspec: {spec}\n")
    };
    let bad = server.write_file("bad.yaml", &gadget("{mode: turbo, replicas: 9}"));
    let run = server
        .kubectl(&["create", "-f", &bad.to_string_lossy()])
        .fails();
    assert!(
        run.stderr.contains(
            r#"The Gadget "g1" is invalid: "#
        ) && run.stderr.contains(
            r#"spec.mode: Unsupported value: "turbo": supported values: "fast", "slow""#
        ) && run.stderr.contains(
            "spec.replicas: Invalid value: 9: spec.replicas in body should be less than or equal to 5"
        ),
        "{run}"
    );
    let missing = server.write_file("missing.yaml", &gadget("{replicas: 2}"));
    let run = server
        .kubectl(&["create", "-f", &missing.to_string_lossy()])
        .fails();
    assert!(run.stderr.contains("spec.mode: Required value"), "{run}");
    server
        .kubectl(&["get", "gadget", "g1", "-n", "default"])
        .fails();

    let good = server.write_file("good.yaml", &gadget("{mode: fast, replicas: 2}"));
    server.kubectl_ok(&["create", "-f", &good.to_string_lossy()]);
    // Updates answer to the schema too; the stored object is unchanged.
    let run = server
        .kubectl(&[
            "patch",
            "gadget",
            "g1",
            "-n",
            "default",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":"two"}}"#,
        ])
        .fails();
    assert!(
        run.stderr.contains(
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        ),
        "{run}"
    );
    let g = server.kubectl_json(&["get", "gadget", "g1", "-n", "default"]);
    assert_eq!(g["spec"]["replicas"], 2, "{g}");
}
