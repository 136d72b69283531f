//! kubectl get (tables with upstream columns, output formats, namespaces, labels, selectors,
//! watch) and describe.

mod common;

use std::time::Duration;

use common::{json, manifests, row_where, table_rows, TestServer};

/// A server with the `demo` namespace of [`manifests::app`] applied.
fn demo_server() -> TestServer {
    let server = TestServer::start();
    server.apply("app.yaml", &manifests::app("hello", "nginx:1.27", 2, false));
    server
}

/// An AGE cell as kubectl prints it: `5s`, `3m2s`, `4h`, `2d`.
fn is_age(cell: &str) -> bool {
    cell.chars().next().is_some_and(|c| c.is_ascii_digit())
        && cell.ends_with(['s', 'm', 'h', 'd', 'y'])
}

#[test]
fn get_prints_tables_with_upstream_columns() {
    let server = demo_server();

    // The deployment controller makes the ReplicaSet (UP-TO-DATE 2); with no node its pods
    // never become ready.
    let out = common::process::eventually(
        std::time::Duration::from_secs(20),
        "the deployment's up-to-date pods",
        || {
            let out = server.kubectl_ok(&["get", "deployments", "-n", "demo"]);
            let rows = table_rows(&out);
            let web = row_where(&rows, 0, "web");
            if web[..4] == ["web", "0/2", "2", "0"] {
                Ok(out)
            } else {
                Err(out)
            }
        },
    );
    let rows = table_rows(&out);
    assert_eq!(
        rows[0],
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{out}"
    );
    assert!(is_age(&row_where(&rows, 0, "web")[4]), "{out}");

    let out = server.kubectl_ok(&["get", "svc", "-n", "demo"]);
    let rows = table_rows(&out);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE"
        ],
        "{out}"
    );
    let web = row_where(&rows, 0, "web");
    assert_eq!(web[1], "ClusterIP", "{out}");
    assert!(
        web[2].starts_with("10.43."),
        "cluster IP from 10.43.0.0/16: {out}"
    );
    assert_eq!(&web[3..5], ["<none>", "80/TCP"], "{out}");

    let out = server.kubectl_ok(&["get", "cm", "-n", "demo"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "DATA", "AGE"], "{out}");
    assert_eq!(
        &row_where(&rows, 0, "app-config")[..2],
        ["app-config", "1"],
        "{out}"
    );

    let out = server.kubectl_ok(&["get", "secrets", "-n", "demo"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "TYPE", "DATA", "AGE"], "{out}");
    assert_eq!(
        &row_where(&rows, 0, "app-secret")[..3],
        ["app-secret", "Opaque", "1"],
        "{out}"
    );

    let out = server.kubectl_ok(&["get", "namespaces"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "STATUS", "AGE"], "{out}");
    for ns in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "demo",
    ] {
        assert_eq!(&row_where(&rows, 0, ns)[..2], [ns, "Active"], "{out}");
    }

    // A single object is a one-row table.
    let out = server.kubectl_ok(&["get", "deploy", "web", "-n", "demo"]);
    assert_eq!(table_rows(&out).len(), 2, "{out}");
}

#[test]
fn get_wide_adds_the_priority_columns() {
    let server = demo_server();
    let out = server.kubectl_ok(&["get", "deploy", "-n", "demo", "-o", "wide"]);
    let rows = table_rows(&out);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{out}"
    );
    assert_eq!(
        &row_where(&rows, 0, "web")[5..],
        ["web", "nginx:1.27", "app=web"],
        "{out}"
    );

    let out = server.kubectl_ok(&["get", "svc", "web", "-n", "demo", "-o", "wide"]);
    let rows = table_rows(&out);
    assert_eq!(
        rows[0].last().map(String::as_str),
        Some("SELECTOR"),
        "{out}"
    );
    assert_eq!(rows[1].last().map(String::as_str), Some("app=web"), "{out}");
}

