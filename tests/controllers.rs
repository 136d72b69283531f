//! The in-process controllers through the real binary and real kubectl: cascading deletion
//! (foreground, background, orphan) with owner references set by hand (no workload
//! controllers yet), custom resource cleanup when a CRD is deleted, namespace deletion, and
//! a clean shutdown that ends open watches.

mod common;

use common::process::Background;
use common::TestServer;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

/// Polls `check` until true, for up to `secs` seconds.
fn exists(server: &TestServer, args: &[&str]) -> bool {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.push("-o=name");
    server.kubectl(&a).success()
}

/// A Deployment, a ReplicaSet it controls and two Pods the ReplicaSet controls, with the
/// owner references (controller, blockOwnerDeletion) a deployment controller would set.
/// The workload controllers run: the Deployment is paused (so it makes no ReplicaSet of
/// its own) and the Pods are orphans the ReplicaSet adopts (so it makes no Pods of its own).
fn workload(server: &TestServer, name: &str) {
    server.apply(
        &format!("{name}-deploy.yaml"),
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  paused: true\n  replicas: 2\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: c\n        image: busybox:1.36\n"
        ),
    );
    for i in 0..2 {
        server.apply(
            &format!("{name}-pod-{i}.yaml"),
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-pod-{i}\n  labels: {{app: {name}}}\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n"
            ),
        );
    }
    let deploy_uid = server.kubectl_ok(&["get", "deploy", name, "-o=jsonpath={.metadata.uid}"]);
    server.apply(
        &format!("{name}-rs.yaml"),
        &format!(
            "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: {name}-rs\n  labels: {{app: {name}}}\n  ownerReferences:\n  - {{apiVersion: apps/v1, kind: Deployment, name: {name}, uid: {deploy_uid}, controller: true, blockOwnerDeletion: true}}\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: c\n        image: busybox:1.36\n"
        ),
    );
    let rs_uid = server.kubectl_ok(&[
        "get",
        "rs",
        &format!("{name}-rs"),
        "-o=jsonpath={.metadata.uid}",
    ]);
    server.wait_until("the ReplicaSet adopted both Pods", 30, || {
        (0..2).all(|i| {
            server.kubectl_ok(&[
                "get",
                "pod",
                &format!("{name}-pod-{i}"),
                "-o=jsonpath={.metadata.ownerReferences[0].uid}",
            ]) == rs_uid
        })
    });
}

