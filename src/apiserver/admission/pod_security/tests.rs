//! PodSecurity checks and messages: each check with a violating and a passing pod (texts as
//! upstream's `policy/check_*_test.go` expect them), check order, versions and label parsing.

use super::policy::{evaluate, forbidden_detail, policy_of, Level, LevelVersion, PodView, Version};
use super::significant_pod_update;
use serde_json::{json, Value};

fn lv(level: Level, version: Version) -> LevelVersion {
    LevelVersion { level, version }
}

const RESTRICTED: LevelVersion = LevelVersion {
    level: Level::Restricted,
    version: Version::Latest,
};
const BASELINE: LevelVersion = LevelVersion {
    level: Level::Baseline,
    version: Version::Latest,
};

/// A pod restricted:latest allows.
fn good() -> Value {
    json!({
        "metadata": {"name": "p"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "i", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}],
        }
    })
}

fn detail(at: LevelVersion, pod: &Value) -> String {
    let view = PodView {
        meta: &pod["metadata"],
        spec: &pod["spec"],
    };
    forbidden_detail(&evaluate(at, &view))
}

/// `good()` changed by `f` must fail `at` with exactly `expected`.
#[track_caller]
fn violates(at: LevelVersion, f: impl FnOnce(&mut Value), expected: &str) {
    let mut pod = good();
    f(&mut pod);
    assert_eq!(detail(at, &pod), expected);
}

#[test]
fn a_compliant_pod_passes_every_level() {
    assert_eq!(detail(RESTRICTED, &good()), "");
    assert_eq!(detail(BASELINE, &good()), "");
    let mut privileged = good();
    privileged["spec"]["hostNetwork"] = json!(true);
    assert_eq!(
        detail(lv(Level::Privileged, Version::Latest), &privileged),
        ""
    );
}

#[test]
fn baseline_checks_refuse_with_upstream_texts() {
    violates(
        BASELINE,
        |p| p["spec"]["containers"][0]["securityContext"]["privileged"] = json!(true),
        r#"privileged (container "c" must not set securityContext.privileged=true)"#,
    );
    violates(
        BASELINE,
        |p| {
            p["spec"]["hostNetwork"] = json!(true);
            p["spec"]["hostIPC"] = json!(true);
        },
        "host namespaces (hostNetwork=true, hostIPC=true)",
    );
    violates(
        BASELINE,
        |p| p["spec"]["volumes"] = json!([{"name": "a", "hostPath": {"path": "/"}}, {"name": "b", "hostPath": {"path": "/x"}}]),
        r#"hostPath volumes (volumes "a", "b")"#,
    );
    violates(
        BASELINE,
        |p| {
            p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81, "hostPort": 10}])
        },
        r#"hostPort (container "c" uses hostPorts 10, 8080)"#,
    );
    violates(
        BASELINE,
        |p| {
            p["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] =
                json!(["NET_ADMIN", "CHOWN", "SYS_TIME"])
        },
        r#"non-default capabilities (container "c" must not include "NET_ADMIN", "SYS_TIME" in securityContext.capabilities.add)"#,
    );
    violates(
        BASELINE,
        |p| p["spec"]["containers"][0]["securityContext"]["procMount"] = json!("Unmasked"),
        r#"procMount (container "c" must not set securityContext.procMount to "Unmasked")"#,
    );
    violates(
        BASELINE,
        |p| p["spec"]["securityContext"]["seLinuxOptions"] = json!({"type": "spc_t", "user": "u"}),
        r#"seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type "spc_t"; user may not be set)"#,
    );
    violates(
        BASELINE,
        |p| p["spec"]["securityContext"]["seccompProfile"]["type"] = json!("Unconfined"),
        r#"seccompProfile (pod must not set securityContext.seccompProfile.type to "Unconfined")"#,
    );
    violates(
        BASELINE,
        |p| p["spec"]["securityContext"]["sysctls"] = json!([{"name": "kernel.msgmax", "value": "1"}, {"name": "net.ipv4.tcp_syncookies", "value": "1"}]),
        "forbidden sysctls (kernel.msgmax)",
    );
    violates(
        BASELINE,
        |p| p["spec"]["securityContext"]["windowsOptions"] = json!({"hostProcess": true}),
        "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)",
    );
    violates(
        BASELINE,
        |p| {
            p["spec"]["containers"][0]["securityContext"]["appArmorProfile"] =
                json!({"type": "Unconfined"})
        },
        r#"forbidden AppArmor profile (container "c" must not set AppArmor profile type to "Unconfined")"#,
    );
    violates(
        BASELINE,
        |p| {
            p["metadata"]["annotations"] =
                json!({"container.apparmor.security.beta.kubernetes.io/c": "unconfined"})
        },
        // Upstream quotes without escaping.
        r#"forbidden AppArmor profile (annotation must not set AppArmor profile type to "container.apparmor.security.beta.kubernetes.io/c="unconfined"")"#,
    );
    violates(
        BASELINE,
        |p| {
            p["spec"]["containers"][0]["livenessProbe"] =
                json!({"httpGet": {"host": "10.0.0.1", "port": 80}})
        },
        r#"probe or lifecycle host (container "c" uses probe or lifecycle host "10.0.0.1")"#,
    );
}

