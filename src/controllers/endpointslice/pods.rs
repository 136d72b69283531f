//! What the Endpoints and EndpointSlice controllers read from pods and services (upstream's
//! `staging/src/k8s.io/endpointslice/util` and `pkg/api/v1/pod.FindPort`): which pods belong
//! in a service's endpoints, which of a pod's IPs serve a given IP family, which container
//! port a service port's `targetPort` names on each pod, and when an endpoint carries the
//! pod's hostname.
//!
//! Invariant: a named `targetPort` is resolved per pod, so two pods of one service may serve
//! it on different numbers; a pod that has no such port is left out of that port only.

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::net::IpAddr;

/// `spec.clusterIP` of a headless service.
pub const CLUSTER_IP_NONE: &str = "None";

/// An IP family, as `spec.ipFamilies` and EndpointSlice `addressType` spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The EndpointSlice `addressType`.
    pub fn address_type(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    pub fn from_address_type(t: &str) -> Option<Family> {
        match t {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }

    /// The family of `ip`, `None` if it is no IP.
    pub fn of(ip: &str) -> Option<Family> {
        match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(_) => Some(Family::V4),
            IpAddr::V6(_) => Some(Family::V6),
        }
    }
}

/// Whether the service's pods are chosen by the controllers (a selector is set) and the
/// service is not an ExternalName alias: otherwise its endpoints are someone else's business.
pub fn selects_pods(svc: &Service) -> bool {
    let Some(spec) = svc.spec.as_ref() else {
        return false;
    };
    spec.selector.is_some() && spec.type_.as_deref() != Some("ExternalName")
}

/// Whether `pod` carries every label of the service's selector (a nil selector selects none).
pub fn selected_by(svc: &Service, pod: &Pod) -> bool {
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if svc.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some(CLUSTER_IP_NONE)
}

pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The pod's IPs (`status.podIPs`, else `status.podIP`).
pub fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let ips: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    status
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .into_iter()
        .collect()
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Upstream's `ShouldPodBeInEndpoints`: not finished, has an IP, and, unless
/// `include_terminating`, not being deleted.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    !is_terminal(pod)
        && !pod_ips(pod).is_empty()
        && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// The pod's hostname goes into its endpoint when the pod names this service as its
/// subdomain (how a headless service gives pods DNS names).
pub fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    !spec.hostname.as_deref().unwrap_or_default().is_empty()
        && spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace
}

/// The family the Endpoints controller publishes for a service: the cluster IP's, else the
/// first of `spec.ipFamilies`, else (old headless services) the pod's own.
pub fn endpoints_family(svc: &Service, pod: &Pod) -> Family {
    let spec = svc.spec.as_ref();
    if let Some(ip) = spec
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != CLUSTER_IP_NONE)
    {
        return Family::of(ip).unwrap_or(Family::V4);
    }
    if let Some(first) = spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
    {
        return if first == "IPv6" {
            Family::V6
        } else {
            Family::V4
        };
    }
    pod_ips(pod)
        .first()
        .and_then(|ip| Family::of(ip))
        .unwrap_or(Family::V4)
}

/// The address types the EndpointSlice controller keeps slices of for `svc`: one per
/// `spec.ipFamilies`, else the cluster IP's family, else (old headless services) both.
pub fn slice_families(svc: &Service) -> Vec<Family> {
    let spec = svc.spec.as_ref();
    let mut families: Vec<Family> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        })
        .collect();
    families.sort();
    families.dedup();
    if !families.is_empty() {
        return families;
    }
    match spec
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != CLUSTER_IP_NONE)
    {
        Some(ip) => vec![Family::of(ip).unwrap_or(Family::V4)],
        None => vec![Family::V4, Family::V6],
    }
}

/// The pod's IPs of `family`.
pub fn ips_of_family(pod: &Pod, family: Family) -> Vec<String> {
    pod_ips(pod)
        .into_iter()
        .filter(|ip| Family::of(ip) == Some(family))
        .map(String::from)
        .collect()
}

/// Upstream's `FindPort`: the container port a service port's `targetPort` means on `pod`.
/// A number is itself; a name is looked up among the pod's container ports (and those of
/// restartable init containers) of the same protocol.
pub fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(s)) => {
            if let Ok(n) = s.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(s.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The `targetRef` of a pod's endpoint.
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).expect("valid pod")
    }

    fn svc_port(target: serde_json::Value) -> ServicePort {
        serde_json::from_value(
            serde_json::json!({"port": 80, "protocol": "TCP", "targetPort": target}),
        )
        .expect("valid port")
    }

    #[test]
    fn a_named_target_port_resolves_per_pod_and_by_protocol() {
        let a = pod(
            serde_json::json!({"spec": {"containers": [{"name": "c", "ports": [
            {"name": "http", "containerPort": 8080, "protocol": "UDP"},
            {"name": "http", "containerPort": 8081, "protocol": "TCP"}]}]}}),
        );
        let b = pod(serde_json::json!({"spec": {
            "initContainers": [{"name": "side", "restartPolicy": "Always",
                                "ports": [{"name": "http", "containerPort": 9090}]}],
            "containers": [{"name": "c"}]}}));
        let none = pod(serde_json::json!({"spec": {"containers": [{"name": "c"}]}}));
        let named = svc_port(serde_json::json!("http"));
        assert_eq!(find_port(&a, &named), Some(8081));
        assert_eq!(find_port(&b, &named), Some(9090));
        assert_eq!(find_port(&none, &named), None);
        assert_eq!(
            find_port(&none, &svc_port(serde_json::json!(7000))),
            Some(7000)
        );
    }

    #[test]
    fn finished_ipless_and_terminating_pods_are_left_out_as_upstream() {
        let running =
            pod(serde_json::json!({"status": {"phase": "Running", "podIP": "10.42.0.5"}}));
        assert!(should_be_in_endpoints(&running, false));
        let done = pod(serde_json::json!({"status": {"phase": "Succeeded", "podIP": "10.42.0.5"}}));
        assert!(!should_be_in_endpoints(&done, true));
        let pending = pod(serde_json::json!({"status": {"phase": "Pending"}}));
        assert!(!should_be_in_endpoints(&pending, true));
        let deleting = pod(serde_json::json!({
            "metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.42.0.6"}]}}));
        assert!(!should_be_in_endpoints(&deleting, false));
        assert!(should_be_in_endpoints(&deleting, true));
    }

    #[test]
    fn slice_families_follow_ip_families_then_the_cluster_ip() {
        let svc = |spec: serde_json::Value| -> Service {
            serde_json::from_value(serde_json::json!({"spec": spec})).expect("valid service")
        };
        assert_eq!(
            slice_families(&svc(serde_json::json!({"ipFamilies": ["IPv6", "IPv4"]}))),
            vec![Family::V4, Family::V6]
        );
        assert_eq!(
            slice_families(&svc(serde_json::json!({"clusterIP": "fd00::1"}))),
            vec![Family::V6]
        );
        assert_eq!(
            slice_families(&svc(serde_json::json!({"clusterIP": "None"}))),
            vec![Family::V4, Family::V6]
        );
    }
}
