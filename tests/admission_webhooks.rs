//! Dynamic admission webhooks end to end: the real binary, real kubectl, and an HTTPS
//! webhook server started by the test (its CA in the configuration's `caBundle`).

mod common;

use common::webhook_server::{WebhookServer, DENY_MESSAGE, LABEL, SERVICE, WARNING};
use common::{manifests, TestServer};

/// A webhook configuration of `kind` with one webhook for ConfigMap creates; `extra` is
/// further YAML lines of the webhook (indented by 2 under the list item).
fn configuration(kind: &str, name: &str, hook: &str, client: &str, extra: &str) -> String {
    configuration_for(
        kind,
        name,
        hook,
        client,
        ("CREATE", "", "configmaps"),
        extra,
    )
}

/// A webhook configuration of `kind` with one webhook for updates of `resource` in apps/v1
/// (`deployments`, `deployments/scale`).
fn deployments_configuration(kind: &str, name: &str, client: &str, resource: &str) -> String {
    let hook = format!("{name}.example.com");
    let rule = ("UPDATE", "apps", resource);
    configuration_for(kind, name, &hook, client, rule, "  sideEffects: None\n")
}

/// A webhook configuration of `kind` with one webhook whose rule is (operation, group,
/// resource) at the group's v1.
fn configuration_for(
    kind: &str,
    name: &str,
    hook: &str,
    client: &str,
    (operation, group, resource): (&str, &str, &str),
    extra: &str,
) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: {kind}
metadata:
  name: {name}
webhooks:
- name: {hook}
  clientConfig:
{client}
  rules:
  - operations: ["{operation}"]
    apiGroups: ["{group}"]
    apiVersions: ["v1"]
    resources: ["{resource}"]
  admissionReviewVersions: ["v1"]
{extra}"#
    )
}

fn url_client(wh: &WebhookServer, path: &str) -> String {
    format!(
        "    url: {}\n    caBundle: {}",
        wh.url(path),
        wh.ca_bundle()
    )
}

/// Only ConfigMaps labelled `test=<value>` go to this webhook.
fn only(value: &str) -> String {
    format!("  objectSelector:\n    matchLabels:\n      test: {value}\n")
}

fn create_cm(
    server: &TestServer,
    name: &str,
    labels: &[(&str, &str)],
    args: &[&str],
) -> common::Run {
    let path = server.write_file(
        &format!("{name}.yaml"),
        &manifests::configmap(name, "default", labels),
    );
    let mut all = vec!["create", "-f", path.to_str().expect("utf-8 path")];
    all.extend(args);
    server.kubectl(&all)
}

#[test]
fn kubectl_sees_the_label_a_mutating_webhook_added() {
    let wh = WebhookServer::start();
    let server = TestServer::start();
    server.apply(
        "mutate.yaml",
        &configuration(
            "MutatingWebhookConfiguration",
            "label",
            "label.example.com",
            &url_client(&wh, "/label"),
            "  sideEffects: None\n",
        ),
    );
    server.kubectl_ok(&["create", "configmap", "labelled", "--from-literal=a=1"]);
    let yaml = server.kubectl_ok(&["get", "configmap", "labelled", "-o", "yaml"]);
    assert!(yaml.contains(&format!("{LABEL}: \"yes\"")), "{yaml}");
    // The server's own ConfigMap creates (a new namespace's kube-root-ca.crt) may land
    // after the configuration on a slow start, and go to the webhook too, as upstream.
    let reqs: Vec<_> = wh
        .requests("/label")
        .into_iter()
        .filter(|r| r["request"]["name"] == "labelled")
        .collect();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0]["request"]["userInfo"]["username"], "system:admin");
    assert_eq!(reqs[0]["request"]["object"]["data"]["a"], "1");
}

#[test]
fn kubectl_prints_a_validating_webhooks_denial_and_warnings() {
    let wh = WebhookServer::start();
    let server = TestServer::start();
    let deny = configuration(
        "ValidatingWebhookConfiguration",
        "deny",
        "deny.example.com",
        &url_client(&wh, "/deny"),
        &format!("  sideEffects: None\n{}", only("deny")),
    );
    let warn = configuration(
        "ValidatingWebhookConfiguration",
        "warn",
        "warn.example.com",
        &url_client(&wh, "/warn"),
        &format!("  sideEffects: None\n{}", only("warn")),
    );
    server.apply("deny.yaml", &deny);
    server.apply("warn.yaml", &warn);
    let run = create_cm(&server, "denied", &[("test", "deny")], &[]).fails();
    assert!(
        run.stderr.contains(&format!(
            "admission webhook \"deny.example.com\" denied the request: {DENY_MESSAGE}"
        )),
        "{run}"
    );
    assert!(!server.kubectl(&["get", "configmap", "denied"]).success());
    let run = create_cm(&server, "warned", &[("test", "warn")], &[]).ok();
    assert!(run.stderr.contains(&format!("Warning: {WARNING}")), "{run}");
    server.kubectl_ok(&["get", "configmap", "warned"]);
}

