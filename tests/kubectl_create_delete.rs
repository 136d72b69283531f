//! kubectl create generators (protobuf bodies), delete (files, --wait, finalizers, namespaces),
//! and the upstream error messages.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{json, manifests, TestServer};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn create_generators_for_namespace_configmap_secret_and_serviceaccount_store_objects() {
    let server = TestServer::start();
    for (args, expected) in [
        (vec!["create", "namespace", "gen"], "namespace/gen created"),
        (
            vec![
                "create",
                "configmap",
                "cfg",
                "-n",
                "gen",
                "--from-literal=a=1",
                "--from-literal=b=two",
            ],
            "configmap/cfg created",
        ),
        (
            vec![
                "create",
                "secret",
                "generic",
                "sec",
                "-n",
                "gen",
                "--from-literal=password=hunter2",
            ],
            "secret/sec created",
        ),
        (
            vec!["create", "serviceaccount", "robot", "-n", "gen"],
            "serviceaccount/robot created",
        ),
    ] {
        let out = server.kubectl_ok(&args);
        assert_eq!(out.trim(), expected);
    }

    let ns = server.kubectl_json(&["get", "namespace", "gen"]);
    assert_eq!(ns["status"]["phase"], "Active", "{ns}");
    let cm = server.kubectl_json(&["get", "configmap", "cfg", "-n", "gen"]);
    assert_eq!(
        cm["data"],
        serde_json::json!({"a": "1", "b": "two"}),
        "{cm}"
    );
    assert!(cm["metadata"]["uid"].is_string(), "{cm}");
    let secret = server.kubectl_json(&["get", "secret", "sec", "-n", "gen"]);
    assert_eq!(
        secret["type"], "Opaque",
        "an empty type defaults to Opaque: {secret}"
    );
    assert_eq!(secret["data"]["password"], b64("hunter2"), "{secret}");
    let sa = server.kubectl_json(&["get", "serviceaccount", "robot", "-n", "gen"]);
    assert_eq!(sa["metadata"]["namespace"], "gen", "{sa}");
}

#[test]
fn create_generators_for_workloads_services_and_rbac_store_objects() {
    let server = TestServer::start();
    for (args, expected) in [
        (
            vec![
                "create",
                "deployment",
                "gd",
                "--image=nginx:1.27",
                "--replicas=2",
            ],
            "deployment.apps/gd created",
        ),
        (
            vec!["create", "service", "clusterip", "gs", "--tcp=80:8080"],
            "service/gs created",
        ),
        (
            vec!["create", "job", "gj", "--image=busybox:1.36"],
            "job.batch/gj created",
        ),
        (
            vec![
                "create",
                "role",
                "reader",
                "--verb=get",
                "--resource=configmaps",
            ],
            "role.rbac.authorization.k8s.io/reader created",
        ),
        (
            vec![
                "create",
                "rolebinding",
                "reader-bob",
                "--role=reader",
                "--user=bob",
            ],
            "rolebinding.rbac.authorization.k8s.io/reader-bob created",
        ),
    ] {
        let out = server.kubectl_ok(&args);
        assert_eq!(out.trim(), expected);
    }

    let deploy = server.kubectl_json(&["get", "deployment", "gd"]);
    assert_eq!(deploy["spec"]["replicas"], 2, "{deploy}");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.27",
        "{deploy}"
    );
    let svc = server.kubectl_json(&["get", "service", "gs"]);
    assert_eq!(svc["spec"]["ports"][0]["port"], 80, "{svc}");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080, "{svc}");
    assert!(
        svc["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.43.")),
        "{svc}"
    );
    let job = server.kubectl_json(&["get", "job", "gj"]);
    assert_eq!(
        job["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1.36",
        "{job}"
    );
    let role = server.kubectl_json(&["get", "role", "reader"]);
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get"]),
        "{role}"
    );
    let binding = server.kubectl_json(&["get", "rolebinding", "reader-bob"]);
    assert_eq!(binding["roleRef"]["name"], "reader", "{binding}");
    assert_eq!(binding["subjects"][0]["name"], "bob", "{binding}");
}

