//! The pod's `securityContext.sysctls`, as upstream's kubelet takes them: only the safe set
//! (namespaced, and unable to affect other pods) is admitted; a pod asking for any other is
//! refused with `SysctlForbidden`. Names may use slashes (`net/ipv4/ip_local_port_range`);
//! they are normalized to dots for the runtime.

use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;

/// Upstream's safe sysctls (`pkg/kubelet/sysctl/safe_sysctls.go`, 1.35).
const SAFE: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// The admission reason upstream gives a refused pod.
pub const REASON: &str = "SysctlForbidden";

/// Upstream's `NormalizeName`: a name whose first separator is a slash has its dots and
/// slashes swapped (`net/ipv4/conf/eth0.100/rp_filter` → `net.ipv4.conf.eth0/100.rp_filter`).
pub fn normalize(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => {
            crate::runtime::containers::swap_dots_and_slashes(name)
        }
        _ => name.to_owned(),
    }
}

/// The pod's sysctls, names normalized.
pub fn of_pod(pod: &Pod) -> BTreeMap<String, String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.sysctls.as_ref())
        .into_iter()
        .flatten()
        .map(|s| (normalize(&s.name), s.value.clone()))
        .collect()
}

/// Why the pod cannot be admitted, in upstream's words; `None` when every sysctl is safe.
pub fn refuse(pod: &Pod) -> Option<String> {
    of_pod(pod)
        .into_keys()
        .find(|name| !SAFE.contains(&name.as_str()))
        .map(|name| format!("forbidden sysctl: \"{name}\" not allowlisted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(sysctls: &[(&str, &str)]) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}], "securityContext": {"sysctls":
                sysctls.iter().map(|(n, v)| serde_json::json!({"name": n, "value": v}))
                    .collect::<Vec<_>>()}}
        }))
        .unwrap()
    }

    #[test]
    fn safe_sysctls_are_admitted_in_either_spelling_and_others_refused() {
        let ok = pod(&[
            ("kernel.shm_rmid_forced", "1"),
            ("net/ipv4/ip_local_port_range", "1024 65535"),
        ]);
        assert_eq!(refuse(&ok), None);
        assert_eq!(
            of_pod(&ok).keys().collect::<Vec<_>>(),
            ["kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range"]
        );
        let unsafe_one = pod(&[("kernel.shm_rmid_forced", "1"), ("kernel.msgmax", "10000")]);
        assert_eq!(
            refuse(&unsafe_one).as_deref(),
            Some("forbidden sysctl: \"kernel.msgmax\" not allowlisted")
        );
        assert_eq!(
            normalize("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
    }
}