#[test]
fn get_prints_yaml_json_jsonpath_and_names() {
    let server = demo_server();

    let yaml = server.kubectl_ok(&["get", "cm", "app-config", "-n", "demo", "-o", "yaml"]);
    for line in [
        "apiVersion: v1",
        "kind: ConfigMap",
        "  greeting: hello",
        "  name: app-config",
        "  namespace: demo",
        "  uid: ",
        "  resourceVersion: ",
        "  creationTimestamp: ",
    ] {
        assert!(yaml.contains(line), "missing {line:?} in:\n{yaml}");
    }

    let list = json(&server.kubectl_ok(&["get", "cm", "-n", "demo", "-o", "json"]));
    assert_eq!(list["kind"], "List", "{list}");
    let cm = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["metadata"]["name"] == "app-config"))
        .unwrap_or_else(|| panic!("app-config not in {list}"));
    assert_eq!(cm["kind"], "ConfigMap", "{cm}");
    assert_eq!(cm["data"]["greeting"], "hello", "{cm}");

    let out = server.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "demo",
        "-o",
        "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(out, "2 nginx:1.27");

    let out = server.kubectl_ok(&["get", "deploy,svc", "-n", "demo", "-o", "name"]);
    assert_eq!(out, "deployment.apps/web\nservice/web\n");
}

#[test]
fn get_all_namespaces_adds_the_namespace_column() {
    let server = demo_server();
    server.kubectl_ok(&["create", "configmap", "elsewhere", "-n", "default"]);
    let out = server.kubectl_ok(&["get", "configmaps", "-A"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAMESPACE", "NAME", "DATA", "AGE"], "{out}");
    assert_eq!(
        &row_where(&rows, 1, "app-config")[..3],
        ["demo", "app-config", "1"],
        "{out}"
    );
    assert_eq!(
        &row_where(&rows, 1, "elsewhere")[..3],
        ["default", "elsewhere", "0"],
        "{out}"
    );
}

#[test]
fn get_show_labels_prints_the_labels_column() {
    let server = TestServer::start();
    server.apply(
        "cm.yaml",
        &manifests::configmap("labelled", "default", &[("app", "a"), ("tier", "front")]),
    );
    server.apply("cm2.yaml", &manifests::configmap("bare", "default", &[]));
    let out = server.kubectl_ok(&["get", "cm", "labelled", "bare", "--show-labels"]);
    let rows = table_rows(&out);
    assert_eq!(rows[0], ["NAME", "DATA", "AGE", "LABELS"], "{out}");
    assert_eq!(
        row_where(&rows, 0, "labelled")[3],
        "app=a,tier=front",
        "{out}"
    );
    assert_eq!(row_where(&rows, 0, "bare")[3], "<none>", "{out}");
}

#[test]
fn label_selectors_filter_lists() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "sel"]);
    let objects = [
        manifests::configmap("a", "sel", &[("app", "a"), ("tier", "front")]),
        manifests::configmap("b", "sel", &[("app", "b")]),
        manifests::configmap("c", "sel", &[("app", "c"), ("tier", "back")]),
    ]
    .join("---\n");
    server.apply("cms.yaml", &objects);

    let names = |selector: &str| -> Vec<String> {
        let out = server.kubectl_ok(&["get", "cm", "-n", "sel", "-l", selector, "-o", "name"]);
        let mut names: Vec<String> = out
            .lines()
            .map(|l| l.trim_start_matches("configmap/").to_string())
            // The root-CA publisher's ConfigMap is in every namespace, as upstream's.
            .filter(|n| n != "kube-root-ca.crt")
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("app=a"), ["a"]);
    assert_eq!(names("app==b"), ["b"]);
    assert_eq!(names("app!=a"), ["b", "c"]);
    assert_eq!(names("app in (a,b)"), ["a", "b"]);
    assert_eq!(names("app notin (a,b)"), ["c"]);
    assert_eq!(names("tier"), ["a", "c"]);
    assert_eq!(names("!tier"), ["b"]);
    assert_eq!(names("app,tier!=back"), ["a", "b"]);
    assert_eq!(names("app=a,tier=back"), Vec::<String>::new());

    // Selectors apply to the table path too.
    let out = server.kubectl_ok(&["get", "cm", "-n", "sel", "-l", "tier in (back)"]);
    let rows = table_rows(&out);
    assert_eq!(rows.len(), 2, "{out}");
    assert_eq!(rows[1][0], "c", "{out}");
}

