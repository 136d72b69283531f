//! PodSecurity and ResourceQuota admission through the real binary and real kubectl: a
//! `restricted` namespace refuses a privileged pod with upstream's message, `warn` labels
//! print kubectl's `Warning:` lines, relabelling a namespace warns about its existing pods,
//! invalid labels are refused; a quota's third pod is refused with `exceeded quota`,
//! `kubectl describe quota` shows the usage the quota controller tracks, and deleting a pod
//! frees quota. Pods stay Pending (no node), which these tests do not need.

mod common;

use common::process::eventually;
use common::TestServer;
use std::time::Duration;

fn pod(name: &str, ns: &str, security: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  containers:\n  - name: c\n    image: busybox\n{security}"
    )
}

const PRIVILEGED: &str = "    securityContext:\n      privileged: true\n";

fn create(server: &TestServer, yaml: &str) -> common::process::Run {
    server.kubectl_with_stdin(&["create", "-f", "-"], Some(yaml))
}

#[test]
fn pod_security_labels_enforce_warn_and_check_existing_pods() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "locked"]);
    server.kubectl_ok(&[
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let refused = create(&server, &pod("priv", "locked", PRIVILEGED)).fails();
    assert!(
        refused.stderr.contains(
            r#"pods "priv" is forbidden: violates PodSecurity "restricted:latest": privileged (container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        ),
        "{refused}"
    );
    assert!(!server
        .kubectl(&["get", "pod", "priv", "-n", "locked"])
        .success());
    // A compliant pod is admitted.
    let compliant = "    securityContext:\n      allowPrivilegeEscalation: false\n      runAsNonRoot: true\n      runAsUser: 1000\n      seccompProfile:\n        type: RuntimeDefault\n      capabilities:\n        drop: [\"ALL\"]\n";
    create(&server, &pod("fine", "locked", compliant)).ok();
    // Workloads are not refused, but their pod template is warned about.
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: locked\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      hostNetwork: true\n      containers:\n      - name: c\n        image: busybox\n";
    let run = create(&server, deployment).ok();
    assert!(
        run.stderr.contains(r#"Warning: would violate PodSecurity "restricted:latest": host namespaces (hostNetwork=true), allowPrivilegeEscalation != false"#),
        "{run}"
    );

    // warn=baseline: admitted, with kubectl's warning line.
    server.kubectl_ok(&["create", "namespace", "watched"]);
    server.kubectl_ok(&[
        "label",
        "namespace",
        "watched",
        "pod-security.kubernetes.io/warn=baseline",
    ]);
    let run = create(&server, &pod("loud", "watched", PRIVILEGED)).ok();
    assert!(
        run.stderr.contains(r#"Warning: would violate PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#),
        "{run}"
    );

    // Tightening enforce on a namespace with violating pods warns about them.
    server.kubectl_ok(&["create", "namespace", "legacy"]);
    create(&server, &pod("old-a", "legacy", PRIVILEGED)).ok();
    create(&server, &pod("old-b", "legacy", PRIVILEGED)).ok();
    let run = server
        .kubectl(&[
            "label",
            "namespace",
            "legacy",
            "pod-security.kubernetes.io/enforce=baseline",
        ])
        .ok();
    assert!(
        run.stderr.contains(r#"Warning: existing pods in namespace "legacy" violate the new PodSecurity enforce level "baseline:latest""#),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("Warning: old-a (and 1 other pod): privileged"),
        "{run}"
    );
    // Metadata-only updates of an existing violating pod are still allowed.
    server.kubectl_ok(&["label", "pod", "old-a", "-n", "legacy", "touched=yes"]);

    // Invalid label values are refused with upstream's field error.
    let run = server
        .kubectl(&[
            "label",
            "namespace",
            "legacy",
            "--overwrite",
            "pod-security.kubernetes.io/enforce=strict",
        ])
        .fails();
    assert!(
        run.stderr.contains(r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#),
        "{run}"
    );
}

fn quota_status(server: &TestServer, ns: &str, field: &str) -> String {
    server
        .kubectl(&[
            "get",
            "resourcequota",
            "q1",
            "-n",
            ns,
            "-o",
            &format!("jsonpath={{.status.{field}.pods}}"),
        ])
        .stdout
}

#[test]
fn resource_quota_refuses_the_pod_over_the_limit_and_frees_usage_on_delete() {
    let server = TestServer::start();
    server.kubectl_ok(&["create", "namespace", "quoted"]);
    server.kubectl_ok(&["create", "quota", "q1", "--hard=pods=2", "-n", "quoted"]);
    eventually(Duration::from_secs(20), "the quota's status", || {
        let hard = quota_status(&server, "quoted", "hard");
        let used = quota_status(&server, "quoted", "used");
        (hard == "2" && used == "0")
            .then_some(())
            .ok_or(format!("hard={hard} used={used}"))
    });
    create(&server, &pod("p1", "quoted", "")).ok();
    create(&server, &pod("p2", "quoted", "")).ok();
    let refused = create(&server, &pod("p3", "quoted", "")).fails();
    assert!(
        refused.stderr.contains(
            r#"pods "p3" is forbidden: exceeded quota: q1, requested: pods=1, used: pods=2, limited: pods=2"#
        ),
        "{refused}"
    );
    let described = server.kubectl_ok(&["describe", "quota", "q1", "-n", "quoted"]);
    let row: Vec<&str> = described
        .lines()
        .find(|l| l.starts_with("pods"))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row, ["pods", "2", "2"], "{described}");

    server.kubectl_ok(&["delete", "pod", "p1", "-n", "quoted", "--wait=false"]);
    eventually(Duration::from_secs(20), "usage to go down", || {
        let used = quota_status(&server, "quoted", "used");
        (used == "1").then_some(()).ok_or(used)
    });
    create(&server, &pod("p3", "quoted", "")).ok();

    // A namespace without quota is not limited.
    server.kubectl_ok(&["create", "namespace", "free"]);
    for i in 0..3 {
        create(&server, &pod(&format!("f{i}"), "free", "")).ok();
    }
}
