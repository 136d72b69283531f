//! The simulation's controls, read from annotations a user sets with kubectl: what a pod's
//! containers do ([`scripted`]) and whether a node is dead ([`heartbeat_stopped`]).
//!
//! Invariant: a value that does not parse is ignored (logged) and the default behaviour
//! (run until stopped, probes pass, node alive) applies; a typo never stops a node.

use crate::kubelet::fake_cri::{Behavior, Scripted};
use crate::runtime::containers::ContainerConfig;
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

/// What a container the kubelet creates does: its pod's annotations (which CRI passes
/// along) for containers and sidecars; an init container that runs to completion completes
/// at once (else the pod would never start).
pub fn for_config(config: &ContainerConfig) -> Scripted {
    if config.run_to_completion_init {
        return Scripted {
            behavior: Behavior::Exit {
                code: 0,
                after: Duration::ZERO,
            },
            ready: true,
        };
    }
    scripted(&config.pod_annotations)
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
    fn init_containers_complete_and_the_rest_follow_the_pods_annotations() {
        let config = |init: bool| ContainerConfig {
            pod_annotations: ann(&[(EXIT_CODE, "7")]),
            run_to_completion_init: init,
            ..ContainerConfig::default()
        };
        assert_eq!(
            for_config(&config(true)).behavior,
            Behavior::Exit {
                code: 0,
                after: Duration::ZERO
            }
        );
        assert_eq!(
            for_config(&config(false)).behavior,
            Behavior::Exit {
                code: 7,
                after: Duration::ZERO,
            }
        );
    }

    #[test]
    fn only_heartbeat_stop_kills_a_node() {
        assert!(heartbeat_stopped(Some(&ann(&[(HEARTBEAT, "stop")]))));
        assert!(!heartbeat_stopped(Some(&ann(&[(HEARTBEAT, "go")]))));
        assert!(!heartbeat_stopped(Some(&ann(&[]))));
        assert!(!heartbeat_stopped(None));
    }
}