#[test]
fn allowed_values_pass_baseline() {
    let mut pod = good();
    let c = &mut pod["spec"]["containers"][0];
    c["securityContext"]["capabilities"]["add"] = json!(["CHOWN", "NET_BIND_SERVICE"]);
    c["securityContext"]["procMount"] = json!("Default");
    c["securityContext"]["seLinuxOptions"] = json!({"type": "container_engine_t", "level": "s0"});
    c["securityContext"]["appArmorProfile"] = json!({"type": "Localhost", "localhostProfile": "x"});
    c["livenessProbe"] = json!({"httpGet": {"port": 80}});
    pod["spec"]["securityContext"]["sysctls"] =
        json!([{"name": "net.ipv4.tcp_rmem", "value": "1"}]);
    pod["spec"]["volumes"] = json!([{"name": "e", "emptyDir": {}}]);
    pod["metadata"]["annotations"] =
        json!({"container.apparmor.security.beta.kubernetes.io/c": "runtime/default"});
    assert_eq!(detail(BASELINE, &pod), "");
    // Versions: container_engine_t and tcp_rmem are allowed only from 1.31 / 1.32.
    let v30 = lv(Level::Baseline, Version::Minor(30));
    assert_eq!(
        detail(v30, &pod),
        r#"seLinuxOptions (container "c" set forbidden securityContext.seLinuxOptions: type "container_engine_t"), forbidden sysctls (net.ipv4.tcp_rmem)"#
    );
}

#[test]
fn restricted_checks_refuse_with_upstream_texts() {
    violates(
        RESTRICTED,
        |p| p["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = Value::Null,
        r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false)"#,
    );
    violates(
        RESTRICTED,
        |p| {
            p["spec"]["containers"][0]["securityContext"]["capabilities"] =
                json!({"add": ["SYS_ADMIN", "NET_BIND_SERVICE"]})
        },
        r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]; container "c" must not include "SYS_ADMIN" in securityContext.capabilities.add)"#,
    );
    violates(
        RESTRICTED,
        |p| p["spec"]["volumes"] = json!([{"name": "h", "hostPath": {"path": "/"}}, {"name": "n", "nfs": {"server": "s", "path": "/"}}, {"name": "ok", "configMap": {"name": "x"}}]),
        r#"restricted volume types (volumes "h", "n" use restricted volume types "hostPath", "nfs")"#,
    );
    violates(
        RESTRICTED,
        |p| p["spec"]["securityContext"]["runAsNonRoot"] = Value::Null,
        r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true)"#,
    );
    violates(
        RESTRICTED,
        |p| p["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = json!(false),
        r#"runAsNonRoot != true (container "c" must not set securityContext.runAsNonRoot=false)"#,
    );
    violates(
        RESTRICTED,
        |p| p["spec"]["securityContext"]["runAsUser"] = json!(0),
        "runAsUser=0 (pod must not set runAsUser=0)",
    );
    violates(
        RESTRICTED,
        |p| p["spec"]["securityContext"]["seccompProfile"] = Value::Null,
        r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#,
    );
    violates(
        RESTRICTED,
        |p| p["spec"]["containers"][0]["securityContext"]["procMount"] = json!("Unmasked"),
        r#"procMount (container "c" must not set securityContext.procMount to "Unmasked")"#,
    );
}

