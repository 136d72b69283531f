//! Resources: a pod's QoS class and a container's cgroup limits, with upstream's
//! arithmetic (requests → cpu shares, limits → CFS quota over a 100 ms period, memory).
//!
//! Invariant: pure functions of the spec, so status (`qosClass`) and the runtime config
//! always agree.

use crate::api::quantity::Quantity;
use crate::runtime::containers::Resources;
use k8s_openapi::api::core::v1::{Container, Pod};

const CPU_PERIOD_US: u64 = 100_000;
const MIN_SHARES: u64 = 2;
const MAX_SHARES: u64 = 262_144;
const MIN_QUOTA_US: i64 = 1_000;

fn get(c: &Container, kind: &str, name: &str) -> Option<Quantity> {
    let r = c.resources.as_ref()?;
    let m = if kind == "limits" {
        r.limits.as_ref()?
    } else {
        r.requests.as_ref()?
    };
    Quantity::parse(&m.get(name)?.0).ok()
}

/// `Guaranteed`, `Burstable` or `BestEffort` (upstream's `GetPodQOS`, cpu and memory only).
pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = &pod.spec else {
        return "BestEffort";
    };
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    let mut any = false;
    let mut guaranteed = true;
    for c in all {
        for name in ["cpu", "memory"] {
            let req = get(c, "requests", name).filter(|q| !q.is_zero());
            let lim = get(c, "limits", name).filter(|q| !q.is_zero());
            if req.is_some() || lim.is_some() {
                any = true;
            }
            // Requests default to limits when only limits are set.
            match (req, lim) {
                (Some(r), Some(l)) if r == l => {}
                (None, Some(_)) => {}
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The container's cgroup settings.
pub fn container_resources(c: &Container) -> Resources {
    let cpu_req = get(c, "requests", "cpu").or_else(|| get(c, "limits", "cpu"));
    let shares = match cpu_req {
        Some(q) if !q.is_zero() => {
            ((q.milli_value() as u64 * 1024) / 1000).clamp(MIN_SHARES, MAX_SHARES)
        }
        _ => MIN_SHARES,
    };
    let quota = get(c, "limits", "cpu")
        .filter(|q| !q.is_zero())
        .map(|q| ((q.milli_value() as i64 * CPU_PERIOD_US as i64) / 1000).max(MIN_QUOTA_US));
    Resources {
        memory_limit_bytes: get(c, "limits", "memory")
            .filter(|q| !q.is_zero())
            .map(|q| q.value() as i64),
        cpu_quota_us: quota,
        cpu_period_us: quota.map(|_| CPU_PERIOD_US),
        cpu_shares: Some(shares),
        pids_limit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
    use std::collections::BTreeMap;

    fn c(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
        let m = |v: &[(&str, &str)]| {
            (!v.is_empty()).then(|| {
                v.iter()
                    .map(|(k, v)| (k.to_string(), Q(v.to_string())))
                    .collect::<BTreeMap<_, _>>()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: m(req),
                limits: m(lim),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(cs: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: cs,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        assert_eq!(qos_class(&pod(vec![c(&[], &[])])), "BestEffort");
        assert_eq!(
            qos_class(&pod(vec![c(&[], &[("cpu", "1"), ("memory", "1Gi")])])),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(vec![c(&[("cpu", "500m")], &[("cpu", "1")])])),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod(vec![
                c(
                    &[("cpu", "1"), ("memory", "1Gi")],
                    &[("cpu", "1"), ("memory", "1Gi")]
                ),
                c(&[], &[])
            ])),
            "Burstable"
        );
    }

    #[test]
    fn requests_become_shares_and_limits_quota_and_memory() {
        let r = container_resources(&c(
            &[("cpu", "250m")],
            &[("cpu", "500m"), ("memory", "128Mi")],
        ));
        assert_eq!(r.cpu_shares, Some(256));
        assert_eq!(r.cpu_quota_us, Some(50_000));
        assert_eq!(r.cpu_period_us, Some(100_000));
        assert_eq!(r.memory_limit_bytes, Some(128 << 20));
        assert_eq!(container_resources(&c(&[], &[])).cpu_shares, Some(2));
    }
}
