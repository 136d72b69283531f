//! kubectl apply, client-side (create, then three-way strategic merge patch) and server-side.

mod common;

use common::{manifests, TestServer};

const CREATED: &[&str] = &[
    "namespace/demo created",
    "configmap/app-config created",
    "secret/app-secret created",
    "service/web created",
    "deployment.apps/web created",
    "customresourcedefinition.apiextensions.k8s.io/widgets.example.com created",
];

#[test]
fn apply_creates_every_object_of_a_multi_document_file() {
    let server = TestServer::start();
    let all = format!(
        "{}---\n{}---\n{}",
        manifests::app("hello", "nginx:1.27", 2, true),
        manifests::WIDGET_CRD,
        manifests::widget("w1", "demo", 3, "blue")
    );
    server.write_file("all.yaml", &all);

    let first = server.kubectl(&["apply", "-f", "all.yaml"]);
    for line in CREATED {
        assert!(first.stdout.contains(line), "missing {line:?}:\n{first}");
    }
    // Upstream kubectl maps every object before applying any, so a custom resource whose CRD
    // is in the same file is only known on the next run; that is the client's doing.
    let widget_created_first = first.stdout.contains("widget.example.com/w1 created");
    if !first.success() {
        assert!(!widget_created_first, "{first}");
        let errors = first
            .stderr
            .lines()
            .filter(|l| l.to_lowercase().starts_with("error"))
            .count();
        assert!(
            errors == 1
                && first.stderr.contains("\"w1\"")
                && first.stderr.contains("ensure CRDs are installed first"),
            "only the custom resource may fail on the first run:\n{first}"
        );
    }

    let second = server.kubectl(&["apply", "-f", "all.yaml"]).ok();
    let widget_line = if widget_created_first {
        "widget.example.com/w1 unchanged"
    } else {
        "widget.example.com/w1 created"
    };
    assert!(second.stdout.contains(widget_line), "{second}");
    for line in CREATED {
        let unchanged = line.replace(" created", " unchanged");
        assert!(
            second.stdout.contains(&unchanged),
            "missing {unchanged:?}:\n{second}"
        );
    }

    let cm = server.kubectl_json(&["get", "configmap", "app-config", "-n", "demo"]);
    assert_eq!(cm["data"]["greeting"], "hello", "{cm}");
    let secret = server.kubectl_json(&["get", "secret", "app-secret", "-n", "demo"]);
    assert_eq!(secret["data"]["password"], "czNjcmV0", "{secret}");
    let svc = server.kubectl_json(&["get", "service", "web", "-n", "demo"]);
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP", "{svc}");
    let deploy = server.kubectl_json(&["get", "deployment", "web", "-n", "demo"]);
    assert_eq!(deploy["spec"]["replicas"], 2, "{deploy}");
    assert_eq!(deploy["metadata"]["generation"], 1, "{deploy}");
    let widget = server.kubectl_json(&["get", "widget", "w1", "-n", "demo"]);
    assert_eq!(widget["spec"]["color"], "blue", "{widget}");
}