#[test]
fn restricted_relaxations_follow_upstream() {
    // Windows pods skip the Linux-only restricted checks (1.25+).
    let mut win = good();
    win["spec"]["os"] = json!({"name": "windows"});
    win["spec"]["securityContext"]["seccompProfile"] = Value::Null;
    win["spec"]["containers"][0]["securityContext"] = json!({});
    assert_eq!(detail(RESTRICTED, &win), "");
    // User-namespaced pods may run as root (1.35), and procMount stays restricted.
    let mut userns = good();
    userns["spec"]["hostUsers"] = json!(false);
    userns["spec"]["securityContext"]["runAsNonRoot"] = Value::Null;
    userns["spec"]["securityContext"]["runAsUser"] = json!(0);
    assert_eq!(detail(RESTRICTED, &userns), "");
    assert!(detail(lv(Level::Restricted, Version::Minor(34)), &userns).contains("runAsUser=0"));
}

#[test]
fn a_privileged_pod_lists_every_violation_in_upstream_order() {
    let pod = json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "i",
        "securityContext": {"privileged": true}}]}});
    assert_eq!(
        detail(RESTRICTED, &pod),
        r#"privileged (container "c" must not set securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
    );
    // Old versions evaluate the checks of their time: no runAsUser before 1.23, no
    // capabilities_restricted before 1.22, seccomp annotations before 1.19.
    let old = json!({"metadata": {"name": "x", "annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}},
        "spec": {"securityContext": {"runAsNonRoot": true, "runAsUser": 0}, "containers": [{"name": "c", "image": "i",
        "securityContext": {"allowPrivilegeEscalation": false}}]}});
    assert_eq!(
        detail(lv(Level::Restricted, Version::Minor(18)), &old),
        r#"seccompProfile (forbidden annotation seccomp.security.alpha.kubernetes.io/pod="unconfined")"#
    );
}

#[test]
fn namespace_labels_parse_as_upstream() {
    let labels = |v: Value| v.as_object().cloned();
    let (p, errs) =
        policy_of(labels(json!({"pod-security.kubernetes.io/enforce": "baseline"})).as_ref());
    assert!(errs.is_empty());
    assert_eq!(p.enforce.to_string(), "baseline:latest");
    // Warn follows enforce when not labelled.
    assert_eq!(p.warn.to_string(), "baseline:latest");
    assert_eq!(p.audit.to_string(), "privileged:latest");
    let (p, errs) = policy_of(
        labels(json!({"pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "v1.24",
            "pod-security.kubernetes.io/warn": "baseline"}))
        .as_ref(),
    );
    assert!(errs.is_empty());
    assert_eq!(p.enforce.to_string(), "restricted:v1.24");
    assert_eq!(p.warn.to_string(), "baseline:latest");
    let (p, errs) = policy_of(
        labels(json!({"pod-security.kubernetes.io/enforce": "strict",
            "pod-security.kubernetes.io/warn-version": "1.24"}))
        .as_ref(),
    );
    let texts: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        texts,
        vec![
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
            r#"metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "1.24": must be "latest" or "v1.x""#,
        ]
    );
    // An invalid enforce level fails closed.
    assert_eq!(p.enforce.level, Level::Restricted);
    for bad in ["v1.01", "v2.0", "latest1", "v1."] {
        let (_, errs) =
            policy_of(labels(json!({"pod-security.kubernetes.io/audit-version": bad})).as_ref());
        assert_eq!(errs.len(), 1, "{bad}");
    }
}

#[test]
fn only_image_changes_make_a_pod_update_significant() {
    let old = good();
    let mut relabelled = good();
    relabelled["metadata"]["labels"] = json!({"a": "b"});
    relabelled["status"] = json!({"phase": "Running"});
    assert!(!significant_pod_update(&relabelled, &old));
    let mut new_image = good();
    new_image["spec"]["containers"][0]["image"] = json!("other");
    assert!(significant_pod_update(&new_image, &old));
    let mut debug = good();
    debug["spec"]["ephemeralContainers"] = json!([{"name": "dbg", "image": "busybox"}]);
    assert!(significant_pod_update(&debug, &old));
}