#[test]
fn delete_of_a_file_removes_its_objects() {
    let server = TestServer::start();
    let objects = [
        manifests::configmap("gone-cm", "default", &[]),
        manifests::two_container_deployment("gone-deploy", "default"),
    ]
    .join("---\n");
    server.apply("objects.yaml", &objects);

    let out = server.kubectl_ok(&["delete", "-f", "objects.yaml"]);
    assert!(
        out.contains(r#"configmap "gone-cm" deleted from default namespace"#),
        "{out}"
    );
    assert!(
        out.contains(r#"deployment.apps "gone-deploy" deleted from default namespace"#),
        "{out}"
    );
    let run = server.kubectl(&["get", "-f", "objects.yaml"]).fails();
    assert!(
        run.stderr.contains(r#"configmaps "gone-cm" not found"#)
            && run
                .stderr
                .contains(r#"deployments.apps "gone-deploy" not found"#),
        "{run}"
    );
}

#[test]
fn delete_waits_until_the_finalizers_are_gone() {
    let server = TestServer::start();
    server.apply(
        "held.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers:\n  - example.com/hold\n",
    );

    let mut delete = server.kubectl_background(&["delete", "configmap", "held", "--timeout=60s"]);
    let cm =
        common::process::eventually(Duration::from_secs(20), "deletionTimestamp on held", || {
            let cm = server.kubectl_json(&["get", "configmap", "held"]);
            if cm["metadata"]["deletionTimestamp"].is_string() {
                Ok(cm)
            } else {
                Err(cm.to_string())
            }
        });
    assert_eq!(
        cm["metadata"]["finalizers"],
        serde_json::json!(["example.com/hold"]),
        "{cm}"
    );
    assert!(
        !delete.has_exited(),
        "delete returned while the finalizer holds the object"
    );

    server.kubectl_ok(&[
        "patch",
        "configmap",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    assert_eq!(
        delete.wait_exit(Duration::from_secs(30)),
        Some(0),
        "delete --wait ends once the object is gone:\n{}",
        delete.stderr()
    );
    assert!(
        delete
            .stdout()
            .contains(r#"configmap "held" deleted from default namespace"#),
        "{}",
        delete.stdout()
    );
    let run = server.kubectl(&["get", "configmap", "held"]).fails();
    assert!(run.stderr.contains("not found"), "{run}");
}

#[test]
fn deleting_a_namespace_removes_its_objects() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "doomed"]);
    let objects = [
        manifests::configmap("c1", "doomed", &[]),
        manifests::two_container_deployment("d1", "doomed"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s1\n  namespace: doomed\n".to_string(),
    ]
    .join("---\n");
    server.apply("doomed.yaml", &objects);
    // A namespace elsewhere keeps its objects.
    server.kubectl_ok(&["create", "configmap", "survivor"]);

    let out = server.kubectl_ok(&["delete", "namespace", "doomed", "--timeout=60s"]);
    assert!(out.contains(r#"namespace "doomed" deleted"#), "{out}");

    let run = server.kubectl(&["get", "namespace", "doomed"]).fails();
    assert_eq!(
        run.stderr.trim(),
        r#"Error from server (NotFound): namespaces "doomed" not found"#,
        "{run}"
    );
    let all =
        json(&server.kubectl_ok(&["get", "configmaps,secrets,deployments", "-A", "-o", "json"]));
    let leftovers: Vec<&serde_json::Value> = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["metadata"]["namespace"] == "doomed")
        .collect();
    assert!(
        leftovers.is_empty(),
        "objects left in doomed: {leftovers:#?}"
    );
    server.kubectl_ok(&["get", "configmap", "survivor"]);

    let run = server
        .kubectl(&["create", "configmap", "late", "-n", "doomed"])
        .fails();
    assert_eq!(
        run.stderr.trim(),
        r#"error: failed to create configmap: namespaces "doomed" not found"#,
        "{run}"
    );
}

#[test]
fn get_of_a_missing_object_prints_the_upstream_not_found_error() {
    let server = TestServer::start();
    let run = server.kubectl(&["get", "configmap", "nope"]).fails();
    assert_eq!(
        run.stderr, "Error from server (NotFound): configmaps \"nope\" not found\n",
        "{run}"
    );
    let run = server.kubectl(&["get", "deployment", "nope"]).fails();
    assert_eq!(
        run.stderr, "Error from server (NotFound): deployments.apps \"nope\" not found\n",
        "{run}"
    );
    let run = server.kubectl(&["delete", "configmap", "nope"]).fails();
    assert_eq!(
        run.stderr, "Error from server (NotFound): configmaps \"nope\" not found\n",
        "{run}"
    );
}

#[test]
fn get_of_an_unknown_resource_type_fails_like_upstream() {
    let server = TestServer::start();
    let run = server.kubectl(&["get", "foos"]).fails();
    assert_eq!(
        run.stderr.trim(),
        r#"error: the server doesn't have a resource type "foos""#,
        "{run}"
    );
}

#[test]
fn creating_an_existing_object_prints_the_upstream_already_exists_error() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "configmap", "dup"]);
    let run = server.kubectl(&["create", "configmap", "dup"]).fails();
    assert_eq!(
        run.stderr.trim(),
        r#"error: failed to create configmap: configmaps "dup" already exists"#,
        "{run}"
    );

    server.write_file(
        "dup.yaml",
        &manifests::two_container_deployment("dup", "default"),
    );
    server.kubectl(&["create", "-f", "dup.yaml"]).ok();
    let run = server.kubectl(&["create", "-f", "dup.yaml"]).fails();
    assert_eq!(
        run.stderr.trim(),
        r#"Error from server (AlreadyExists): error when creating "dup.yaml": deployments.apps "dup" already exists"#,
        "{run}"
    );
}

#[test]
fn replace_with_a_stale_resource_version_prints_the_upstream_conflict_error() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "configmap", "stale", "--from-literal=k=1"]);
    let stale = server.kubectl_ok(&["get", "configmap", "stale", "-o", "json"]);
    server.kubectl_ok(&["label", "configmap", "stale", "touched=yes"]);

    server.write_file("stale.json", &stale.replace(r#""k": "1""#, r#""k": "2""#));
    let run = server.kubectl(&["replace", "-f", "stale.json"]).fails();
    assert_eq!(
        run.stderr.trim(),
        r#"Error from server (Conflict): error when replacing "stale.json": Operation cannot be fulfilled on configmaps "stale": the object has been modified; please apply your changes to the latest version and try again"#,
        "{run}"
    );
    let cm = server.kubectl_json(&["get", "configmap", "stale"]);
    assert_eq!(
        cm["data"]["k"], "1",
        "a rejected replace changes nothing: {cm}"
    );

    // With the current resourceVersion the same replace goes through.
    let fresh = server.kubectl_ok(&["get", "configmap", "stale", "-o", "json"]);
    server.write_file("fresh.json", &fresh.replace(r#""k": "1""#, r#""k": "2""#));
    let out = server.kubectl_ok(&["replace", "-f", "fresh.json"]);
    assert_eq!(out.trim(), "configmap/stale replaced");
    let cm = server.kubectl_json(&["get", "configmap", "stale"]);
    assert_eq!(cm["data"]["k"], "2", "{cm}");
}

#[test]
fn bound_pods_are_deleted_gracefully_and_unbound_ones_at_once() {
    let server = TestServer::start();
    let pod = |name: &str, node: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  {node}containers:\n  - name: c\n    image: busybox:1.36\n"
        )
    };
    server.apply(
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\n",
    );
    server.apply("free.yaml", &pod("free", ""));
    server.apply("orphan.yaml", &pod("orphan", "nodeName: node-gone\n  "));
    server.apply("bound.yaml", &pod("bound", "nodeName: node-a\n  "));

    // Not bound to a node: nothing has to stop it, so it goes at once.
    server.kubectl_ok(&["delete", "pod", "free", "--wait=false"]);
    let gone = server.kubectl(&["get", "pod", "free"]);
    assert!(gone.stderr.contains("pods \"free\" not found"), "{gone}");

    // Bound to a node that does not exist: nothing would ever confirm, so it goes at once.
    server.kubectl_ok(&["delete", "pod", "orphan", "--wait=false"]);
    let gone = server.kubectl(&["get", "pod", "orphan"]);
    assert!(gone.stderr.contains("pods \"orphan\" not found"), "{gone}");

    // Bound: it gets a deletionTimestamp and waits for the node (grace period 30 s). The
    // answer is 200 with the pod as it now is, its generation bumped (upstream).
    assert_eq!(
        server.kubectl_json(&["get", "pod", "bound"])["metadata"]["generation"],
        1
    );
    let reply = server
        .request("DELETE", "/api/v1/namespaces/default/pods/bound")
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.json()["metadata"]["deletionTimestamp"].is_string());
    let p = server.kubectl_json(&["get", "pod", "bound"]);
    assert!(p["metadata"]["deletionTimestamp"].is_string(), "{p}");
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30, "{p}");
    assert_eq!(p["metadata"]["generation"], 2, "{p}");

    // The node's confirmation (grace period 0) removes it.
    server.kubectl_ok(&["delete", "pod", "bound", "--grace-period=0", "--force"]);
    let gone = server.kubectl(&["get", "pod", "bound"]);
    assert!(gone.stderr.contains("pods \"bound\" not found"), "{gone}");

    // Held by a finalizer (a Job's pod): the confirmation shortens the grace period to 0
    // (only shorter may follow), and the pod goes as soon as the finalizer does.
    server.apply(
        "held.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n\
         spec:\n  nodeName: node-a\n  containers:\n  - name: c\n    image: busybox:1.36\n",
    );
    server.kubectl_ok(&["delete", "pod", "held", "--wait=false"]);
    server.kubectl_ok(&["delete", "pod", "held", "--grace-period=60", "--wait=false"]);
    let p = server.kubectl_json(&["get", "pod", "held"]);
    assert_eq!(
        p["metadata"]["deletionGracePeriodSeconds"], 30,
        "longer is ignored: {p}"
    );
    server.kubectl_ok(&[
        "delete",
        "pod",
        "held",
        "--grace-period=0",
        "--force",
        "--wait=false",
    ]);
    let p = server.kubectl_json(&["get", "pod", "held"]);
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 0, "{p}");
    server.kubectl_ok(&[
        "patch",
        "pod",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let gone = server.kubectl(&["get", "pod", "held"]);
    assert!(gone.stderr.contains("pods \"held\" not found"), "{gone}");
}
