//! Pod rows: the READY / STATUS / RESTARTS summary kubectl users read most.
//!
//! Invariant: the STATUS reason follows upstream's precedence exactly — pod
//! reason over phase, then SchedulingGated, then the first failing init
//! container (`Init:…`), then the first container's waiting/terminated reason,
//! then deletion (`Terminating`, or `Unknown` for NodeLost).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::duration::{parse_time, since, since_time};
use super::fields::{bool_at, get, has, int_at, list_at, name, opt_str, s, str_at};
use super::{col, wide, Col, Spec, AGE, NAME};

pub static POD: Spec = Spec {
    columns: &COLUMNS,
    cells: pod_cells,
    conditions: pod_conditions,
    list: None,
};

static COLUMNS: [Col; 9] = [
    NAME,
    col(
        "Ready",
        "string",
        "Containers of the pod that are ready to serve traffic, out of all of them.",
    ),
    col(
        "Status",
        "string",
        "Summary of the pod's state, derived from its phase and its containers' states.",
    ),
    col(
        "Restarts",
        "string",
        "Total restarts of the pod's containers and how long ago the latest one happened.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "IP address allocated to the pod (the first entry of status.podIPs).",
    ),
    wide(
        "Node",
        "string",
        "Node the pod is bound to (spec.nodeName); empty until scheduled.",
    ),
    wide(
        "Nominated Node",
        "string",
        "Node the scheduler expects the pod to fit on once preemption completes.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "Readiness gates whose condition is True, out of all gates in spec.readinessGates.",
    ),
];

