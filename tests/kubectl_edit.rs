//! kubectl label, annotate, patch (strategic, merge, json) and scale change stored objects.

mod common;

use common::{json, manifests, TestServer};

/// A server with the two-container Deployment `web` in `default`.
fn server_with_deployment() -> TestServer {
    let server = TestServer::start();
    server.apply(
        "deploy.yaml",
        &manifests::two_container_deployment("web", "default"),
    );
    server
}

fn containers(deploy: &serde_json::Value) -> Vec<serde_json::Value> {
    deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap_or_else(|| panic!("no containers in {deploy}"))
        .clone()
}

#[test]
fn label_adds_overwrites_and_removes_labels() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "configmap", "lbl"]);

    let out = server.kubectl_ok(&["label", "configmap", "lbl", "env=prod"]);
    assert_eq!(out.trim(), "configmap/lbl labeled");
    let cm = server.kubectl_json(&["get", "cm", "lbl"]);
    assert_eq!(cm["metadata"]["labels"]["env"], "prod", "{cm}");

    let run = server
        .kubectl(&["label", "configmap", "lbl", "env=dev"])
        .fails();
    assert!(
        run.stderr
            .contains("'env' already has a value (prod), and --overwrite is false"),
        "{run}"
    );
    server.kubectl_ok(&["label", "configmap", "lbl", "env=dev", "--overwrite"]);
    let cm = server.kubectl_json(&["get", "cm", "lbl"]);
    assert_eq!(cm["metadata"]["labels"]["env"], "dev", "{cm}");

    let out = server.kubectl_ok(&["label", "configmap", "lbl", "env-"]);
    assert_eq!(out.trim(), "configmap/lbl unlabeled");
    let cm = server.kubectl_json(&["get", "cm", "lbl"]);
    assert!(
        cm["metadata"]["labels"].get("env").is_none(),
        "label removed: {cm}"
    );
}

#[test]
fn label_works_on_a_resource_of_a_named_group() {
    let server = server_with_deployment();
    let out = server.kubectl_ok(&["label", "deployment", "web", "team=blue"]);
    assert_eq!(out.trim(), "deployment.apps/web labeled");
    let deploy = server.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(deploy["metadata"]["labels"]["team"], "blue", "{deploy}");
    assert_eq!(deploy["metadata"]["labels"]["app"], "web", "{deploy}");
    assert_eq!(
        deploy["metadata"]["generation"], 1,
        "metadata changes do not bump generation: {deploy}"
    );
}

#[test]
fn annotate_adds_and_removes_annotations() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "configmap", "ann"]);

    let out = server.kubectl_ok(&["annotate", "configmap", "ann", "note=hello world"]);
    assert_eq!(out.trim(), "configmap/ann annotated");
    let cm = server.kubectl_json(&["get", "cm", "ann"]);
    assert_eq!(cm["metadata"]["annotations"]["note"], "hello world", "{cm}");

    let out = server.kubectl_ok(&["annotate", "configmap", "ann", "note-"]);
    assert_eq!(out.trim(), "configmap/ann annotated");
    let cm = server.kubectl_json(&["get", "cm", "ann"]);
    assert!(
        cm["metadata"]["annotations"].get("note").is_none(),
        "annotation removed: {cm}"
    );
}

#[test]
fn patch_strategic_merges_containers_by_name_and_honours_delete_directives() {
    let server = server_with_deployment();
    let out = server.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "--type=strategic",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[
            {"name":"web","env":[{"name":"MODE","value":"fast"}]},
            {"name":"sidecar","$patch":"delete"}]}}}}"#,
    ]);
    assert_eq!(out.trim(), "deployment.apps/web patched");

    let deploy = server.kubectl_json(&["get", "deploy", "web"]);
    let cs = containers(&deploy);
    assert_eq!(cs.len(), 1, "sidecar deleted, web merged: {deploy}");
    assert_eq!(cs[0]["name"], "web");
    assert_eq!(
        cs[0]["image"], "nginx:1.27",
        "untouched fields stay: {deploy}"
    );
    assert_eq!(cs[0]["ports"][0]["containerPort"], 8080, "{deploy}");
    assert_eq!(cs[0]["env"][0]["name"], "MODE", "{deploy}");
    assert_eq!(cs[0]["env"][0]["value"], "fast", "{deploy}");
    assert_eq!(deploy["metadata"]["generation"], 2, "{deploy}");
}

