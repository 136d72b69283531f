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
