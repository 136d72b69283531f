//! Resources: a pod's QoS class, its pod cgroup and a container's cgroup limits, with
//! upstream's arithmetic (requests → cpu shares, limits → CFS quota over a 100 ms period,
//! memory).
//!
//! Cgroups are laid out as upstream's kubelet does with the cgroupfs driver, under the
//! runtime's parent: `kubepods/pod<uid>` for Guaranteed pods, `kubepods/burstable/pod<uid>`
//! and `kubepods/besteffort/pod<uid>`, each container's cgroup inside its pod's. The pod
//! cgroup bounds the pod as a whole (sidecars and init containers included) and is what a
//! pod-level memory or cpu limit applies to.
//!
//! Invariant: pure functions of the spec, so status (`qosClass`) and the runtime config
//! always agree.

use crate::api::quantity::Quantity;
use crate::api::resources::pod_limits;
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

/// The Burstable QoS class's cgroup, relative to the runtime's cgroup parent.
pub const BURSTABLE_CLASS: &str = "kubepods/burstable";

pub(crate) fn milli_to_shares(milli: i64) -> u64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    ((milli as u64 * 1024) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

fn milli_to_quota(milli: i64) -> i64 {
    ((milli * CPU_PERIOD_US as i64) / 1000).max(MIN_QUOTA_US)
}

/// The cgroup of a QoS class's pods, relative to the runtime's cgroup parent.
fn class_dir(qos: &str) -> &'static str {
    match qos {
        "Guaranteed" => "kubepods",
        "Burstable" => "kubepods/burstable",
        _ => "kubepods/besteffort",
    }
}

/// Only the minimum cpu shares: a BestEffort pod, and the BestEffort class as a whole.
fn min_shares() -> Resources {
    Resources {
        cpu_shares: Some(MIN_SHARES),
        ..Resources::default()
    }
}

/// A pod's cgroup (see the module docs) and what it is created with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    /// Relative to the runtime's cgroup parent.
    pub path: String,
    /// Upstream's `ResourceConfigForPod`: cpu shares from the pod's effective cpu request;
    /// a CFS quota and a memory limit only when every container declares that limit (or the
    /// pod does), since one unbounded container leaves the pod unbounded. A BestEffort pod
    /// gets the minimum shares and nothing else.
    pub resources: Resources,
    /// The QoS class's cgroup when it has settings of its own: BestEffort pods share 2 cpu
    /// shares altogether, as upstream. (The Burstable class's shares, the sum of its pods'
    /// requests, are kept by `resize::sync_burstable_class`.)
    pub class: Option<(&'static str, Resources)>,
}

/// The pod's cgroup; `None` for a pod without a uid (never one the API server returned).
pub fn pod_cgroup(pod: &Pod) -> Option<PodCgroup> {
    let uid = pod.metadata.uid.as_deref().filter(|u| !u.is_empty())?;
    let qos = qos_class(pod);
    let path = format!("{}/pod{uid}", class_dir(qos));
    if qos == "BestEffort" {
        return Some(PodCgroup {
            path,
            resources: min_shares(),
            class: Some((class_dir(qos), min_shares())),
        });
    }
    let requests = crate::api::resources::pod_requests(pod);
    let limits = pod_limits(pod);
    let quota = limits
        .cpu_bounded
        .then(|| milli_to_quota(limits.limits.milli_cpu));
    let resources = Resources {
        memory_limit_bytes: limits.memory_bounded.then_some(limits.limits.memory),
        cpu_quota_us: quota,
        cpu_period_us: quota.map(|_| CPU_PERIOD_US),
        cpu_shares: Some(milli_to_shares(requests.milli_cpu)),
        pids_limit: None,
    };
    Some(PodCgroup {
        path,
        resources,
        class: None,
    })
}

/// Every path the cgroup of pod `uid` can have, one per QoS class.
pub fn pod_cgroup_paths(uid: &str) -> [String; 3] {
    ["Guaranteed", "Burstable", "BestEffort"].map(|q| format!("{}/pod{uid}", class_dir(q)))
}

/// The container's cgroup settings.
pub fn container_resources(c: &Container) -> Resources {
    let cpu_req = get(c, "requests", "cpu").or_else(|| get(c, "limits", "cpu"));
    let shares = milli_to_shares(cpu_req.map_or(0, |q| q.milli_value() as i64));
    let quota = get(c, "limits", "cpu")
        .filter(|q| !q.is_zero())
        .map(|q| milli_to_quota(q.milli_value() as i64));
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

    fn with_uid(mut p: Pod) -> Pod {
        p.metadata.uid = Some("u1".into());
        p
    }

    #[test]
    fn pod_cgroups_sit_under_their_qos_class() {
        let guaranteed = with_uid(pod(vec![c(&[], &[("cpu", "1"), ("memory", "1Gi")])]));
        let burstable = with_uid(pod(vec![c(&[("cpu", "100m")], &[])]));
        let best_effort = with_uid(pod(vec![c(&[], &[])]));
        assert_eq!(pod_cgroup(&guaranteed).unwrap().path, "kubepods/podu1");
        assert_eq!(
            pod_cgroup(&burstable).unwrap().path,
            "kubepods/burstable/podu1"
        );
        assert_eq!(
            pod_cgroup(&best_effort).unwrap().path,
            "kubepods/besteffort/podu1"
        );
        assert_eq!(pod_cgroup(&pod(vec![c(&[], &[])])), None);
    }

    #[test]
    fn a_guaranteed_pod_cgroup_is_bounded_by_the_sum_of_its_containers() {
        // Requests as the API server's defaulting leaves them (copied from the limits).
        let both = |cpu, mem| {
            c(
                &[("cpu", cpu), ("memory", mem)],
                &[("cpu", cpu), ("memory", mem)],
            )
        };
        let p = pod(vec![both("500m", "64Mi"), both("250m", "32Mi")]);
        let r = pod_cgroup(&with_uid(p)).unwrap().resources;
        assert_eq!(r.cpu_shares, Some(768));
        assert_eq!(r.cpu_quota_us, Some(75_000));
        assert_eq!(r.cpu_period_us, Some(100_000));
        assert_eq!(r.memory_limit_bytes, Some(96 << 20));
    }

    #[test]
    fn one_container_without_a_limit_leaves_the_burstable_pod_unbounded_in_that_resource() {
        let p = pod(vec![
            c(&[("cpu", "100m")], &[("cpu", "1"), ("memory", "64Mi")]),
            c(&[("cpu", "200m")], &[("memory", "32Mi")]),
        ]);
        let r = pod_cgroup(&with_uid(p)).unwrap().resources;
        assert_eq!(r.cpu_shares, Some(307));
        assert_eq!(
            r.cpu_quota_us, None,
            "the second container has no cpu limit"
        );
        assert_eq!(r.memory_limit_bytes, Some(96 << 20));
    }

    #[test]
    fn a_best_effort_pod_gets_the_minimum_shares_only() {
        assert_eq!(
            pod_cgroup(&with_uid(pod(vec![c(&[], &[])])))
                .unwrap()
                .resources,
            Resources {
                cpu_shares: Some(2),
                ..Resources::default()
            }
        );
    }
}
