//! The kinds a default v1.35 kube-apiserver serves beyond the workload basics, through the
//! real binary with real kubectl: ReplicationControllers, PodTemplates, PriorityClasses,
//! RuntimeClasses, webhook configurations, CertificateSigningRequests with
//! `kubectl certificate approve|deny`, and the objects the server keeps for itself
//! (ComponentStatuses, APIServices, system PriorityClasses, APF objects, the ServiceCIDR).

mod common;

use common::{row_where, table_rows, TestServer};
use serde_json::json;

const RC: &str = r#"apiVersion: v1
kind: ReplicationController
metadata:
  name: web
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
---
apiVersion: v1
kind: PodTemplate
metadata:
  name: tmpl
template:
  metadata:
    labels: {app: tmpl}
  spec:
    containers:
    - name: c
      image: busybox
"#;

#[test]
fn replication_controllers_and_pod_templates_apply_with_defaults_and_scale() {
    let server = TestServer::start();
    let out = server.apply("rc.yaml", RC);
    assert!(out.contains("replicationcontroller/web created"), "{out}");
    assert!(out.contains("podtemplate/tmpl created"), "{out}");

    // Upstream defaults the selector and the object labels from the template.
    let rc = server.kubectl_json(&["get", "rc", "web"]);
    assert_eq!(rc["spec"]["selector"]["app"], "web", "{rc}");
    assert_eq!(rc["metadata"]["labels"]["app"], "web", "{rc}");
    assert_eq!(
        rc["spec"]["template"]["spec"]["restartPolicy"], "Always",
        "{rc}"
    );

    // The replication controller creates the pods (CURRENT 2); with no node none is ready.
    let rows = common::process::eventually(
        std::time::Duration::from_secs(20),
        "the controller's pods",
        || {
            let out = server.kubectl_ok(&["get", "replicationcontrollers"]);
            let rows = table_rows(&out);
            if row_where(&rows, 0, "web")[..4] == ["web", "2", "2", "0"] {
                Ok(rows)
            } else {
                Err(out)
            }
        },
    );
    assert_eq!(rows[0], ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);

    let out = server.kubectl_ok(&["scale", "rc", "web", "--replicas=3"]);
    assert!(out.contains("replicationcontroller/web scaled"), "{out}");
    let rc = server.kubectl_json(&["get", "rc", "web"]);
    assert_eq!(rc["spec"]["replicas"], 3, "{rc}");

    let rows = table_rows(&server.kubectl_ok(&["get", "podtemplates", "-o", "wide"]));
    assert_eq!(rows[0][..4], ["NAME", "CONTAINERS", "IMAGES", "POD"]);
    assert_eq!(&row_where(&rows, 0, "tmpl")[..3], ["tmpl", "c", "busybox"]);

    // A template whose labels the selector does not match is refused as upstream does.
    let bad = RC.split("---").next().unwrap_or_default().replace(
        "name: web\nspec:",
        "name: bad\nspec:\n  selector: {app: other}",
    );
    server.write_file("bad.yaml", &bad);
    let run = server.kubectl(&["apply", "-f", "bad.yaml"]).fails();
    assert!(
        run.stderr
            .contains("spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`")
            || run.stderr.contains("`selector` does not match template `labels`"),
        "{run}"
    );
}