#[test]
fn a_webhook_past_its_timeout_refuses_under_fail_and_is_skipped_under_ignore() {
    let wh = WebhookServer::start();
    let server = TestServer::start();
    for (name, policy) in [("fail", "Fail"), ("ignore", "Ignore")] {
        server.apply(
            &format!("{name}.yaml"),
            &configuration(
                "ValidatingWebhookConfiguration",
                &format!("slow-{name}"),
                &format!("slow-{name}.example.com"),
                &url_client(&wh, "/sleep"),
                &format!(
                    "  sideEffects: None\n  timeoutSeconds: 1\n  failurePolicy: {policy}\n{}",
                    only(name)
                ),
            ),
        );
    }
    let run = create_cm(&server, "slow-fail", &[("test", "fail")], &[]).fails();
    let expected = format!(
        "Internal error occurred: failed calling webhook \"slow-fail.example.com\": failed to call webhook: Post \"{}?timeout=1s\": context deadline exceeded",
        wh.url("/sleep")
    );
    assert!(run.stderr.contains(&expected), "{run}");
    create_cm(&server, "slow-ignore", &[("test", "ignore")], &[]).ok();
    server.kubectl_ok(&["get", "configmap", "slow-ignore"]);
}

#[test]
fn a_server_side_dry_run_reaches_only_webhooks_without_side_effects() {
    let wh = WebhookServer::start();
    let server = TestServer::start();
    server.apply(
        "safe.yaml",
        &configuration(
            "ValidatingWebhookConfiguration",
            "safe",
            "safe.example.com",
            &url_client(&wh, "/allow"),
            &format!("  sideEffects: NoneOnDryRun\n{}", only("safe")),
        ),
    );
    // admissionregistration/v1 refuses webhooks with side effects: a dry run can never
    // reach one.
    server.write_file(
        "unsafe.yaml",
        &configuration(
            "ValidatingWebhookConfiguration",
            "unsafe",
            "unsafe.example.com",
            &url_client(&wh, "/allow"),
            &format!("  sideEffects: Some\n{}", only("unsafe")),
        ),
    );
    let refused = server
        .kubectl(&[
            "apply",
            "-f",
            server.files_dir().join("unsafe.yaml").to_str().unwrap(),
        ])
        .fails();
    assert!(
        refused
            .stderr
            .contains("sideEffects: Unsupported value: \"Some\""),
        "{refused}"
    );
    let run = create_cm(&server, "dry", &[("test", "safe")], &["--dry-run=server"]).ok();
    assert!(
        run.stdout
            .contains("configmap/dry created (server dry run)"),
        "{run}"
    );
    assert!(!server.kubectl(&["get", "configmap", "dry"]).success());
    let reqs = wh.requests("/allow");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0]["request"]["dryRun"], true);
    assert_eq!(wh.requests("/allow").len(), 1);
}

#[test]
fn service_referenced_webhooks_are_called_at_the_services_endpoint() {
    let wh = WebhookServer::start();
    let server = TestServer::start();
    let (namespace, name) = SERVICE;
    let service = format!(
        "    service:\n      namespace: {namespace}\n      name: {name}\n      path: /deny\n    caBundle: {}",
        wh.ca_bundle()
    );
    for (hook, policy) in [("fail", "Fail"), ("ignore", "Ignore")] {
        server.apply(
            &format!("svc-{hook}.yaml"),
            &configuration(
                "ValidatingWebhookConfiguration",
                &format!("svc-{hook}"),
                &format!("svc-{hook}.example.com"),
                &service,
                &format!(
                    "  sideEffects: None\n  failurePolicy: {policy}\n{}",
                    only(hook)
                ),
            ),
        );
    }
    // Before the Service exists, the call fails and the failurePolicy decides.
    let run = create_cm(&server, "svc-fail", &[("test", "fail")], &[]).fails();
    assert!(
        run.stderr.contains("failed calling webhook \"svc-fail.example.com\": failed to call webhook: Post \"https://webhook.hooks.svc:443/deny?timeout=10s\": service \"webhook\" not found"),
        "{run}"
    );
    create_cm(&server, "svc-ignore", &[("test", "ignore")], &[]).ok();
    assert!(wh.requests("/deny").is_empty());

    // The Service, and an endpoint at the test's webhook server (on 127.0.0.1: tests reach
    // nothing else) as a pod's address would be.
    let port = wh.port();
    server.apply(
        "service.yaml",
        &format!(
            r#"apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:
  ports:
  - name: https
    port: 443
    targetPort: 8443
---
apiVersion: v1
kind: Endpoints
metadata:
  name: {name}
  namespace: {namespace}
subsets:
- addresses:
  - ip: 127.0.0.1
  ports:
  - name: https
    port: {port}
"#
        ),
    );
    let run = create_cm(&server, "svc-denied", &[("test", "fail")], &[]).fails();
    assert!(
        run.stderr.contains(&format!(
            "admission webhook \"svc-fail.example.com\" denied the request: {DENY_MESSAGE}"
        )),
        "{run}"
    );
    let reviews = wh.requests("/deny");
    assert_eq!(reviews.len(), 1, "{reviews:?}");
    assert_eq!(reviews[0]["request"]["name"], "svc-denied");
}

