//! The restricted checks of the Pod Security Standards (upstream's `policy/check_*.go` of
//! level restricted), with upstream's reasons and details word for word.
//!
//! Invariant: [`CHECKS`] is sorted by id; `overrides` names the baseline checks each one
//! replaces at the restricted level, as upstream's `OverrideCheckIDs`.

use super::baseline::{proc_mount, seccomp_setters_violation, setters, valid_seccomp};
use super::policy::{containers_phrase, join_quote, name_of, Check, Level, PodView, Violation};
use serde_json::Value;
use std::collections::BTreeSet;

pub static CHECKS: [Check; 7] = [
    Check {
        id: "allowPrivilegeEscalation",
        level: Level::Restricted,
        versions: &[(8, allow_privilege_escalation), (25, not_windows_ape)],
        overrides: &[],
    },
    Check {
        id: "capabilities_restricted",
        level: Level::Restricted,
        versions: &[(22, capabilities), (25, not_windows_capabilities)],
        overrides: &["capabilities_baseline"],
    },
    Check {
        id: "procMount_restricted",
        level: Level::Restricted,
        versions: &[(35, proc_mount)],
        overrides: &["procMount"],
    },
    Check {
        id: "restrictedVolumes",
        level: Level::Restricted,
        versions: &[(0, restricted_volumes)],
        overrides: &["hostPathVolumes"],
    },
    Check {
        id: "runAsNonRoot",
        level: Level::Restricted,
        versions: &[(0, run_as_non_root), (35, run_as_non_root_1_35)],
        overrides: &[],
    },
    Check {
        id: "runAsUser",
        level: Level::Restricted,
        versions: &[(23, run_as_user), (35, run_as_user_1_35)],
        overrides: &[],
    },
    Check {
        id: "seccompProfile_restricted",
        level: Level::Restricted,
        versions: &[(19, seccomp), (25, not_windows_seccomp)],
        overrides: &["seccompProfile_baseline"],
    },
];

fn allow_privilege_escalation(pod: &PodView<'_>) -> Option<Violation> {
    let bad: Vec<String> = pod
        .containers()
        .filter(|c| c["securityContext"]["allowPrivilegeEscalation"] != Value::Bool(false))
        .map(name_of)
        .collect();
    (!bad.is_empty()).then(|| {
        Violation::new(
            "allowPrivilegeEscalation != false",
            format!(
                "{} must set securityContext.allowPrivilegeEscalation=false",
                containers_phrase(&bad)
            ),
        )
    })
}

fn not_windows_ape(pod: &PodView<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    allow_privilege_escalation(pod)
}

fn capabilities(pod: &PodView<'_>) -> Option<Violation> {
    let mut missing_drop = Vec::new();
    let mut adding = Vec::new();
    let mut forbidden = BTreeSet::new();
    for c in pod.containers() {
        let caps = &c["securityContext"]["capabilities"];
        if !caps.is_object() {
            missing_drop.push(name_of(c));
            continue;
        }
        let list = |k: &str| -> Vec<String> {
            caps[k]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().unwrap_or_default().to_owned())
                .collect()
        };
        if !list("drop").iter().any(|d| d == "ALL") {
            missing_drop.push(name_of(c));
        }
        let mut added_forbidden = false;
        for a in list("add") {
            if a != "NET_BIND_SERVICE" {
                added_forbidden = true;
                forbidden.insert(a);
            }
        }
        if added_forbidden {
            adding.push(name_of(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop.is_empty() {
        details.push(format!(
            r#"{} must set securityContext.capabilities.drop=["ALL"]"#,
            containers_phrase(&missing_drop)
        ));
    }
    if !adding.is_empty() {
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding),
            join_quote(&forbidden)
        ));
    }
    (!details.is_empty()).then(|| Violation::new("unrestricted capabilities", details.join("; ")))
}

fn not_windows_capabilities(pod: &PodView<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    capabilities(pod)
}

