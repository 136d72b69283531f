//! The downward API: pod fields (`fieldRef`) and container resources (`resourceFieldRef`)
//! as values, for environment variables and downwardAPI volume files.
//!
//! Invariant: one implementation for both consumers, so an env var and a file never
//! disagree; the formats are upstream's (labels/annotations as sorted `k="v"` lines,
//! resources rounded up to the divisor, unset limits defaulting to node allocatable).

use crate::api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};
use std::collections::BTreeMap;

/// Values that are not in the pod object.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    pub host_ips: Vec<String>,
    pub pod_ips: Vec<String>,
    /// Node allocatable, for limits the container does not set.
    pub node_cpu_milli: i64,
    pub node_memory_bytes: i64,
    pub node_ephemeral_bytes: i64,
}

/// `key="value"` lines sorted by key, values escaped as Go's `%q`.
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    let mut out = String::new();
    for (k, v) in m.into_iter().flatten() {
        out.push_str(&format!("{k}={}\n", serde_json::Value::String(v.clone())));
    }
    out.trim_end_matches('\n').to_string()
}

/// The value of a `fieldRef.fieldPath`.
pub fn field(pod: &Pod, path: &str, f: &Fields) -> Result<String, String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
            .map(str::to_owned)
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(m.labels.as_ref()),
        "metadata.annotations" => format_map(m.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => f.host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => f.host_ips.join(","),
        "status.podIP" => f.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => f.pod_ips.join(","),
        _ => {
            if let Some(k) = subscript("metadata.labels") {
                m.labels
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = subscript("metadata.annotations") {
                m.annotations
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(format!("unsupported fieldPath: {path}"));
            }
        }
    })
}

fn quantity(
    q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
) -> Option<Quantity> {
    q.and_then(|q| Quantity::parse(&q.0).ok())
}

/// The value of a `resourceFieldRef` for `container`.
pub fn resource(
    pod: &Pod,
    container: &Container,
    r: &ResourceFieldSelector,
    f: &Fields,
) -> Result<String, String> {
    let c = match &r.container_name {
        Some(n) if !n.is_empty() && *n != container.name => pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == *n)
            .ok_or_else(|| format!("container {n} not found"))?,
        _ => container,
    };
    let res = c.resources.as_ref();
    let (kind, name) = r
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", r.resource))?;
    let from = match kind {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported container resource : {}", r.resource)),
    };
    let divisor = quantity(r.divisor.as_ref()).filter(|d| !d.is_zero());
    let set = quantity(from.and_then(|m| m.get(name)));
    match name {
        "cpu" => {
            let milli = match set {
                Some(q) => q.milli_value(),
                // Upstream: unset limit → node allocatable; unset request → 0 (then 1 as
                // the ceiling below rounds up from the 1-milli minimum).
                None if kind == "limits" => f.node_cpu_milli as i128,
                None => 0,
            };
            let div = divisor.map(|d| d.milli_value()).unwrap_or(1000).max(1);
            Ok(((milli + div - 1) / div).max(1).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let v = match set {
                Some(q) => q.value(),
                None if kind == "limits" && name == "memory" => f.node_memory_bytes as i128,
                None if kind == "limits" => f.node_ephemeral_bytes as i128,
                None => 0,
            };
            let div = divisor.map(|d| d.value()).unwrap_or(1).max(1);
            Ok(((v + div - 1) / div).to_string())
        }
        _ if name.starts_with("hugepages-") => {
            let v = set.map(|q| q.value()).unwrap_or(0);
            let div = divisor.map(|d| d.value()).unwrap_or(1).max(1);
            Ok(((v + div - 1) / div).to_string())
        }
        _ => Err(format!("unsupported container resource : {}", r.resource)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;

    #[test]
    fn labels_are_sorted_quoted_lines_and_subscripts_pick_one() {
        let mut p = Pod::default();
        p.metadata.labels = Some(BTreeMap::from([
            ("b".into(), "2\"x".into()),
            ("a".into(), "1".into()),
        ]));
        assert_eq!(
            field(&p, "metadata.labels", &Fields::default()).unwrap(),
            "a=\"1\"\nb=\"2\\\"x\""
        );
        assert_eq!(
            field(&p, "metadata.labels['b']", &Fields::default()).unwrap(),
            "2\"x"
        );
        assert!(field(&p, "spec.bogus", &Fields::default()).is_err());
    }

    #[test]
    fn resources_round_up_to_the_divisor_and_limits_default_to_the_node() {
        let c = Container {
            name: "app".into(),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".into(), Q("250m".into())),
                    ("memory".into(), Q("64Mi".into())),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let f = Fields {
            node_cpu_milli: 4000,
            node_memory_bytes: 1 << 30,
            ..Default::default()
        };
        let sel = |res: &str, div: Option<&str>| ResourceFieldSelector {
            resource: res.into(),
            divisor: div.map(|d| Q(d.into())),
            container_name: None,
        };
        let p = Pod::default();
        assert_eq!(
            resource(&p, &c, &sel("requests.cpu", None), &f).unwrap(),
            "1"
        );
        assert_eq!(
            resource(&p, &c, &sel("requests.cpu", Some("1m")), &f).unwrap(),
            "250"
        );
        assert_eq!(
            resource(&p, &c, &sel("requests.memory", Some("1Mi")), &f).unwrap(),
            "64"
        );
        assert_eq!(resource(&p, &c, &sel("limits.cpu", None), &f).unwrap(), "4");
        assert_eq!(
            resource(&p, &c, &sel("limits.memory", None), &f).unwrap(),
            (1u64 << 30).to_string()
        );
    }
}
