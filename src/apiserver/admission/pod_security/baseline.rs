//! The baseline checks of the Pod Security Standards (upstream's `policy/check_*.go` of
//! level baseline), with upstream's reasons and details word for word.
//!
//! Invariant: [`CHECKS`] is sorted by id (upstream evaluates and reports in that order) and
//! each check lists every version at which upstream changed it.

use super::policy::{
    containers_phrase, go_quote, join_quote, name_of, pluralize, Check, Level, PodView, Violation,
};
use serde_json::Value;
use std::collections::BTreeSet;

pub static CHECKS: [Check; 12] = [
    Check {
        id: "appArmorProfile",
        level: Level::Baseline,
        versions: &[(0, app_armor)],
        overrides: &[],
    },
    Check {
        id: "capabilities_baseline",
        level: Level::Baseline,
        versions: &[(0, capabilities)],
        overrides: &[],
    },
    Check {
        id: "hostNamespaces",
        level: Level::Baseline,
        versions: &[(0, host_namespaces)],
        overrides: &[],
    },
    Check {
        id: "hostPathVolumes",
        level: Level::Baseline,
        versions: &[(0, host_path_volumes)],
        overrides: &[],
    },
    Check {
        id: "hostPorts",
        level: Level::Baseline,
        versions: &[(0, host_ports)],
        overrides: &[],
    },
    Check {
        id: "hostProbesAndHostLifecycle",
        level: Level::Baseline,
        versions: &[(34, host_probes)],
        overrides: &[],
    },
    Check {
        id: "privileged",
        level: Level::Baseline,
        versions: &[(0, privileged)],
        overrides: &[],
    },
    Check {
        id: "procMount",
        level: Level::Baseline,
        versions: &[(0, proc_mount), (35, proc_mount_1_35)],
        overrides: &[],
    },
    Check {
        id: "seLinuxOptions",
        level: Level::Baseline,
        versions: &[(0, selinux_1_0), (31, selinux_1_31)],
        overrides: &[],
    },
    Check {
        id: "seccompProfile_baseline",
        level: Level::Baseline,
        versions: &[(0, seccomp_annotations), (19, seccomp_baseline)],
        overrides: &[],
    },
    Check {
        id: "sysctls",
        level: Level::Baseline,
        versions: &[
            (0, sysctls_1_0),
            (27, sysctls_1_27),
            (29, sysctls_1_29),
            (32, sysctls_1_32),
        ],
        overrides: &[],
    },
    Check {
        id: "windowsHostProcess",
        level: Level::Baseline,
        versions: &[(0, windows_host_process)],
        overrides: &[],
    },
];

/// `pod and containers "a"` style setter list.
pub(super) fn setters(pod: bool, containers: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if pod {
        out.push("pod".to_owned());
    }
    if !containers.is_empty() {
        out.push(containers_phrase(containers));
    }
    out
}

fn app_armor(pod: &PodView<'_>) -> Option<Violation> {
    let allowed = |t: &Value| t == "RuntimeDefault" || t == "Localhost";
    let mut bad_values = BTreeSet::new();
    let mut pod_bad = false;
    let profile = &pod.spec["securityContext"]["appArmorProfile"];
    if profile.is_object() && !allowed(&profile["type"]) {
        pod_bad = true;
        bad_values.insert(profile["type"].as_str().unwrap_or_default().to_owned());
    }
    let mut bad = Vec::new();
    for c in pod.containers() {
        let profile = &c["securityContext"]["appArmorProfile"];
        if profile.is_object() && !allowed(&profile["type"]) {
            bad.push(name_of(c));
            bad_values.insert(profile["type"].as_str().unwrap_or_default().to_owned());
        }
    }
    let mut setters = setters(pod_bad, &bad);
    let mut values: Vec<String> = bad_values.into_iter().collect();
    let mut annotations: Vec<String> = pod
        .annotations()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let v = v.as_str().unwrap_or_default();
            let ok = v.is_empty() || v == "runtime/default" || v.starts_with("localhost/");
            (k.starts_with("container.apparmor.security.beta.kubernetes.io/") && !ok)
                .then(|| format!("{k}={}", go_quote(v)))
        })
        .collect();
    if !annotations.is_empty() {
        annotations.sort();
        setters.push(pluralize("annotation", "annotations", annotations.len()).to_owned());
        values.extend(annotations);
    }
    if setters.is_empty() {
        return None;
    }
    Some(Violation::new(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            values.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            setters.join(" and "),
            join_quote(&values)
        ),
    ))
}

const DEFAULT_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities(pod: &PodView<'_>) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in pod.containers() {
        let mut valid = true;
        for cap in c["securityContext"]["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let cap = cap.as_str().unwrap_or_default();
            if !DEFAULT_CAPABILITIES.contains(&cap) {
                valid = false;
                caps.insert(cap.to_owned());
            }
        }
        if !valid {
            bad.push(name_of(c));
        }
    }
    (!bad.is_empty()).then(|| {
        Violation::new(
            "non-default capabilities",
            format!(
                "{} must not include {} in securityContext.capabilities.add",
                containers_phrase(&bad),
                join_quote(&caps)
            ),
        )
    })
}

