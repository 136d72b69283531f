//! The simulation's controls, read from annotations a user sets with kubectl: what a pod's
//! containers do ([`scripted`]) and whether a node is dead ([`heartbeat_stopped`]).
//!
//! Invariant: a value that does not parse is ignored (logged) and the default behaviour
//! (run until stopped, probes pass, node alive) applies; a typo never stops a node.

use crate::kubelet::fake_cri::{Behavior, Scripted};
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use std::time::Duration;

/// Pod: containers exit with this code (after [`RUN_SECONDS`]).
pub const EXIT_CODE: &str = "sim.skiff.io/exit-code";
/// Pod: seconds containers run before they exit (alone: exit code 0).
pub const RUN_SECONDS: &str = "sim.skiff.io/run-seconds";
/// Pod: `"false"` makes readiness probes fail.
pub const READY: &str = "sim.skiff.io/ready";
/// Node: `stop` makes the simulated node a dead host.
pub const HEARTBEAT: &str = "sim.skiff.io/heartbeat";
/// The label every simulated Node carries (value `true`).
pub const SIMULATED_LABEL: &str = "node.skiff.io/simulated";

/// What the containers of a pod with these annotations do.
pub fn scripted(annotations: &BTreeMap<String, String>) -> Scripted {
    let parsed = |key: &str| -> Option<String> { annotations.get(key).map(|v| v.trim().into()) };
    let code = parsed(EXIT_CODE).and_then(|v| match v.parse::<i32>() {
        Ok(c) => Some(c),
        Err(_) => {
            tracing::warn!(annotation = EXIT_CODE, value = %v, "not an exit code; ignored");
            None
        }
    });
    let after = parsed(RUN_SECONDS).and_then(|v| match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s)),
        _ => {
            tracing::warn!(annotation = RUN_SECONDS, value = %v, "not a number of seconds; ignored");
            None
        }
    });
    let behavior = match (code, after) {
        (Some(code), after) => Behavior::Exit {
            code,
            after: after.unwrap_or_default(),
        },
        (None, Some(after)) => Behavior::Exit { code: 0, after },
        (None, None) => Behavior::Run,
    };
    Scripted {
        behavior,
        ready: parsed(READY).as_deref() != Some("false"),
    }
}

/// What container `container` of `pod` does: the pod's annotations for its containers and
/// sidecars; an init container completes at once (else the pod would never start).
pub fn for_container(pod: &Pod, container: &str) -> Scripted {
    let init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container));
    match init {
        Some(c) if c.restart_policy.as_deref() != Some("Always") => Scripted {
            behavior: Behavior::Exit {
                code: 0,
                after: Duration::ZERO,
            },
            ready: true,
        },
        _ => scripted(
            pod.metadata
                .annotations
                .as_ref()
                .unwrap_or(&BTreeMap::new()),
        ),
    }
}

/// Whether a Node's annotations say its host is dead.
pub fn heartbeat_stopped(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(HEARTBEAT))
        .is_some_and(|v| v.trim() == "stop")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_annotations_mean_a_container_that_runs_and_is_ready() {
        assert_eq!(scripted(&ann(&[])), Scripted::default());
        assert_eq!(scripted(&ann(&[])).behavior, Behavior::Run);
    }

    #[test]
    fn an_exit_code_exits_after_the_run_seconds_or_at_once() {
        assert_eq!(
            scripted(&ann(&[(EXIT_CODE, "3"), (RUN_SECONDS, "2.5")])).behavior,
            Behavior::Exit {
                code: 3,
                after: Duration::from_millis(2500)
            }
        );
        assert_eq!(
            scripted(&ann(&[(EXIT_CODE, " 1 ")])).behavior,
            Behavior::Exit {
                code: 1,
                after: Duration::ZERO
            }
        );
        // Run seconds alone: the container completes.
        assert_eq!(
            scripted(&ann(&[(RUN_SECONDS, "10")])).behavior,
            Behavior::Exit {
                code: 0,
                after: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn values_that_do_not_parse_are_ignored() {
        assert_eq!(
            scripted(&ann(&[(EXIT_CODE, "boom"), (RUN_SECONDS, "-1")])).behavior,
            Behavior::Run
        );
        assert_eq!(
            scripted(&ann(&[(EXIT_CODE, "2"), (RUN_SECONDS, "soon")])).behavior,
            Behavior::Exit {
                code: 2,
                after: Duration::ZERO
            }
        );
    }

    #[test]
    fn only_ready_false_makes_readiness_fail() {
        assert!(!scripted(&ann(&[(READY, "false")])).ready);
        assert!(scripted(&ann(&[(READY, "true")])).ready);
        assert!(scripted(&ann(&[(READY, "no")])).ready);
    }

    #[test]
    fn init_containers_complete_and_sidecars_follow_the_pod() {
        let c = |name: &str, policy: Option<&str>| Container {
            name: name.into(),
            restart_policy: policy.map(Into::into),
            ..Container::default()
        };
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                annotations: Some(ann(&[(EXIT_CODE, "7")])),
                ..Default::default()
            },
            spec: Some(PodSpec {
                init_containers: Some(vec![c("setup", None), c("proxy", Some("Always"))]),
                containers: vec![c("app", None)],
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        assert_eq!(
            for_container(&pod, "setup").behavior,
            Behavior::Exit {
                code: 0,
                after: Duration::ZERO
            }
        );
        let crash = Behavior::Exit {
            code: 7,
            after: Duration::ZERO,
        };
        assert_eq!(for_container(&pod, "proxy").behavior, crash);
        assert_eq!(for_container(&pod, "app").behavior, crash);
    }

    #[test]
    fn only_heartbeat_stop_kills_a_node() {
        assert!(heartbeat_stopped(Some(&ann(&[(HEARTBEAT, "stop")]))));
        assert!(!heartbeat_stopped(Some(&ann(&[(HEARTBEAT, "go")]))));
        assert!(!heartbeat_stopped(Some(&ann(&[]))));
        assert!(!heartbeat_stopped(None));
    }
}