#[test]
fn a_scale_is_admitted_as_a_scale_of_the_deployment_not_as_the_deployment() {
    let wh = WebhookServer::start();
    let server = TestServer::start();
    let cap = url_client(&wh, "/cap-replicas");
    let deny = url_client(&wh, "/deny");
    server.apply(
        "cap.yaml",
        &deployments_configuration(
            "MutatingWebhookConfiguration",
            "cap",
            &cap,
            "deployments/scale",
        ),
    );
    server.apply(
        "deny.yaml",
        &deployments_configuration(
            "ValidatingWebhookConfiguration",
            "deny",
            &deny,
            "deployments",
        ),
    );
    server.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=1",
    ]);
    let replicas = || {
        server.kubectl_ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
    };

    // The webhook for the Deployment itself is not called for a write through its scale
    // (the scale goes through); the one for `deployments/scale` is, with Scales, and its
    // patch of the Scale is what is stored.
    server.kubectl_ok(&["scale", "deployment", "web", "--replicas=5"]);
    assert_eq!(replicas(), "2");
    let reviews = wh.requests("/cap-replicas");
    let review = reviews
        .iter()
        .map(|r| &r["request"])
        .find(|r| r["name"] == "web")
        .unwrap_or_else(|| panic!("no review of web's scale: {reviews:?}"));
    let scale = serde_json::json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
    assert_eq!(review["kind"], scale, "{review}");
    assert_eq!(review["requestKind"], scale, "{review}");
    assert_eq!(
        review["resource"],
        serde_json::json!({"group": "apps", "version": "v1", "resource": "deployments"})
    );
    assert_eq!(review["subResource"], "scale");
    assert_eq!(review["operation"], "UPDATE");
    assert_eq!(review["object"]["kind"], "Scale", "{review}");
    assert_eq!(review["object"]["spec"]["replicas"], 5, "{review}");
    assert_eq!(review["oldObject"]["kind"], "Scale", "{review}");
    assert_eq!(review["oldObject"]["spec"]["replicas"], 1, "{review}");
    // (It refuses every update of a Deployment, the controller's own too: a scale admitted
    // as an update of the Deployment would have failed above.)
    assert!(
        wh.requests("/deny")
            .iter()
            .all(|r| r["request"]["subResource"].is_null()
                && r["request"]["object"]["kind"] == "Deployment"),
        "the Deployment's own webhook saw something else than a Deployment"
    );
    // That webhook does see a write of the Deployment itself, and refuses it.
    let run = server
        .kubectl(&[
            "patch",
            "deployment",
            "web",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ])
        .fails();
    assert!(run.stderr.contains(DENY_MESSAGE), "{run}");

    // A validating webhook for `deployments/scale` refuses scale writes.
    server.apply(
        "deny-scale.yaml",
        &deployments_configuration(
            "ValidatingWebhookConfiguration",
            "deny-scale",
            &deny,
            "deployments/scale",
        ),
    );
    let run = server
        .kubectl(&["scale", "deployment", "web", "--replicas=1"])
        .fails();
    assert!(
        run.stderr.contains(&format!(
            "admission webhook \"deny-scale.example.com\" denied the request: {DENY_MESSAGE}"
        )),
        "{run}"
    );
    assert_eq!(replicas(), "2");
}