#[test]
fn priority_and_runtime_classes_apply_and_system_names_are_refused() {
    let server = TestServer::start();
    let out = server.apply(
        "classes.yaml",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000000\ndescription: important\n---\napiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: gvisor}\nhandler: runsc\n",
    );
    assert!(
        out.contains("priorityclass.scheduling.k8s.io/high created"),
        "{out}"
    );
    assert!(
        out.contains("runtimeclass.node.k8s.io/gvisor created"),
        "{out}"
    );

    let pc = server.kubectl_json(&["get", "pc", "high"]);
    assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority", "{pc}");
    let rows = table_rows(&server.kubectl_ok(&["get", "priorityclasses"]));
    assert_eq!(
        rows[0],
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    );
    assert_eq!(
        &row_where(&rows, 0, "high")[..3],
        ["high", "1000000", "false"]
    );
    // The system classes exist from the start, with upstream's values.
    assert_eq!(
        &row_where(&rows, 0, "system-node-critical")[..3],
        ["system-node-critical", "2000001000", "false"]
    );
    assert_eq!(
        &row_where(&rows, 0, "system-cluster-critical")[..3],
        ["system-cluster-critical", "2000000000", "false"]
    );
    let spc = server.kubectl_json(&["get", "pc", "system-node-critical"]);
    assert_eq!(
        spc["description"],
        "Used for system critical pods that must not be moved from their current node."
    );

    let rows = table_rows(&server.kubectl_ok(&["get", "runtimeclasses"]));
    assert_eq!(rows[0], ["NAME", "HANDLER", "AGE"]);
    assert_eq!(&row_where(&rows, 0, "gvisor")[..2], ["gvisor", "runsc"]);

    server.write_file(
        "sys.yaml",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: system-mine}\nvalue: 10\n",
    );
    let run = server.kubectl(&["apply", "-f", "sys.yaml"]).fails();
    assert!(
        run.stderr.contains("The PriorityClass \"system-mine\" is invalid: metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"),
        "{run}"
    );
    server.write_file(
        "huge.yaml",
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: huge}\nvalue: 1000000001\n",
    );
    let run = server.kubectl(&["apply", "-f", "huge.yaml"]).fails();
    assert!(
        run.stderr.contains(
            "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
        ),
        "{run}"
    );
    // The value may not change.
    let run = server
        .kubectl(&["patch", "pc", "high", "--type=merge", "-p", "{\"value\":5}"])
        .fails();
    assert!(
        run.stderr
            .contains("value: Forbidden: may not be changed in an update."),
        "{run}"
    );
}

const WEBHOOK: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: check
webhooks:
- name: check.example.com
  clientConfig:
    url: https://127.0.0.1:9443/validate
  rules:
  - operations: ["CREATE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["configmaps"]
  sideEffects: None
  admissionReviewVersions: ["v1"]
"#;

#[test]
fn webhook_configurations_get_upstream_defaults_and_validation() {
    let server = TestServer::start();
    let out = server.apply("wh.yaml", WEBHOOK);
    assert!(
        out.contains("validatingwebhookconfiguration.admissionregistration.k8s.io/check created"),
        "{out}"
    );
    let yaml = server.kubectl_ok(&[
        "get",
        "validatingwebhookconfiguration",
        "check",
        "-o",
        "yaml",
    ]);
    for line in [
        "failurePolicy: Fail",
        "matchPolicy: Equivalent",
        "namespaceSelector: {}",
        "objectSelector: {}",
        "timeoutSeconds: 10",
        "scope: '*'",
    ] {
        assert!(yaml.contains(line), "missing {line:?}:\n{yaml}");
    }
    let rows = table_rows(&server.kubectl_ok(&["get", "validatingwebhookconfigurations"]));
    assert_eq!(rows[0], ["NAME", "WEBHOOKS", "AGE"]);
    assert_eq!(&row_where(&rows, 0, "check")[..2], ["check", "1"]);

    let missing = WEBHOOK
        .replace("name: check\n", "name: nosides\n")
        .replace("  sideEffects: None\n", "");
    server.write_file("bad.yaml", &missing);
    let run = server.kubectl(&["apply", "-f", "bad.yaml"]).fails();
    assert!(
        run.stderr.contains("The ValidatingWebhookConfiguration \"nosides\" is invalid: webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun"),
        "{run}"
    );
}

/// A PEM CSR for `cn` made by openssl, base64-encoded as the API carries it.
fn csr_request(server: &TestServer, cn: &str) -> String {
    use base64::Engine;
    let dir = server.files_dir();
    let key = dir.join(format!("{cn}.key"));
    let csr = dir.join(format!("{cn}.csr"));
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", &format!("/CN={cn}/O=dev")])
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(&csr).expect("csr written"))
}

fn csr_manifest(name: &str, request: &str) -> String {
    // The username a client sends is ignored: the server records who asked.
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {request}\n  signerName: kubernetes.io/kube-apiserver-client\n  expirationSeconds: 86400\n  username: mallory\n  usages: [client auth]\n"
    )
}