/// Completed/failed pods are flagged with a row condition, as upstream does.
fn pod_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match str_at(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// Finish time of a container's previous run, if it has one.
fn last_termination(status: &Value) -> Option<DateTime<Utc>> {
    opt_str(status, &["lastState", "terminated", "finishedAt"]).and_then(parse_time)
}

fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn condition_true(pod: &Value, ty: &str) -> bool {
    list_at(pod, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == ty)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

/// Text for a terminated container that gave no reason.
fn exit_text(terminated: &Value) -> String {
    let signal = int_at(terminated, &["signal"]);
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", int_at(terminated, &["exitCode"]))
    }
}

fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = get(pod, &["spec"]).unwrap_or(&Value::Null);
    let status = get(pod, &["status"]).unwrap_or(&Value::Null);
    let phase = str_at(status, &["phase"]);

    let mut reason = match str_at(status, &["reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    for c in list_at(status, &["conditions"]) {
        if str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated" {
            reason = "SchedulingGated".to_string();
        }
    }

    let init_specs = list_at(spec, &["initContainers"]);
    // Sidecars (restartable init containers) count as pod containers.
    let restartable = |container_name: &str| {
        init_specs.iter().any(|c| {
            str_at(c, &["name"]) == container_name && str_at(c, &["restartPolicy"]) == "Always"
        })
    };
    let sidecars = init_specs
        .iter()
        .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
        .count();
    let total = list_at(spec, &["containers"]).len() + sidecars;

    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut last_restart = None;
    let mut sidecar_restarts = 0i64;
    let mut last_sidecar_restart = None;

    let mut initializing = false;
    for (i, cs) in list_at(status, &["initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let count = int_at(cs, &["restartCount"]);
        let finished = last_termination(cs);
        restarts += count;
        last_restart = later(last_restart, finished);
        let is_sidecar = restartable(str_at(cs, &["name"]));
        if is_sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let terminated = get(cs, &["state", "terminated"]).filter(|t| t.is_object());
        let waiting_reason = str_at(cs, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if is_sidecar && bool_at(cs, &["started"]) {
            if bool_at(cs, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = terminated {
            match str_at(t, &["reason"]) {
                "" => format!("Init:{}", exit_text(t)),
                r => format!("Init:{r}"),
            }
        } else if has(cs, &["state", "waiting"])
            && !waiting_reason.is_empty()
            && waiting_reason != "PodInitializing"
        {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || condition_true(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Walk backwards so the first container's state wins, as upstream.
        for cs in list_at(status, &["containerStatuses"]).iter().rev() {
            restarts += int_at(cs, &["restartCount"]);
            last_restart = later(last_restart, last_termination(cs));
            let waiting_reason = str_at(cs, &["state", "waiting", "reason"]);
            let terminated = get(cs, &["state", "terminated"]).filter(|t| t.is_object());
            if has(cs, &["state", "waiting"]) && !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                reason = match str_at(t, &["reason"]) {
                    "" => exit_text(t),
                    r => r.to_string(),
                };
            } else if bool_at(cs, &["ready"]) && has(cs, &["state", "running"]) {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(pod, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    if has(pod, &["metadata", "deletionTimestamp"]) {
        if str_at(status, &["reason"]) == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_string();
        }
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since_time(Some(t), now)),
        _ => restarts.to_string(),
    };

    let ip = list_at(status, &["podIPs"])
        .first()
        .map(|p| str_at(p, &["ip"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| str_at(status, &["podIP"]));
    let none = |v: &str| {
        if v.is_empty() {
            "<none>".to_string()
        } else {
            v.to_string()
        }
    };
    let gates = list_at(spec, &["readinessGates"]);
    let gates_text = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let passing = gates
            .iter()
            .filter(|g| condition_true(pod, str_at(g, &["conditionType"])))
            .count();
        format!("{passing}/{}", gates.len())
    };

    vec![
        s(name(pod)),
        s(format!("{ready}/{total}")),
        s(reason),
        s(restarts_text),
        s(since(super::fields::created(pod), now)),
        s(none(ip)),
        s(none(str_at(spec, &["nodeName"]))),
        s(none(str_at(status, &["nominatedNodeName"]))),
        s(gates_text),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::{ago, cells, now};
    use super::*;

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": spec, "status": status})
    }

    fn two_containers() -> Value {
        json!({"containers": [{"name": "a"}, {"name": "b"}]})
    }

    fn one_container() -> Value {
        json!({"containers": [{"name": "a"}]})
    }

    /// The five default cells (Name, Ready, Status, Restarts, Age).
    fn short(p: &Value) -> Vec<Value> {
        cells(&printers::POD, p)[..5].to_vec()
    }

    #[test]
    fn running_pod_shows_ready_containers_and_age() {
        let mut p = pod(
            json!({"containers": [{"name": "nginx"}], "nodeName": "node1"}),
            json!({"phase": "Running", "podIP": "10.42.0.9", "podIPs": [{"ip": "10.42.0.9"}],
                   "containerStatuses": [{"name": "nginx", "ready": true, "restartCount": 0,
                                          "state": {"running": {"startedAt": ago(300)}}}]}),
        );
        p["metadata"]["creationTimestamp"] = json!(ago(300));
        assert_eq!(
            cells(&printers::POD, &p),
            json!([
                "p",
                "1/1",
                "Running",
                "0",
                "5m",
                "10.42.0.9",
                "node1",
                "<none>",
                "<none>"
            ])
            .as_array()
            .cloned()
            .unwrap_or_default()
        );
    }

    #[test]
    fn phase_is_shown_when_containers_are_not_all_running() {
        let p = pod(
            two_containers(),
            json!({"phase": "podPhase", "containerStatuses": [
                {"ready": true, "restartCount": 3, "state": {"running": {}}},
                {"restartCount": 3}]}),
        );
        assert_eq!(
            short(&p),
            vec![s("p"), s("1/2"), s("podPhase"), s("6"), s("<unknown>")]
        );
    }

    #[test]
    fn container_waiting_reason_overrides_phase() {
        let p = pod(
            two_containers(),
            json!({"phase": "Pending", "containerStatuses": [
                {"ready": true, "restartCount": 3, "state": {"running": {}}},
                {"restartCount": 3, "state": {"waiting": {"reason": "ContainerCreating"}}}]}),
        );
        assert_eq!(short(&p)[2], s("ContainerCreating"));
    }

    #[test]
    fn first_container_state_wins_over_later_ones() {
        let p = pod(
            two_containers(),
            json!({"phase": "Running", "containerStatuses": [
                {"restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
                {"restartCount": 3, "state": {"terminated": {"reason": "Error", "exitCode": 1}}}]}),
        );
        assert_eq!(
            short(&p),
            vec![
                s("p"),
                s("0/2"),
                s("CrashLoopBackOff"),
                s("6"),
                s("<unknown>")
            ]
        );
    }

    #[test]
    fn pod_reason_overrides_phase() {
        let p = pod(
            two_containers(),
            json!({"phase": "Failed", "reason": "Evicted"}),
        );
        assert_eq!(short(&p)[2], s("Evicted"));
    }

    #[test]
    fn completed_sibling_of_running_container_reads_running_or_not_ready() {
        let statuses = json!([
            {"ready": true, "restartCount": 3, "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
            {"ready": true, "restartCount": 3, "state": {"running": {}}}]);
        let not_ready = pod(
            two_containers(),
            json!({"phase": "Running", "containerStatuses": statuses}),
        );
        assert_eq!(
            short(&not_ready)[1..3].to_vec(),
            vec![s("1/2"), s("NotReady")]
        );
        let ready = pod(
            two_containers(),
            json!({"phase": "Running", "containerStatuses": statuses,
                   "conditions": [{"type": "Ready", "status": "True"}]}),
        );
        assert_eq!(short(&ready)[2], s("Running"));
    }

    #[test]
    fn restarting_init_container_shows_progress_and_last_restart() {
        let p = pod(
            json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Pending",
                "initContainerStatuses": [
                    {"name": "i1", "restartCount": 2, "state": {"terminated": {"exitCode": 0}},
                     "lastState": {"terminated": {"finishedAt": ago(120)}}},
                    {"name": "i2", "restartCount": 3, "state": {"running": {}},
                     "lastState": {"terminated": {"finishedAt": ago(10)}}}],
                "containerStatuses": [{"name": "a", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        assert_eq!(
            short(&p),
            vec![
                s("p"),
                s("0/1"),
                s("Init:1/2"),
                s("5 (10s ago)"),
                s("<unknown>")
            ]
        );
    }

    #[test]
    fn failing_init_container_reports_its_reason() {
        let p = pod(
            json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "restartCount": 1, "state": {"terminated": {"exitCode": 2}}}]}),
        );
        assert_eq!(short(&p)[2], s("Init:ExitCode:2"));
        let p = pod(
            json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"waiting": {"reason": "ErrImagePull"}}}]}),
        );
        assert_eq!(short(&p)[2], s("Init:ErrImagePull"));
        let p = pod(
            json!({"initContainers": [{"name": "i1"}], "containers": [{"name": "a"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        assert_eq!(short(&p)[2], s("Init:0/1"));
    }

    #[test]
    fn started_sidecars_count_as_ready_containers() {
        let p = pod(
            json!({"initContainers": [
                    {"name": "s1", "restartPolicy": "Always"},
                    {"name": "s2", "restartPolicy": "Always"}],
                   "containers": [{"name": "a"}]}),
            json!({"phase": "Running",
                "conditions": [{"type": "Initialized", "status": "True"}],
                "initContainerStatuses": [
                    {"name": "s1", "restartCount": 3, "started": true, "state": {"running": {}},
                     "lastState": {"terminated": {"finishedAt": ago(10)}}},
                    {"name": "s2", "started": true, "state": {"running": {}}}],
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 4, "state": {"running": {}},
                     "lastState": {"terminated": {"finishedAt": ago(20)}}}]}),
        );
        assert_eq!(
            short(&p),
            vec![
                s("p"),
                s("1/3"),
                s("Running"),
                s("7 (10s ago)"),
                s("<unknown>")
            ]
        );
    }

    #[test]
    fn restart_suffix_uses_the_latest_termination() {
        let p = pod(
            two_containers(),
            json!({"phase": "Running", "containerStatuses": [
                {"ready": true, "restartCount": 6, "state": {"running": {}},
                 "lastState": {"terminated": {"finishedAt": ago(5 * 86400)}}},
                {"ready": true, "restartCount": 3, "state": {"running": {}},
                 "lastState": {"terminated": {"finishedAt": ago(20 * 86400)}}}]}),
        );
        assert_eq!(
            short(&p)[1..4].to_vec(),
            vec![s("2/2"), s("Running"), s("9 (5d ago)")]
        );
    }

    #[test]
    fn scheduling_gated_pods_say_so() {
        let p = pod(
            two_containers(),
            json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(
            short(&p),
            vec![
                s("p"),
                s("0/2"),
                s("SchedulingGated"),
                s("0"),
                s("<unknown>")
            ]
        );
    }

    #[test]
    fn deleted_running_pod_is_terminating_but_finished_pod_keeps_status() {
        let mut running = pod(
            one_container(),
            json!({"phase": "Running", "containerStatuses": [{"state": {"running": {}}}]}),
        );
        running["metadata"]["deletionTimestamp"] = json!(ago(10));
        assert_eq!(short(&running)[2], s("Terminating"));

        let mut done = pod(
            one_container(),
            json!({"phase": "Succeeded", "containerStatuses": [
                {"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]}),
        );
        done["metadata"]["deletionTimestamp"] = json!(ago(10));
        assert_eq!(short(&done)[2], s("Completed"));

        let mut lost = pod(
            one_container(),
            json!({"phase": "Running", "reason": "NodeLost"}),
        );
        lost["metadata"]["deletionTimestamp"] = json!(ago(10));
        assert_eq!(short(&lost)[2], s("Unknown"));
    }

    #[test]
    fn finished_pods_carry_a_completed_row_condition() {
        let p = pod(
            one_container(),
            json!({"phase": "Failed", "containerStatuses": [
                {"state": {"terminated": {"reason": "Error", "exitCode": 1}}}]}),
        );
        let row = super::super::Printer::Builtin(&printers::POD).row(&p, now());
        assert_eq!(row["cells"][2], "Error");
        assert_eq!(row["conditions"][0]["type"], "Completed");
        assert_eq!(row["conditions"][0]["reason"], "Failed");
        let running = pod(one_container(), json!({"phase": "Running"}));
        assert!(super::super::Printer::Builtin(&printers::POD)
            .row(&running, now())
            .get("conditions")
            .is_none());
    }

    #[test]
    fn wide_cells_show_ip_node_nomination_and_gates() {
        let p = pod(
            json!({"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "test1",
                   "readinessGates": [{"conditionType": "c1"}, {"conditionType": "c2"}, {"conditionType": "c3"}]}),
            json!({"phase": "podPhase", "podIPs": [{"ip": "1.1.1.1"}, {"ip": "2001:db8::"}],
                   "nominatedNodeName": "node1",
                   "conditions": [{"type": "c1", "status": "False"}, {"type": "c2", "status": "True"}],
                   "containerStatuses": [{"ready": true, "restartCount": 3, "state": {"running": {}}},
                                         {"restartCount": 3}]}),
        );
        assert_eq!(
            cells(&printers::POD, &p)[5..].to_vec(),
            vec![s("1.1.1.1"), s("test1"), s("node1"), s("1/3")]
        );
    }
}