#[test]
fn get_watch_prints_a_change() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "configmap", "watched", "--from-literal=a=1"]);

    let mut watch = server.kubectl_background(&["get", "configmaps", "-w"]);
    let row_with = |name: &'static str, data: &'static str| {
        move |out: &str| {
            table_rows(out)
                .iter()
                .any(|r| r.len() >= 3 && r[0] == name && r[1] == data)
        }
    };
    watch.wait_for_stdout(
        "the initial row",
        Duration::from_secs(20),
        row_with("watched", "1"),
    );

    server.kubectl_ok(&[
        "patch",
        "configmap",
        "watched",
        "--type=merge",
        "-p",
        r#"{"data":{"b":"2"}}"#,
    ]);
    watch.wait_for_stdout(
        "the modified row",
        Duration::from_secs(20),
        row_with("watched", "2"),
    );

    server.kubectl_ok(&["create", "configmap", "newcomer"]);
    watch.wait_for_stdout(
        "the added row",
        Duration::from_secs(20),
        row_with("newcomer", "0"),
    );
    assert!(
        !watch.has_exited(),
        "the watch ended early:\n{}",
        watch.stderr()
    );
}

#[test]
fn get_of_an_empty_namespace_says_no_resources_found() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "empty"]);
    let run = server.kubectl(&["get", "pods", "-n", "empty"]).ok();
    assert_eq!(run.stdout, "", "{run}");
    assert_eq!(
        run.stderr.trim(),
        "No resources found in empty namespace.",
        "{run}"
    );
}

#[test]
fn secret_string_data_is_stored_as_base64_data() {
    let server = TestServer::start();
    let out = server.apply(
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sd\nstringData:\n  user: admin\n",
    );
    assert!(out.contains("secret/sd created"), "{out}");
    let secret = server.kubectl_json(&["get", "secret", "sd"]);
    assert_eq!(secret["data"]["user"], "YWRtaW4=", "{secret}");
    assert_eq!(secret["type"], "Opaque", "{secret}");
    assert!(
        secret.get("stringData").is_none(),
        "stringData is write-only: {secret}"
    );
}

/// The value after `key` on the first line (at any indent) that starts with it.
#[track_caller]
fn field(out: &str, key: &str) -> String {
    out.lines()
        .map(str::trim_start)
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{out}"))
}

#[test]
fn describe_prints_the_details_of_a_configmap() {
    let server = demo_server();
    let out = server.kubectl_ok(&["describe", "configmap", "app-config", "-n", "demo"]);
    assert_eq!(field(&out, "Name:"), "app-config", "{out}");
    assert_eq!(field(&out, "Namespace:"), "demo", "{out}");
    assert_eq!(field(&out, "Labels:"), "app=web", "{out}");
    assert!(
        out.contains("\nData\n====\ngreeting:\n----\nhello\n"),
        "{out}"
    );
}

#[test]
fn describe_prints_the_details_of_a_deployment() {
    let server = demo_server();
    let out = server.kubectl_ok(&["describe", "deployment", "web", "-n", "demo"]);
    assert_eq!(field(&out, "Name:"), "web", "{out}");
    assert_eq!(field(&out, "Namespace:"), "demo", "{out}");
    assert_eq!(field(&out, "Selector:"), "app=web", "{out}");
    assert!(field(&out, "Replicas:").starts_with("2 desired |"), "{out}");
    assert_eq!(field(&out, "StrategyType:"), "RollingUpdate", "{out}");
    assert_eq!(field(&out, "Image:"), "nginx:1.27", "{out}");
    assert_eq!(
        field(&out, "Port:"),
        "8080/TCP",
        "container port protocol defaults to TCP:\n{out}"
    );
}