#[test]
fn reapply_with_changes_patches_changed_objects_and_leaves_the_rest_unchanged() {
    let server = TestServer::start();
    server.write_file("v1.yaml", &manifests::app("hello", "nginx:1.27", 2, true));
    server.kubectl(&["apply", "-f", "v1.yaml"]).ok();
    let before = server.kubectl_json(&["get", "configmap", "app-config", "-n", "demo"]);

    // v2: new greeting, a label dropped, new image and replica count.
    server.write_file(
        "v2.yaml",
        &manifests::app("bonjour", "nginx:1.28", 3, false),
    );
    let out = server.kubectl(&["apply", "-f", "v2.yaml"]).ok().stdout;
    for line in [
        "namespace/demo unchanged",
        "configmap/app-config configured",
        "secret/app-secret unchanged",
        "service/web unchanged",
        "deployment.apps/web configured",
    ] {
        assert!(out.contains(line), "missing {line:?}:\n{out}");
    }

    let cm = server.kubectl_json(&["get", "configmap", "app-config", "-n", "demo"]);
    assert_eq!(cm["data"]["greeting"], "bonjour", "{cm}");
    assert_eq!(
        cm["metadata"]["labels"],
        serde_json::json!({"app": "web"}),
        "the label removed from the file is removed from the object: {cm}"
    );
    assert_eq!(
        cm["metadata"]["uid"], before["metadata"]["uid"],
        "same object"
    );
    assert_ne!(
        cm["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "an update gets a new resourceVersion"
    );

    let deploy = server.kubectl_json(&["get", "deployment", "web", "-n", "demo"]);
    assert_eq!(deploy["spec"]["replicas"], 3, "{deploy}");
    let containers = deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers is a list");
    assert_eq!(containers.len(), 1, "containers merge by name: {deploy}");
    assert_eq!(containers[0]["image"], "nginx:1.28", "{deploy}");
    assert_eq!(containers[0]["ports"][0]["containerPort"], 8080, "{deploy}");
    assert_eq!(
        deploy["metadata"]["generation"], 2,
        "spec changed once: {deploy}"
    );
    let last_applied = deploy["metadata"]["annotations"]
        ["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("client-side apply records the last applied configuration");
    assert!(last_applied.contains("nginx:1.28"), "{last_applied}");
}

#[test]
fn reapply_of_a_changed_custom_resource_updates_it() {
    let server = TestServer::start();
    server.apply("crd.yaml", manifests::WIDGET_CRD);
    let out = server.apply("w1.yaml", &manifests::widget("w1", "default", 3, "blue"));
    assert!(out.contains("widget.example.com/w1 created"), "{out}");

    let out = server.apply("w1.yaml", &manifests::widget("w1", "default", 4, "green"));
    assert!(out.contains("widget.example.com/w1 configured"), "{out}");
    let w = server.kubectl_json(&["get", "widget", "w1"]);
    assert_eq!(w["spec"]["size"], 4, "{w}");
    assert_eq!(w["spec"]["color"], "green", "{w}");
    assert_eq!(w["metadata"]["generation"], 2, "{w}");
}

const SSA_V1: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa-config
data:
  color: blue
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ssa-web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: ssa-web
  template:
    metadata:
      labels:
        app: ssa-web
    spec:
      containers:
      - name: web
        image: nginx:1.27
"#;

#[test]
fn apply_server_side_creates_then_updates_objects_and_records_the_manager() {
    let server = TestServer::start();
    server.write_file("ssa.yaml", SSA_V1);
    let out = server.kubectl_ok(&["apply", "--server-side", "-f", "ssa.yaml"]);
    assert!(
        out.contains("configmap/ssa-config serverside-applied"),
        "{out}"
    );
    assert!(
        out.contains("deployment.apps/ssa-web serverside-applied"),
        "{out}"
    );

    let changed = SSA_V1
        .replace("color: blue", "color: red")
        .replace("replicas: 1", "replicas: 2");
    server.write_file("ssa.yaml", &changed);
    let out = server.kubectl_ok(&["apply", "--server-side", "-f", "ssa.yaml"]);
    assert!(
        out.contains("configmap/ssa-config serverside-applied"),
        "{out}"
    );
    assert!(
        out.contains("deployment.apps/ssa-web serverside-applied"),
        "{out}"
    );

    let cm = server.kubectl_json(&["get", "configmap", "ssa-config", "--show-managed-fields"]);
    assert_eq!(cm["data"]["color"], "red", "{cm}");
    let managers = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap_or_else(|| panic!("server-side apply records managedFields: {cm}"));
    assert!(
        managers
            .iter()
            .any(|m| m["manager"] == "kubectl" && m["operation"] == "Apply"),
        "{cm}"
    );
    let deploy = server.kubectl_json(&["get", "deployment", "ssa-web"]);
    assert_eq!(deploy["spec"]["replicas"], 2, "{deploy}");
}

#[test]
fn server_side_apply_reports_a_conflict_with_another_manager_unless_forced() {
    let server = TestServer::start();
    server.write_file(
        "alice.yaml",
        SSA_V1.split("---").next().expect("first document"),
    );
    server
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=alice",
            "-f",
            "alice.yaml",
        ])
        .ok();

    let bob = SSA_V1
        .split("---")
        .next()
        .expect("first document")
        .replace("color: blue", "color: green");
    server.write_file("bob.yaml", &bob);
    let run = server
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=bob",
            "-f",
            "bob.yaml",
        ])
        .fails();
    assert!(
        run.stderr.contains("Apply failed with 1 conflict")
            && run.stderr.contains("conflict with \"alice\"")
            && run.stderr.contains(".data.color"),
        "{run}"
    );
    let cm = server.kubectl_json(&["get", "configmap", "ssa-config"]);
    assert_eq!(
        cm["data"]["color"], "blue",
        "a conflicting apply changes nothing: {cm}"
    );

    server
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=bob",
            "--force-conflicts",
            "-f",
            "bob.yaml",
        ])
        .ok();
    let cm = server.kubectl_json(&["get", "configmap", "ssa-config"]);
    assert_eq!(cm["data"]["color"], "green", "{cm}");
}