/// Volume types restricted allows.
const ALLOWED_VOLUMES: [&str; 9] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Volume types restricted refuses, by name (upstream names them by their JSON field).
const RESTRICTED_VOLUMES: [&str; 21] = [
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

fn restricted_volumes(pod: &PodView<'_>) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in pod.spec["volumes"].as_array().into_iter().flatten() {
        let set = |k: &&&str| !v[**k].is_null();
        if ALLOWED_VOLUMES.iter().any(|k| set(&k)) {
            continue;
        }
        bad.push(name_of(v));
        types.insert(
            RESTRICTED_VOLUMES
                .iter()
                .find(set)
                .copied()
                .unwrap_or("unknown"),
        );
    }
    (!bad.is_empty()).then(|| {
        let plural = |s: &'static str, p: &'static str, n: usize| if n == 1 { s } else { p };
        Violation::new(
            "restricted volume types",
            format!(
                "{} {} {} {} {}",
                plural("volume", "volumes", bad.len()),
                join_quote(&bad),
                plural("uses", "use", bad.len()),
                plural(
                    "restricted volume type",
                    "restricted volume types",
                    types.len()
                ),
                join_quote(&types)
            ),
        )
    })
}

fn run_as_non_root(pod: &PodView<'_>) -> Option<Violation> {
    let pod_value = &pod.spec["securityContext"]["runAsNonRoot"];
    let pod_bad = *pod_value == Value::Bool(false);
    let pod_ok = *pod_value == Value::Bool(true);
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in pod.containers() {
        match &c["securityContext"]["runAsNonRoot"] {
            Value::Bool(false) => explicit.push(name_of(c)),
            Value::Bool(true) => {}
            _ if !pod_ok => implicit.push(name_of(c)),
            _ => {}
        }
    }
    let setters = setters(pod_bad, &explicit);
    if !setters.is_empty() {
        return Some(Violation::new(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                setters.join(" and ")
            ),
        ));
    }
    (!implicit.is_empty()).then(|| {
        Violation::new(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ),
        )
    })
}

fn run_as_non_root_1_35(pod: &PodView<'_>) -> Option<Violation> {
    if pod.user_namespaced() {
        return None;
    }
    run_as_non_root(pod)
}

fn run_as_user(pod: &PodView<'_>) -> Option<Violation> {
    let root = |sc: &Value| sc["runAsUser"].as_i64() == Some(0);
    let bad: Vec<String> = pod
        .containers()
        .filter(|c| root(&c["securityContext"]))
        .map(name_of)
        .collect();
    let setters = setters(root(&pod.spec["securityContext"]), &bad);
    (!setters.is_empty()).then(|| {
        Violation::new(
            "runAsUser=0",
            format!("{} must not set runAsUser=0", setters.join(" and ")),
        )
    })
}

fn run_as_user_1_35(pod: &PodView<'_>) -> Option<Violation> {
    if pod.user_namespaced() {
        return None;
    }
    run_as_user(pod)
}

fn seccomp(pod: &PodView<'_>) -> Option<Violation> {
    let mut values = BTreeSet::new();
    let profile = &pod.spec["securityContext"]["seccompProfile"];
    let mut pod_bad = false;
    let mut pod_set = false;
    if profile.is_object() {
        if valid_seccomp(&profile["type"]) {
            pod_set = true;
        } else {
            pod_bad = true;
            values.insert(profile["type"].as_str().unwrap_or_default().to_owned());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in pod.containers() {
        let p = &c["securityContext"]["seccompProfile"];
        if p.is_object() {
            if !valid_seccomp(&p["type"]) {
                explicit.push(name_of(c));
                values.insert(p["type"].as_str().unwrap_or_default().to_owned());
            }
        } else if !pod_set {
            implicit.push(name_of(c));
        }
    }
    let setters = setters(pod_bad, &explicit);
    if !setters.is_empty() {
        return Some(seccomp_setters_violation(&setters, &values));
    }
    (!implicit.is_empty()).then(|| {
        Violation::new(
            "seccompProfile",
            format!(
                r#"pod or {} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost""#,
                containers_phrase(&implicit)
            ),
        )
    })
}

fn not_windows_seccomp(pod: &PodView<'_>) -> Option<Violation> {
    if pod.is_windows() {
        return None;
    }
    seccomp(pod)
}