#[test]
fn describe_prints_the_details_of_a_service() {
    let server = demo_server();
    let out = server.kubectl_ok(&["describe", "service", "web", "-n", "demo"]);
    assert_eq!(field(&out, "Name:"), "web", "{out}");
    assert_eq!(field(&out, "Selector:"), "app=web", "{out}");
    assert_eq!(field(&out, "Type:"), "ClusterIP", "{out}");
    assert!(field(&out, "IP:").starts_with("10.43."), "{out}");
    assert_eq!(field(&out, "Port:"), "http 80/TCP", "{out}");
    assert_eq!(field(&out, "TargetPort:"), "8080/TCP", "{out}");
}

#[test]
fn field_selectors_on_custom_resources_use_the_crds_selectable_fields() {
    let server = TestServer::start();
    let crd = manifests::WIDGET_CRD.replace(
        "    additionalPrinterColumns:",
        "    selectableFields:\n    - jsonPath: .spec.color\n    - jsonPath: .spec.size\n    additionalPrinterColumns:",
    );
    server.apply("crd.yaml", &crd);
    server.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
    ]);
    server.apply("w1.yaml", &manifests::widget("w1", "default", 1, "blue"));
    server.apply("w2.yaml", &manifests::widget("w2", "default", 2, "green"));
    let names = |selector: &str| {
        server
            .kubectl_ok(&[
                "get",
                "widgets",
                "-n",
                "default",
                "--field-selector",
                selector,
                "-o",
                "name",
            ])
            .trim()
            .to_owned()
    };
    assert_eq!(names("spec.color=blue"), "widget.example.com/w1");
    assert_eq!(names("spec.size=2"), "widget.example.com/w2");
    assert_eq!(
        names("spec.color!=blue,metadata.name!=w1"),
        "widget.example.com/w2"
    );
    let run = server
        .kubectl(&[
            "get",
            "widgets",
            "-n",
            "default",
            "--field-selector",
            "spec.shape=round",
        ])
        .fails();
    assert!(
        run.stderr.contains("field label not supported: spec.shape"),
        "{run}"
    );
}

