//! helm 4 installs, lists, upgrades and uninstalls the chart `helm create` makes, and
//! `helm install --wait` completes once the chart's pods run on (simulated) nodes.

mod common;

use common::sim_nodes::TestSimNodes;
use common::{json, TestServer};

/// The release's revisions as helm stores them: Secrets labelled owner=helm,name=REL.
fn release_secrets(server: &TestServer, release: &str) -> Vec<String> {
    let list = server.kubectl_json(&[
        "get",
        "secrets",
        "-l",
        &format!("owner=helm,name={release}"),
    ]);
    let mut names: Vec<String> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| {
            s["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    names
}

/// A JSON scalar as text (helm prints revisions as strings, other tools as numbers).
fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn helm_installs_lists_upgrades_and_uninstalls_a_created_chart() {
    let server = TestServer::start();
    let out = server.helm(&["create", "mychart"]).ok().stdout;
    assert!(out.contains("Creating mychart"), "{out}");

    let run = server.helm(&["install", "rel1", "./mychart"]).ok();
    assert!(run.stdout.contains("STATUS: deployed"), "{run}");
    assert!(run.stdout.contains("REVISION: 1"), "{run}");

    let list = json(&server.helm(&["list", "-o", "json"]).ok().stdout);
    assert_eq!(list[0]["name"], "rel1", "{list}");
    assert_eq!(list[0]["status"], "deployed", "{list}");
    assert_eq!(text(&list[0]["revision"]), "1", "{list}");

    let deploy = server.kubectl_json(&["get", "deployment", "rel1-mychart"]);
    assert_eq!(deploy["spec"]["replicas"], 1, "{deploy}");
    assert_eq!(
        deploy["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm",
        "{deploy}"
    );
    assert_eq!(
        deploy["metadata"]["annotations"]["meta.helm.sh/release-name"], "rel1",
        "{deploy}"
    );
    server.kubectl_ok(&["get", "service", "rel1-mychart"]);
    server.kubectl_ok(&["get", "serviceaccount", "rel1-mychart"]);
    assert_eq!(
        release_secrets(&server, "rel1"),
        ["sh.helm.release.v1.rel1.v1"]
    );

    let run = server
        .helm(&["upgrade", "rel1", "./mychart", "--set", "replicaCount=2"])
        .ok();
    assert!(run.stdout.contains("REVISION: 2"), "{run}");
    let list = json(&server.helm(&["list", "-o", "json"]).ok().stdout);
    assert_eq!(text(&list[0]["revision"]), "2", "{list}");
    assert_eq!(list[0]["status"], "deployed", "{list}");
    let deploy = server.kubectl_json(&["get", "deployment", "rel1-mychart"]);
    assert_eq!(deploy["spec"]["replicas"], 2, "{deploy}");
    assert_eq!(
        release_secrets(&server, "rel1"),
        ["sh.helm.release.v1.rel1.v1", "sh.helm.release.v1.rel1.v2"]
    );

    let run = server.helm(&["uninstall", "rel1"]).ok();
    assert!(
        run.stdout.contains(r#"release "rel1" uninstalled"#),
        "{run}"
    );
    for kind in ["deployment", "service", "serviceaccount"] {
        let run = server.kubectl(&["get", kind, "rel1-mychart"]).fails();
        assert!(
            run.stderr.contains("not found"),
            "{kind} left behind:\n{run}"
        );
    }
    assert!(release_secrets(&server, "rel1").is_empty());
    let list = json(&server.helm(&["list", "-o", "json"]).ok().stdout);
    assert_eq!(list, serde_json::json!([]), "{list}");
}

/// `helm install --wait` returns once the created chart's Deployment is rolled out: the
/// scheduler binds its pods to simulated nodes, whose kubelets report them Ready, and the
/// Deployment controller reports them available. A release whose pods fit nowhere times out
/// instead, so the wait is real.
#[test]
fn helm_install_wait_completes_when_the_chart_is_rolled_out() {
    let server = TestServer::start();
    let _nodes = TestSimNodes::start(&server, 2, &[]);
    server.helm(&["create", "web"]).ok();

    let run = server
        .helm(&[
            "install",
            "web",
            "./web",
            "--set",
            "replicaCount=3",
            "--wait",
            "--timeout",
            "90s",
        ])
        .ok();
    assert!(run.stdout.contains("STATUS: deployed"), "{run}");
    let deploy = server.kubectl_json(&["get", "deployment", "web"]);
    assert_eq!(deploy["status"]["availableReplicas"], 3, "{deploy}");
    let pods = server.kubectl_json(&["get", "pods", "-l", "app.kubernetes.io/instance=web"]);
    let items = pods["items"].as_array().expect("items");
    assert_eq!(items.len(), 3, "{pods}");
    for p in items {
        assert!(
            p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty()),
            "{p}"
        );
        assert_eq!(p["status"]["phase"], "Running", "{p}");
    }

    let run = server
        .helm(&[
            "install",
            "huge",
            "./web",
            "--set",
            "resources.requests.cpu=1000",
            "--wait",
            "--timeout",
            "10s",
        ])
        .fails();
    let list = json(&server.helm(&["list", "--failed", "-o", "json"]).ok().stdout);
    let huge = list
        .as_array()
        .expect("releases")
        .iter()
        .find(|r| r["name"] == "huge")
        .unwrap_or_else(|| panic!("no release huge: {list}\n{run}"));
    assert_eq!(huge["status"], "failed", "{list}\n{run}");
}