#[test]
fn apply_server_side_after_client_side_apply_takes_over_without_conflicts() {
    let server = TestServer::start();
    server.write_file("v1.yaml", &manifests::app("hello", "nginx:1.27", 2, false));
    server.kubectl(&["apply", "-f", "v1.yaml"]).ok();

    server.write_file("v2.yaml", &manifests::app("salut", "nginx:1.28", 3, false));
    let out = server.kubectl_ok(&["apply", "--server-side", "-f", "v2.yaml"]);
    for line in [
        "namespace/demo serverside-applied",
        "configmap/app-config serverside-applied",
        "secret/app-secret serverside-applied",
        "service/web serverside-applied",
        "deployment.apps/web serverside-applied",
    ] {
        assert!(out.contains(line), "missing {line:?}:\n{out}");
    }
    let cm = server.kubectl_json(&["get", "configmap", "app-config", "-n", "demo"]);
    assert_eq!(cm["data"]["greeting"], "salut", "{cm}");
    let deploy = server.kubectl_json(&["get", "deployment", "web", "-n", "demo"]);
    assert_eq!(deploy["spec"]["replicas"], 3, "{deploy}");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.28",
        "{deploy}"
    );
}

#[test]
fn a_create_or_apply_that_stores_no_service_gives_its_cluster_ip_back() {
    let server = TestServer::start();
    let service = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n\
             spec:\n  clusterIP: 10.43.200.7\n  selector:\n    app: web\n  ports:\n  - port: 80\n"
        )
    };
    // A dry run allocates the address to check the Service, then stores nothing, through
    // a create (POST) as through an apply...
    server.write_file("dry.yaml", &service("dry"));
    let out = server.kubectl_ok(&["create", "--dry-run=server", "-f", "dry.yaml"]);
    assert!(
        out.contains("service/dry created (server dry run)"),
        "{out}"
    );
    let out = server.kubectl_ok(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        "dry.yaml",
    ]);
    assert!(out.contains("service/dry serverside-applied"), "{out}");
    let absent = server.kubectl(&["get", "service", "dry"]);
    assert!(absent.stderr.contains("NotFound"), "{absent}");
    // ...so the address is free for the next Service that asks for it.
    server.write_file("real.yaml", &service("real"));
    let out = server.kubectl_ok(&["apply", "--server-side", "-f", "real.yaml"]);
    assert!(out.contains("service/real serverside-applied"), "{out}");
    let real = server.kubectl_json(&["get", "service", "real"]);
    assert_eq!(real["spec"]["clusterIP"], "10.43.200.7", "{real}");
    // And one that is stored keeps it: a second Service cannot take it.
    server.write_file("second.yaml", &service("second"));
    let taken = server.kubectl(&["apply", "--server-side", "-f", "second.yaml"]);
    assert!(
        taken.stderr.contains("provided IP is already allocated"),
        "{taken}"
    );
}