/// core/v1 and events.k8s.io/v1 Events are one resource, as upstream stores them: an event
/// written through either API is read, selected, described, updated and deleted through the
/// other in its own shape.
#[test]
fn events_of_either_api_are_one_set_seen_through_both() {
    let server = TestServer::start();
    let raw = |path: &str| json(&server.kubectl_ok(&["get", "--raw", path]));
    server.kubectl_ok(&["create", "configmap", "subject"]);
    let uid = server.kubectl_ok(&[
        "get",
        "configmap",
        "subject",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    server.apply(
        "new-api.yaml",
        &format!(
            "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: new-api\n  namespace: default\n\
             eventTime: \"2026-01-01T00:00:00.000000Z\"\nreportingController: example.com/test\n\
             reportingInstance: test-1\naction: Testing\nreason: NewApiReason\ntype: Normal\n\
             regarding:\n  apiVersion: v1\n  kind: ConfigMap\n  name: subject\n  namespace: default\n  uid: {uid}\n\
             note: written through events.k8s.io\n"
        ),
    );
    server.apply(
        "core.yaml",
        "apiVersion: v1\nkind: Event\nmetadata:\n  name: core-api\n  namespace: default\n\
         involvedObject:\n  kind: ConfigMap\n  name: other\n  namespace: default\n\
         reason: CoreReason\nmessage: written through v1\ntype: Warning\ncount: 3\n",
    );

    // Each API validates as upstream's: events.k8s.io requires what its writers must say;
    // core/v1 only that an event lives in its object's namespace.
    let refused = server
        .kubectl_with_stdin(
            &["create", "-f", "-"],
            Some(
                "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata:\n  name: bare\n  namespace: default\n\
                 reason: Bare\nregarding:\n  kind: ConfigMap\n  name: subject\n  namespace: default\n",
            ),
        )
        .fails();
    for expected in [
        r#"The Event "bare" is invalid"#,
        "eventTime: Required value",
        r#"type: Invalid value: "": has invalid value: "#,
    ] {
        assert!(
            refused.output().contains(expected),
            "{expected}: {refused:?}"
        );
    }
    let refused = server
        .kubectl_with_stdin(
            &["create", "-f", "-"],
            Some(
                "apiVersion: v1\nkind: Event\nmetadata:\n  name: elsewhere\n  namespace: kube-system\n\
                 involvedObject:\n  kind: ConfigMap\n  name: subject\n  namespace: default\n",
            ),
        )
        .fails();
    assert!(
        refused.output().contains(
            r#"involvedObject.namespace: Invalid value: "default": does not match event.namespace"#
        ),
        "{refused:?}"
    );

    // The events.k8s.io event in core's shape, found by core's field selectors.
    let core = raw("/api/v1/namespaces/default/events/new-api");
    assert_eq!(core["apiVersion"], "v1", "{core}");
    assert_eq!(core["message"], "written through events.k8s.io", "{core}");
    assert_eq!(core["involvedObject"]["name"], "subject", "{core}");
    assert_eq!(core["reportingComponent"], "example.com/test", "{core}");
    let selected = server.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=subject",
        "-o",
        "name",
    ]);
    assert_eq!(selected.trim(), "event/new-api");
    let described = server.kubectl_ok(&["describe", "configmap", "subject"]);
    assert!(
        described.contains("NewApiReason") && described.contains("written through events.k8s.io"),
        "{described}"
    );

    // The core event in events.k8s.io's shape, and selected by its field selectors.
    let new = raw("/apis/events.k8s.io/v1/namespaces/default/events/core-api");
    assert_eq!(new["apiVersion"], "events.k8s.io/v1", "{new}");
    assert_eq!(new["note"], "written through v1", "{new}");
    assert_eq!(new["regarding"]["name"], "other", "{new}");
    assert_eq!(new["deprecatedCount"], 3, "{new}");
    let list = raw(
        "/apis/events.k8s.io/v1/namespaces/default/events?fieldSelector=regarding.name%3Dother",
    );
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["core-api"], "{list}");

    // Written through one API, seen through the other; deleted likewise. Through
    // events.k8s.io what an event says is fixed once written (its series may grow), as
    // upstream validates it; through core/v1 the old recorders may still change it.
    let refused = server
        .kubectl(&[
            "patch",
            "events.v1.events.k8s.io",
            "core-api",
            "--type=merge",
            "-p",
            r#"{"note": "changed through events.k8s.io"}"#,
        ])
        .fails();
    assert!(
        refused.output().contains(
            r#"message: Invalid value: "changed through events.k8s.io": field is immutable"#
        ),
        "{refused:?}"
    );
    server.kubectl_ok(&[
        "patch",
        "events.v1.events.k8s.io",
        "core-api",
        "--type=merge",
        "-p",
        r#"{"series": {"count": 4, "lastObservedTime": "2026-01-01T00:05:00.000000Z"}}"#,
    ]);
    let core = raw("/api/v1/namespaces/default/events/core-api");
    assert_eq!(core["series"]["count"], 4, "{core}");
    assert_eq!(core["count"], 3, "{core}");
    server.kubectl_ok(&[
        "patch",
        "event",
        "core-api",
        "--type=merge",
        "-p",
        r#"{"message": "changed through v1"}"#,
    ]);
    let new = raw("/apis/events.k8s.io/v1/namespaces/default/events/core-api");
    assert_eq!(new["note"], "changed through v1", "{new}");
    server.kubectl_ok(&["delete", "event", "new-api"]);
    server
        .kubectl(&[
            "get",
            "--raw",
            "/apis/events.k8s.io/v1/namespaces/default/events/new-api",
        ])
        .fails();
}