#[test]
fn a_webhook_for_pods_exec_sees_the_exec_options_and_can_refuse_the_connect() {
    let wh = WebhookServer::start();
    let server = TestServer::start();
    let deny = url_client(&wh, "/deny");
    server.apply(
        "deny-exec.yaml",
        &configuration_for(
            "ValidatingWebhookConfiguration",
            "deny-exec",
            "deny-exec.example.com",
            &deny,
            ("CONNECT", "", "pods/exec"),
            "  sideEffects: None\n",
        ),
    );
    // No node: upstream admits a connect before it looks for the pod's host.
    server.kubectl_ok(&[
        "run",
        "shell",
        "--image=busybox:1.36",
        "--",
        "sleep",
        "3600",
    ]);
    let run = server
        .kubectl(&["exec", "shell", "-c", "shell", "--", "ls", "/"])
        .fails();
    assert!(run.stderr.contains(DENY_MESSAGE), "{run}");
    let reviews = wh.requests("/deny");
    let review = &reviews
        .iter()
        .find(|r| r["request"]["name"] == "shell")
        .unwrap_or_else(|| panic!("no review of the exec: {reviews:?}"))["request"];
    assert_eq!(review["operation"], "CONNECT");
    assert_eq!(review["subResource"], "exec");
    assert_eq!(
        review["kind"],
        serde_json::json!({"group": "", "version": "v1", "kind": "PodExecOptions"})
    );
    assert_eq!(review["object"]["kind"], "PodExecOptions", "{review}");
    assert_eq!(review["object"]["container"], "shell", "{review}");
    assert_eq!(
        review["object"]["command"],
        serde_json::json!(["ls", "/"]),
        "{review}"
    );
    // Without the webhook the same exec gets as far as the pod (it has no node).
    server.kubectl_ok(&["delete", "validatingwebhookconfiguration", "deny-exec"]);
    let run = server
        .kubectl(&["exec", "shell", "-c", "shell", "--", "ls", "/"])
        .fails();
    assert!(
        run.stderr.contains("does not have a host assigned"),
        "{run}"
    );
}

/// The scheduler's bind is admitted as a create of `pods/binding` whose object is the
/// Binding: a webhook registered for bindings sees it and may refuse it.
#[test]
fn a_webhook_for_pod_bindings_sees_the_binding_and_can_refuse_it() {
    let wh = WebhookServer::start();
    let server = TestServer::start();
    let deny = url_client(&wh, "/deny");
    server.apply(
        "deny-binding.yaml",
        &configuration_for(
            "ValidatingWebhookConfiguration",
            "deny-binding",
            "deny-binding.example.com",
            &deny,
            ("CREATE", "", "pods/binding"),
            "  sideEffects: None\n",
        ),
    );
    // No node: the pod waits unbound, and the test binds it by hand.
    server.kubectl_ok(&[
        "run",
        "pending",
        "--image=busybox:1.36",
        "--",
        "sleep",
        "3600",
    ]);
    let binding = server.write_file(
        "binding.json",
        r#"{"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "pending", "annotations": {"example.com/bound-by": "test"}},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}"#,
    );
    let path = "/api/v1/namespaces/default/pods/pending/binding";
    let binding = binding.to_string_lossy();
    let run = server
        .kubectl(&["create", "--raw", path, "-f", &binding])
        .fails();
    assert!(run.stderr.contains(DENY_MESSAGE), "{run}");
    let reviews = wh.requests("/deny");
    let review = &reviews
        .iter()
        .find(|r| r["request"]["name"] == "pending")
        .unwrap_or_else(|| panic!("no review of the binding: {reviews:?}"))["request"];
    assert_eq!(review["operation"], "CREATE");
    assert_eq!(review["subResource"], "binding");
    assert_eq!(
        review["kind"],
        serde_json::json!({"group": "", "version": "v1", "kind": "Binding"})
    );
    assert_eq!(review["object"]["target"]["name"], "n1", "{review}");
    let node = server.kubectl_ok(&["get", "pod", "pending", "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(node.trim(), "", "a refused binding binds nothing");

    // Without the webhook the binding goes through, its annotation onto the pod.
    server.kubectl_ok(&["delete", "validatingwebhookconfiguration", "deny-binding"]);
    server.wait_until("the binding is allowed", 10, || {
        server
            .kubectl(&["create", "--raw", path, "-f", &binding])
            .success()
    });
    let pod = server.kubectl_json(&["get", "pod", "pending", "-o", "json"]);
    assert_eq!(pod["spec"]["nodeName"], "n1");
    assert_eq!(
        pod["metadata"]["annotations"]["example.com/bound-by"],
        "test"
    );

    // The older top-level `bindings` resource binds the pod its Binding names (before this
    // was routed, it stored the Binding and left the pod pending).
    server.kubectl_ok(&[
        "run",
        "legacy",
        "--image=busybox:1.36",
        "--",
        "sleep",
        "3600",
    ]);
    let legacy = server.write_file(
        "legacy-binding.json",
        r#"{"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "legacy"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "n2"}}"#,
    );
    let legacy = legacy.to_string_lossy();
    let bindings = "/api/v1/namespaces/default/bindings";
    server.kubectl_ok(&["create", "--raw", bindings, "-f", &legacy]);
    let node = server.kubectl_ok(&["get", "pod", "legacy", "-o", "jsonpath={.spec.nodeName}"]);
    assert_eq!(node.trim(), "n2");
    let run = server
        .kubectl(&["create", "--raw", bindings, "-f", &legacy])
        .fails();
    assert!(run.stderr.contains("already assigned to node"), "{run}");
}