#[test]
fn csrs_record_the_requester_and_are_approved_or_denied_with_kubectl_certificate() {
    let server = TestServer::start();
    let alice = csr_request(&server, "alice");
    let out = server.apply("alice.yaml", &csr_manifest("alice", &alice));
    assert!(
        out.contains("certificatesigningrequest.certificates.k8s.io/alice created"),
        "{out}"
    );

    let csr = server.kubectl_json(&["get", "csr", "alice"]);
    assert_eq!(csr["spec"]["username"], "system:admin", "{csr}");
    assert_eq!(csr["spec"]["groups"][0], "system:masters", "{csr}");

    let rows = table_rows(&server.kubectl_ok(&["get", "csr"]));
    assert_eq!(
        rows[0],
        [
            "NAME",
            "AGE",
            "SIGNERNAME",
            "REQUESTOR",
            "REQUESTEDDURATION",
            "CONDITION"
        ]
    );
    let row = row_where(&rows, 0, "alice");
    assert_eq!(
        [&row[2], &row[3], &row[4], &row[5]],
        [
            "kubernetes.io/kube-apiserver-client",
            "system:admin",
            "24h",
            "Pending"
        ]
    );

    // The status subresource may not approve.
    let run = server
        .kubectl(&[
            "patch",
            "csr",
            "alice",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Approved","status":"True"}]}}"#,
        ])
        .fails();
    assert!(
        run.stderr.contains(
            "status.conditions: Forbidden: updates may not add a condition of type \"Approved\""
        ),
        "{run}"
    );

    let out = server.kubectl_ok(&["certificate", "approve", "alice"]);
    assert!(
        out.contains("certificatesigningrequest.certificates.k8s.io/alice approved"),
        "{out}"
    );
    let csr = server.kubectl_json(&["get", "csr", "alice"]);
    let cond = &csr["status"]["conditions"][0];
    assert_eq!(cond["type"], "Approved", "{csr}");
    assert_eq!(cond["status"], "True", "{csr}");
    assert_eq!(cond["reason"], "KubectlApprove", "{csr}");
    assert!(cond["lastTransitionTime"].is_string(), "{csr}");
    assert_eq!(csr["spec"]["username"], "system:admin", "{csr}");
    // The signer issues approved requests of its signers: the condition column says so.
    let rows = table_rows(&server.kubectl_ok(&["get", "csr", "alice"]));
    assert!(
        rows[1][5] == "Approved" || rows[1][5] == "Approved,Issued",
        "{rows:?}"
    );

    // kubectl itself refuses to deny an approved request (the server's own refusal of both
    // conditions is unit-tested in the CSR strategy).
    let run = server.kubectl(&["certificate", "deny", "alice"]).fails();
    assert!(run.stderr.contains("is already Approved"), "{run}");

    let bob = csr_request(&server, "bob");
    server.apply("bob.yaml", &csr_manifest("bob", &bob));
    let out = server.kubectl_ok(&["certificate", "deny", "bob"]);
    assert!(
        out.contains("certificatesigningrequest.certificates.k8s.io/bob denied"),
        "{out}"
    );
    let csr = server.kubectl_json(&["get", "csr", "bob"]);
    assert_eq!(csr["status"]["conditions"][0]["type"], "Denied", "{csr}");

    // The spec never changes after creation.
    let run = server.kubectl(&[
        "patch",
        "csr",
        "bob",
        "--type=merge",
        "-p",
        r#"{"spec":{"signerName":"example.com/other"}}"#,
    ]);
    let csr = server.kubectl_json(&["get", "csr", "bob"]);
    assert_eq!(
        csr["spec"]["signerName"], "kubernetes.io/kube-apiserver-client",
        "{run}"
    );

    // A request that is not a PEM CSR is refused.
    let bad = csr_manifest("junk", "bm90IGEgY3Ny");
    server.write_file("junk.yaml", &bad);
    let run = server.kubectl(&["apply", "-f", "junk.yaml"]).fails();
    assert!(
        run.stderr.contains("spec.request: Invalid value")
            && run
                .stderr
                .contains("PEM block type must be CERTIFICATE REQUEST"),
        "{run}"
    );
}