#[test]
fn kubectl_delete_cascades_in_the_background_in_the_foreground_and_orphans() {
    let server = TestServer::start();
    for name in ["bg", "fg", "orph"] {
        workload(&server, name);
    }

    // Background: the Deployment goes at once, the collector removes the rest.
    server.kubectl_ok(&["delete", "deploy", "bg", "--cascade=background"]);
    assert!(!exists(&server, &["deploy", "bg"]));
    server.wait_until("the bg ReplicaSet and Pods are collected", 10, || {
        !exists(&server, &["rs", "bg-rs"])
            && !exists(&server, &["pod", "bg-pod-0"])
            && !exists(&server, &["pod", "bg-pod-1"])
    });

    // Foreground: the Deployment stays (foregroundDeletion) until its dependents are gone.
    // A finalizer on one Pod holds the chain so the waiting state can be seen.
    server.kubectl_ok(&[
        "patch",
        "pod",
        "fg-pod-0",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    server.kubectl_ok(&[
        "delete",
        "deploy",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ]);
    let fins = server.kubectl_ok(&["get", "deploy", "fg", "-o=jsonpath={.metadata.finalizers}"]);
    assert!(fins.contains("foregroundDeletion"), "{fins}");
    server.wait_until(
        "the free fg Pod is gone and the ReplicaSet waits",
        10,
        || {
            !exists(&server, &["pod", "fg-pod-1"])
                && server
                    .kubectl_ok(&["get", "rs", "fg-rs", "-o=jsonpath={.metadata.finalizers}"])
                    .contains("foregroundDeletion")
        },
    );
    assert!(
        exists(&server, &["deploy", "fg"]),
        "the owner waits for its blocking dependents"
    );
    server.kubectl_ok(&[
        "patch",
        "pod",
        "fg-pod-0",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    server.wait_until("the whole fg chain is gone", 10, || {
        !exists(&server, &["deploy", "fg"])
            && !exists(&server, &["rs", "fg-rs"])
            && !exists(&server, &["pod", "fg-pod-0"])
    });

    // Orphan: the Deployment goes, the ReplicaSet stays without its owner reference and
    // keeps its Pods.
    server.kubectl_ok(&["delete", "deploy", "orph", "--cascade=orphan"]);
    server.wait_until("the orph Deployment is gone", 10, || {
        !exists(&server, &["deploy", "orph"])
    });
    let refs = server.kubectl_ok(&[
        "get",
        "rs",
        "orph-rs",
        "-o=jsonpath={.metadata.ownerReferences}",
    ]);
    assert_eq!(refs.trim(), "", "the orphaned ReplicaSet has no owner left");
    let pod_owner = server.kubectl_ok(&[
        "get",
        "pod",
        "orph-pod-0",
        "-o=jsonpath={.metadata.ownerReferences[0].name}",
    ]);
    assert_eq!(pod_owner.trim(), "orph-rs");
}

#[test]
fn deleting_a_crd_waits_for_a_finalizer_on_its_custom_resource() {
    let server = TestServer::start();
    server.apply(
        "crd.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: gadgets.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {plural: gadgets, singular: gadget, kind: Gadget}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n",
    );
    server.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.com",
    ]);
    server.apply(
        "gadgets.yaml",
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: free\n",
    );
    server.kubectl_ok(&["delete", "crd", "gadgets.example.com", "--wait=false"]);
    server.wait_until("the free gadget is gone", 10, || {
        !exists(&server, &["gadget", "free"])
    });
    let cond = server.kubectl_ok(&[
        "get",
        "crd",
        "gadgets.example.com",
        "-o=jsonpath={.status.conditions[?(@.type==\"Terminating\")].status}",
    ]);
    assert_eq!(cond.trim(), "True");
    let refused = server.kubectl_with_stdin(
        &["create", "-f", "-"],
        Some("apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: late\n"),
    );
    assert!(
        refused
            .stderr
            .contains("create not allowed while custom resource definition is terminating"),
        "{refused}"
    );
    server.kubectl_ok(&[
        "patch",
        "gadget",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    server.wait_until("the definition is gone", 10, || {
        !exists(&server, &["crd", "gadgets.example.com"])
    });
    // No longer served (kubectl's discovery cache may still name it: either answer is 404).
    let gone = server.kubectl(&["get", "gadgets"]);
    assert!(
        gone.stderr
            .contains("the server doesn't have a resource type \"gadgets\"")
            || gone.stderr.contains("NotFound"),
        "{gone}"
    );
}

#[test]
fn deleting_a_namespace_with_a_thousand_objects_of_mixed_kinds_removes_them_all() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "big"]);
    let mut manifest = String::new();
    for i in 0..1000 {
        let doc = match i % 5 {
            0 => format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata: {{k: v}}\n"),
            1 => format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s-{i}\nstringData: {{k: v}}\n"),
            2 => format!("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa-{i}\n"),
            3 => format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p-{i}\nspec:\n  containers:\n  - {{name: c, image: busybox:1.36}}\n"),
            _ => format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d-{i}\nspec:\n  paused: true\n  selector: {{matchLabels: {{app: d{i}}}}}\n  template:\n    metadata: {{labels: {{app: d{i}}}}}\n    spec:\n      containers: [{{name: c, image: busybox:1.36}}]\n"),
        };
        let _ = write!(manifest, "---\n{doc}");
    }
    let file = server.write_file("big.yaml", &manifest);
    server.kubectl_ok(&[
        "create",
        "-n",
        "big",
        "-f",
        file.to_str().expect("utf-8 path"),
    ]);
    let count = server.kubectl_ok(&["get", "cm,secret,sa,pod,deploy", "-n", "big", "-o=name"]);
    // Plus what the controllers put in every namespace, as upstream's do.
    let created = count
        .lines()
        .filter(|l| *l != "serviceaccount/default" && *l != "configmap/kube-root-ca.crt")
        .count();
    assert_eq!(created, 1000, "{count}");

    let started = Instant::now();
    server.kubectl_ok(&["delete", "namespace", "big", "--timeout=60s"]);
    let took = started.elapsed();
    assert!(!exists(&server, &["namespace", "big"]));
    let left = server.kubectl(&["get", "cm,secret,sa,pod,deploy", "-n", "big", "-o=name"]);
    assert_eq!(left.stdout.trim(), "", "{left}");
    eprintln!("namespace with 1000 objects deleted in {took:?}");
}

#[test]
fn sigterm_ends_open_watches_cleanly_and_the_server_exits_zero() {
    let mut server = TestServer::start();
    server.kubectl_ok(&["create", "configmap", "before-stop"]);
    let token = server.admin_token();
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sSN",
        "--http1.1",
        "--cacert",
        server.ca_path().to_str().expect("utf-8 path"),
        "-H",
        &format!("Authorization: Bearer {token}"),
        &format!(
            "{}/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=120",
            server.url()
        ),
    ]);
    let mut watch = Background::spawn(cmd, &server.files_dir().join("watch"));
    watch.wait_for_stdout("the initial ADDED event", Duration::from_secs(10), |o| {
        o.contains("before-stop")
    });
    let status = server.stop();
    assert!(
        status.success(),
        "server exit status {status:?}\n{}",
        server.log()
    );
    // curl exits 0 only when the chunked response was ended properly (18 = cut short).
    assert_eq!(
        watch.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        watch.stderr()
    );
    assert!(server.log().contains("shutting down"));
}