fn host_namespaces(pod: &PodView<'_>) -> Option<Violation> {
    let set: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|k| pod.spec[**k] == Value::Bool(true))
        .map(|k| format!("{k}=true"))
        .collect();
    (!set.is_empty()).then(|| Violation::new("host namespaces", set.join(", ")))
}

fn host_path_volumes(pod: &PodView<'_>) -> Option<Violation> {
    let names: Vec<String> = pod.spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["hostPath"].is_object())
        .map(name_of)
        .collect();
    (!names.is_empty()).then(|| {
        Violation::new(
            "hostPath volumes",
            format!(
                "{} {}",
                pluralize("volume", "volumes", names.len()),
                join_quote(&names)
            ),
        )
    })
}

fn host_ports(pod: &PodView<'_>) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut ports = BTreeSet::new();
    for c in pod.containers() {
        let mut valid = true;
        for p in c["ports"].as_array().into_iter().flatten() {
            let hp = p["hostPort"].as_i64().unwrap_or(0);
            if hp != 0 {
                valid = false;
                // Upstream sorts the port numbers as strings.
                ports.insert(hp.to_string());
            }
        }
        if !valid {
            bad.push(name_of(c));
        }
    }
    (!bad.is_empty()).then(|| {
        Violation::new(
            "hostPort",
            format!(
                "{} {} {} {}",
                containers_phrase(&bad),
                pluralize("uses", "use", bad.len()),
                pluralize("hostPort", "hostPorts", ports.len()),
                ports.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

fn host_probes(pod: &PodView<'_>) -> Option<Violation> {
    let mut bad = BTreeSet::new();
    let mut hosts = BTreeSet::new();
    let hosts_of = |h: &Value| -> Vec<String> {
        ["httpGet", "tcpSocket"]
            .iter()
            .filter_map(|k| h[*k]["host"].as_str().filter(|s| !s.is_empty()))
            .map(str::to_owned)
            .collect()
    };
    for c in pod.containers() {
        for h in [
            &c["livenessProbe"],
            &c["readinessProbe"],
            &c["startupProbe"],
            &c["lifecycle"]["postStart"],
            &c["lifecycle"]["preStop"],
        ] {
            let found = hosts_of(h);
            if !found.is_empty() {
                bad.insert(name_of(c));
                hosts.extend(found);
            }
        }
    }
    (!bad.is_empty()).then(|| {
        Violation::new(
            "probe or lifecycle host",
            format!(
                "{} {} {} {} {}",
                pluralize("container", "containers", bad.len()),
                join_quote(&bad),
                pluralize("uses", "use", bad.len()),
                pluralize(
                    "probe or lifecycle host",
                    "probe or lifecycle hosts",
                    hosts.len()
                ),
                join_quote(&hosts)
            ),
        )
    })
}

fn privileged(pod: &PodView<'_>) -> Option<Violation> {
    let bad: Vec<String> = pod
        .containers()
        .filter(|c| c["securityContext"]["privileged"] == Value::Bool(true))
        .map(name_of)
        .collect();
    (!bad.is_empty()).then(|| {
        Violation::new(
            "privileged",
            format!(
                "{} must not set securityContext.privileged=true",
                containers_phrase(&bad)
            ),
        )
    })
}

/// procMount other than `Default` (shared with the restricted check).
pub(super) fn proc_mount(pod: &PodView<'_>) -> Option<Violation> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in pod.containers() {
        if let Some(t) = c["securityContext"]["procMount"].as_str() {
            if t != "Default" {
                bad.push(name_of(c));
                types.insert(t.to_owned());
            }
        }
    }
    (!bad.is_empty()).then(|| {
        Violation::new(
            "procMount",
            format!(
                "{} must not set securityContext.procMount to {}",
                containers_phrase(&bad),
                join_quote(&types)
            ),
        )
    })
}

fn proc_mount_1_35(pod: &PodView<'_>) -> Option<Violation> {
    if pod.user_namespaced() {
        return None;
    }
    proc_mount(pod)
}

fn selinux_1_0(pod: &PodView<'_>) -> Option<Violation> {
    selinux(
        pod,
        &["", "container_t", "container_init_t", "container_kvm_t"],
    )
}

fn selinux_1_31(pod: &PodView<'_>) -> Option<Violation> {
    selinux(
        pod,
        &[
            "",
            "container_t",
            "container_init_t",
            "container_kvm_t",
            "container_engine_t",
        ],
    )
}

fn selinux(pod: &PodView<'_>, allowed: &[&str]) -> Option<Violation> {
    let mut bad_types = BTreeSet::new();
    let (mut set_user, mut set_role) = (false, false);
    let mut valid = |o: &Value| -> bool {
        let mut ok = true;
        let t = o["type"].as_str().unwrap_or_default();
        if !allowed.contains(&t) {
            ok = false;
            bad_types.insert(t.to_owned());
        }
        if !o["user"].as_str().unwrap_or_default().is_empty() {
            ok = false;
            set_user = true;
        }
        if !o["role"].as_str().unwrap_or_default().is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    let opts = &pod.spec["securityContext"]["seLinuxOptions"];
    let pod_bad = opts.is_object() && !valid(opts);
    let bad: Vec<String> = pod
        .containers()
        .filter(|c| {
            let o = &c["securityContext"]["seLinuxOptions"];
            o.is_object() && !valid(o)
        })
        .map(name_of)
        .collect();
    let setters = setters(pod_bad, &bad);
    if setters.is_empty() {
        return None;
    }
    let mut data = Vec::new();
    if !bad_types.is_empty() {
        data.push(format!(
            "{} {}",
            pluralize("type", "types", bad_types.len()),
            join_quote(&bad_types)
        ));
    }
    if set_user {
        data.push("user may not be set".to_owned());
    }
    if set_role {
        data.push("role may not be set".to_owned());
    }
    Some(Violation::new(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            setters.join(" and "),
            data.join("; ")
        ),
    ))
}

/// The seccomp types baseline and restricted allow.
pub(super) fn valid_seccomp(t: &Value) -> bool {
    t == "RuntimeDefault" || t == "Localhost"
}

fn seccomp_annotations(pod: &PodView<'_>) -> Option<Violation> {
    let ok =
        |v: &str| v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/");
    let ann = pod.annotations();
    let mut forbidden = BTreeSet::new();
    let mut check = |key: String| {
        if let Some(v) = ann.and_then(|a| a.get(&key)) {
            let v = v.as_str().unwrap_or_default();
            if !ok(v) {
                forbidden.insert(format!("{key}={}", go_quote(v)));
            }
        }
    };
    check("seccomp.security.alpha.kubernetes.io/pod".to_owned());
    for c in pod.containers() {
        check(format!(
            "container.seccomp.security.alpha.kubernetes.io/{}",
            name_of(c)
        ));
    }
    (!forbidden.is_empty()).then(|| {
        Violation::new(
            "seccompProfile",
            format!(
                "forbidden {} {}",
                pluralize("annotation", "annotations", forbidden.len()),
                forbidden.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

fn seccomp_baseline(pod: &PodView<'_>) -> Option<Violation> {
    let mut values = BTreeSet::new();
    let profile = &pod.spec["securityContext"]["seccompProfile"];
    let pod_bad = profile.is_object() && !valid_seccomp(&profile["type"]);
    if pod_bad {
        values.insert(profile["type"].as_str().unwrap_or_default().to_owned());
    }
    let mut bad = Vec::new();
    for c in pod.containers() {
        let p = &c["securityContext"]["seccompProfile"];
        if p.is_object() && !valid_seccomp(&p["type"]) {
            bad.push(name_of(c));
            values.insert(p["type"].as_str().unwrap_or_default().to_owned());
        }
    }
    let setters = setters(pod_bad, &bad);
    (!setters.is_empty()).then(|| seccomp_setters_violation(&setters, &values))
}

pub(super) fn seccomp_setters_violation(
    setters: &[String],
    values: &BTreeSet<String>,
) -> Violation {
    Violation::new(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            setters.join(" and "),
            join_quote(values)
        ),
    )
}

const SYSCTLS_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const SYSCTLS_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const SYSCTLS_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SYSCTLS_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];

fn sysctls_1_0(pod: &PodView<'_>) -> Option<Violation> {
    sysctls(pod, &[SYSCTLS_1_0])
}
fn sysctls_1_27(pod: &PodView<'_>) -> Option<Violation> {
    sysctls(pod, &[SYSCTLS_1_0, SYSCTLS_1_27])
}
fn sysctls_1_29(pod: &PodView<'_>) -> Option<Violation> {
    sysctls(pod, &[SYSCTLS_1_0, SYSCTLS_1_27, SYSCTLS_1_29])
}
fn sysctls_1_32(pod: &PodView<'_>) -> Option<Violation> {
    sysctls(
        pod,
        &[SYSCTLS_1_0, SYSCTLS_1_27, SYSCTLS_1_29, SYSCTLS_1_32],
    )
}

fn sysctls(pod: &PodView<'_>, allowed: &[&[&str]]) -> Option<Violation> {
    let bad: Vec<&str> = pod.spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|n| !allowed.iter().any(|set| set.contains(n)))
        .collect();
    (!bad.is_empty()).then(|| Violation::new("forbidden sysctls", bad.join(", ")))
}

fn windows_host_process(pod: &PodView<'_>) -> Option<Violation> {
    let host_process = |sc: &Value| sc["windowsOptions"]["hostProcess"] == Value::Bool(true);
    let bad: Vec<String> = pod
        .containers()
        .filter(|c| host_process(&c["securityContext"]))
        .map(name_of)
        .collect();
    let setters = setters(host_process(&pod.spec["securityContext"]), &bad);
    (!setters.is_empty()).then(|| {
        Violation::new(
            "hostProcess",
            format!(
                "{} must not set securityContext.windowsOptions.hostProcess=true",
                setters.join(" and ")
            ),
        )
    })
}