#[test]
fn objects_the_server_keeps_for_itself_are_listed_as_upstream_prints_them() {
    let server = TestServer::start();

    let run = server.kubectl(&["get", "componentstatuses"]).ok();
    assert!(
        run.stderr
            .contains("Warning: v1 ComponentStatus is deprecated in v1.19+"),
        "{run}"
    );
    let rows = table_rows(&run.stdout);
    assert_eq!(rows[0], ["NAME", "STATUS", "MESSAGE", "ERROR"]);
    for c in ["controller-manager", "scheduler", "etcd-0"] {
        assert_eq!(&row_where(&rows, 0, c)[..3], [c, "Healthy", "ok"]);
    }
    let cs = server.kubectl_json(&["get", "cs", "scheduler"]);
    assert_eq!(cs["conditions"][0]["type"], "Healthy", "{cs}");
    // Read-only: never stored, never created.
    let run = server.kubectl(&["delete", "cs", "scheduler"]).fails();
    assert!(
        run.stderr.contains("MethodNotAllowed") || run.stderr.contains("not allowed"),
        "{run}"
    );

    let rows = table_rows(&server.kubectl_ok(&["get", "apiservices"]));
    assert_eq!(rows[0], ["NAME", "SERVICE", "AVAILABLE", "AGE"]);
    for name in [
        "v1.",
        "v1.apps",
        "v2.autoscaling",
        "v1.autoscaling",
        "v1.certificates.k8s.io",
        "v1.resource.k8s.io",
    ] {
        assert_eq!(&row_where(&rows, 0, name)[..3], [name, "Local", "True"]);
    }
    let apps = server.kubectl_json(&["get", "apiservice", "v1.apps"]);
    assert_eq!(apps["spec"]["groupPriorityMinimum"], 17800, "{apps}");
    assert_eq!(apps["spec"]["versionPriority"], 15, "{apps}");
    assert_eq!(apps["status"]["conditions"][0]["reason"], "Local", "{apps}");

    let rows = table_rows(&server.kubectl_ok(&["get", "flowschemas"]));
    assert_eq!(
        rows[0],
        [
            "NAME",
            "PRIORITYLEVEL",
            "MATCHINGPRECEDENCE",
            "DISTINGUISHERMETHOD",
            "AGE",
            "MISSINGPL"
        ]
    );
    assert_eq!(rows[1][..4], ["exempt", "exempt", "1", "<none>"]);
    assert_eq!(
        &row_where(&rows, 0, "catch-all")[..4],
        ["catch-all", "catch-all", "10000", "ByUser"]
    );
    let rows = table_rows(&server.kubectl_ok(&["get", "prioritylevelconfigurations"]));
    assert_eq!(
        &row_where(&rows, 0, "catch-all")[..3],
        ["catch-all", "Limited", "5"]
    );

    let rows = table_rows(&server.kubectl_ok(&["get", "servicecidrs"]));
    assert_eq!(rows[0], ["NAME", "CIDRS", "AGE"]);
    let svc = server.kubectl_json(&["get", "svc", "kubernetes", "-n", "default"]);
    let ip = svc["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let row = row_where(&rows, 0, "kubernetes");
    assert!(row[1].ends_with("/16") || row[1].contains('/'), "{rows:?}");
    let prefix: Vec<&str> = ip.split('.').take(2).collect();
    assert!(row[1].starts_with(&prefix.join(".")), "{rows:?} vs {ip}");
    let sc = server.kubectl_json(&["get", "servicecidr", "kubernetes"]);
    assert_eq!(sc["status"]["conditions"][0]["type"], "Ready", "{sc}");
    assert_eq!(sc["status"]["conditions"][0]["status"], "True", "{sc}");
}

#[test]
fn system_objects_are_restored_at_restart_as_upstream_restores_them() {
    let mut server = TestServer::start();
    // Mandatory APF objects get their spec back whatever the opt-out annotation says (only
    // suggested ones honour it); a deleted system PriorityClass is recreated.
    server.kubectl_ok(&[
        "annotate",
        "flowschema",
        "catch-all",
        "apf.kubernetes.io/autoupdate-spec=false",
        "--overwrite",
    ]);
    server.kubectl_ok(&[
        "patch",
        "flowschema",
        "catch-all",
        "--type=merge",
        "-p",
        r#"{"spec":{"matchingPrecedence":9000}}"#,
    ]);
    server.kubectl_ok(&[
        "patch",
        "flowschema",
        "exempt",
        "--type=merge",
        "-p",
        r#"{"spec":{"matchingPrecedence":2}}"#,
    ]);
    server.kubectl_ok(&["delete", "pc", "system-cluster-critical"]);
    server.kubectl_ok(&["annotate", "pc", "system-node-critical", "team=platform"]);
    server.restart();
    let pc = server.kubectl_json(&["get", "pc", "system-node-critical"]);
    assert_eq!(pc["metadata"]["annotations"]["team"], "platform", "{pc}");
    let fs = server.kubectl_json(&["get", "flowschema", "catch-all"]);
    assert_eq!(fs["spec"]["matchingPrecedence"], 10000, "{fs}");
    assert_eq!(
        fs["metadata"]["annotations"]["apf.kubernetes.io/autoupdate-spec"], "true",
        "{fs}"
    );
    let fs = server.kubectl_json(&["get", "flowschema", "exempt"]);
    assert_eq!(fs["spec"]["matchingPrecedence"], 1, "{fs}");
    let pc = server.kubectl_json(&["get", "pc", "system-cluster-critical"]);
    assert_eq!(pc["value"], 2000000000, "{pc}");
}

#[test]
fn custom_resource_groups_get_an_api_service_while_their_crd_serves_them() {
    let server = TestServer::start();
    server.apply("crd.yaml", common::manifests::WIDGET_CRD);
    let svc = server.kubectl_json(&["get", "apiservice", "v1.example.com"]);
    assert_eq!(svc["spec"]["group"], "example.com", "{svc}");
    assert_eq!(svc["spec"]["groupPriorityMinimum"], 1000, "{svc}");
    assert_eq!(svc["spec"]["versionPriority"], 100, "{svc}");
    assert_eq!(
        svc["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"], "true",
        "{svc}"
    );
    let rows = table_rows(&server.kubectl_ok(&["get", "apiservices"]));
    assert_eq!(
        &row_where(&rows, 0, "v1.example.com")[..3],
        ["v1.example.com", "Local", "True"]
    );

    server.kubectl_ok(&["delete", "crd", "widgets.example.com", "--wait=true"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let run = server.kubectl(&["get", "apiservice", "v1.example.com"]);
        if !run.success() && run.stderr.contains("NotFound") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still there: {run}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // The built-in ones stay.
    server.kubectl_ok(&["get", "apiservice", "v1.apps"]);
}

#[test]
fn kubectl_patch_on_dra_kinds_merges_strategically_and_json_patches_an_absent_status() {
    // DeviceClass (resource.k8s.io/v1) has no list merge keys; a strategic merge patch,
    // kubectl's default, still applies to it as upstream (maps merge, lists replaced).
    let server = TestServer::start();
    server.apply(
        "dc.yaml",
        "apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata: {name: gpu, labels: {a: '1'}}\nspec:\n  selectors:\n  - cel: {expression: 'device.driver == \"a.example.com\"'}\n",
    );
    server.kubectl_ok(&[
        "patch",
        "deviceclass",
        "gpu",
        "-p",
        r#"{"metadata":{"labels":{"b":"2"}},"spec":{"selectors":[{"cel":{"expression":"device.driver == \"b.example.com\""}}]}}"#,
    ]);
    let dc = server.kubectl_json(&["get", "deviceclass", "gpu"]);
    assert_eq!(
        dc["metadata"]["labels"],
        json!({"a": "1", "b": "2"}),
        "{dc}"
    );
    assert_eq!(
        dc["spec"]["selectors"],
        json!([{"cel": {"expression": "device.driver == \"b.example.com\""}}]),
        "{dc}"
    );
    // A JSON patch may add under status before there is one (upstream patches the Go
    // serialization, where status is always `{}`).
    server.apply(
        "claim.yaml",
        "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: c, namespace: default}\nspec:\n  devices:\n    requests:\n    - name: r\n      exactly: {deviceClassName: gpu}\n",
    );
    server.kubectl_ok(&[
        "patch",
        "resourceclaim",
        "c",
        "--subresource=status",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/status/allocation","value":{"devices":{"results":[{"request":"r","driver":"a.example.com","pool":"p","device":"d0"}]}}}]"#,
    ]);
    let claim = server.kubectl_json(&["get", "resourceclaim", "c"]);
    assert_eq!(
        claim["status"]["allocation"]["devices"]["results"][0]["device"], "d0",
        "{claim}"
    );
}