/// Events are correlated as client-go does it upstream. A ReplicaSet that creates 40 pods
/// records 40 `SuccessfulCreate` events. The first 9 messages are written as they are. The
/// 10th and later ones are combined into one event, whose count is bumped. The spam filter
/// lets through at most 25 writes about the object in a burst, so the combined event stops
/// at count 16. The pods stay Pending: this server has no node.
#[test]
fn a_replicaset_creating_forty_pods_writes_nine_events_and_one_combined_at_most_25_times() {
    let server = TestServer::start();
    server.apply(
        "big-rs.yaml",
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: big\nspec:\n  replicas: 40\n  selector:\n    matchLabels: {app: big}\n  template:\n    metadata:\n      labels: {app: big}\n    spec:\n      containers:\n      - name: c\n        image: busybox:1.36\n",
    );
    let events = || {
        server.kubectl_json(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=big,reason=SuccessfulCreate",
            "-o",
            "json",
        ])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let combined_count = |items: &[serde_json::Value]| {
        items
            .iter()
            .find(|e| {
                e["message"].as_str().is_some_and(|m| {
                    m.starts_with("(combined from similar events): Created pod: big-")
                })
            })
            .and_then(|e| e["count"].as_i64())
    };
    server.wait_until("40 pods and the combined event at count 16", 60, || {
        let pods = server.kubectl_ok(&["get", "pods", "-l", "app=big", "-o=name"]);
        pods.lines().count() == 40 && combined_count(&events()) == Some(16)
    });
    // Nothing more arrives: the last 15 creations were filtered, not delayed.
    std::thread::sleep(Duration::from_secs(1));
    let items = events();
    assert_eq!(combined_count(&items), Some(16), "{items:?}");
    assert_eq!(items.len(), 10, "{items:?}");
    let plain: Vec<_> = items
        .iter()
        .filter(|e| e["count"] == 1 && !e["message"].as_str().unwrap_or("").starts_with('('))
        .collect();
    assert_eq!(plain.len(), 9, "{items:?}");
}