#[test]
fn patch_merge_replaces_lists_and_removes_null_keys() {
    let server = server_with_deployment();
    let out = server.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"gold","app":null}},
            "spec":{"template":{"spec":{"containers":[{"name":"only","image":"nginx:1.28"}]}}}}"#,
    ]);
    assert_eq!(out.trim(), "deployment.apps/web patched");

    let deploy = server.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(
        deploy["metadata"]["labels"],
        serde_json::json!({"tier": "gold"}),
        "{deploy}"
    );
    let cs = containers(&deploy);
    assert_eq!(
        cs.len(),
        1,
        "a merge patch replaces the whole list: {deploy}"
    );
    assert_eq!(cs[0]["name"], "only", "{deploy}");
    assert!(cs[0].get("ports").is_none(), "{deploy}");

    // The same patch again changes nothing, and kubectl says so.
    let out = server.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"metadata":{"labels":{"tier":"gold"}}}"#,
    ]);
    assert_eq!(out.trim(), "deployment.apps/web patched (no change)");
}

#[test]
fn patch_json_applies_operations_in_order() {
    let server = server_with_deployment();
    let out = server.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":5},
            {"op":"add","path":"/metadata/labels/extra","value":"yes"},
            {"op":"remove","path":"/spec/template/spec/containers/1"},
            {"op":"test","path":"/spec/replicas","value":5}]"#,
    ]);
    assert_eq!(out.trim(), "deployment.apps/web patched");

    let deploy = server.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(deploy["spec"]["replicas"], 5, "{deploy}");
    assert_eq!(deploy["metadata"]["labels"]["extra"], "yes", "{deploy}");
    let cs = containers(&deploy);
    assert_eq!(cs.len(), 1, "{deploy}");
    assert_eq!(cs[0]["name"], "web", "{deploy}");

    // A failing `test` operation rejects the whole patch (422 Invalid, as upstream).
    let run = server
        .kubectl(&[
            "patch",
            "deployment",
            "web",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":9},
                {"op":"test","path":"/spec/replicas","value":1}]"#,
        ])
        .fails();
    assert!(run.stderr.starts_with("The request is invalid"), "{run}");
    let deploy = server.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(deploy["spec"]["replicas"], 5, "{deploy}");
}

#[test]
fn scale_deployment_changes_spec_replicas() {
    let server = server_with_deployment();
    let out = server.kubectl_ok(&["scale", "deployment", "web", "--replicas=4"]);
    assert_eq!(out.trim(), "deployment.apps/web scaled");

    let deploy = server.kubectl_json(&["get", "deploy", "web"]);
    assert_eq!(deploy["spec"]["replicas"], 4, "{deploy}");

    let scale = json(&server.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
    ]));
    assert_eq!(scale["kind"], "Scale", "{scale}");
    assert_eq!(scale["apiVersion"], "autoscaling/v1", "{scale}");
    assert_eq!(scale["spec"]["replicas"], 4, "{scale}");
}

#[test]
fn a_pod_update_may_change_its_images_but_not_its_resources() {
    let server = TestServer::start();
    server.apply(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: default\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n    resources:\n      requests:\n        cpu: 100m\n",
    );
    server.kubectl_ok(&["set", "image", "pod/p", "c=busybox:2", "-n", "default"]);
    let run = server
        .kubectl(&[
            "patch",
            "pod",
            "p",
            "-n",
            "default",
            "-p",
            r#"{"spec":{"containers":[{"name":"c","resources":{"requests":{"cpu":"200m"}}}]}}"#,
        ])
        .fails();
    assert!(
        run.stderr.contains(r#"The Pod "p" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"#),
        "{run}"
    );
    let pod = server.kubectl_json(&["get", "pod", "p", "-n", "default", "-o", "json"]);
    assert_eq!(pod["spec"]["containers"][0]["image"], "busybox:2");
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "100m"
    );
}
