//! Pod status as upstream's kubelet reports it, computed from the runtime's view of the
//! pod's containers, the worker's reasons (CrashLoopBackOff, ErrImagePull, ...) and the
//! probe results: phase (upstream's `getPhase`), the five conditions with upstream's
//! reasons and messages, container statuses with state/lastState, restart counts,
//! readiness, imageID, `skiff://` container ids, addresses, start time and QoS class.
//!
//! Invariant: pure: the same observations give the same status, and lastTransitionTime
//! only moves when a condition's status does, so an unchanged pod writes nothing.

use crate::runtime::containers::{ContainerState, Status};
use k8s_openapi::api::core::v1::{
    Container, ContainerState as KState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::HashMap;

/// The runtime's instances of one pod's containers, by container name, newest first.
pub type RuntimePod = HashMap<String, Vec<ContainerState>>;

/// Probe verdicts per runtime container id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeState {
    pub ready: bool,
    pub started: bool,
}

/// Everything a status is computed from.
pub struct Observed<'a> {
    pub pod: &'a Pod,
    pub containers: &'a RuntimePod,
    /// Why a container is waiting to be (re)started: (reason, message).
    pub waiting: &'a HashMap<String, (String, String)>,
    pub probes: &'a HashMap<String, ProbeState>,
    /// image reference → imageID
    pub image_refs: &'a HashMap<String, String>,
    pub sandbox_ready: bool,
    pub pod_ips: Vec<String>,
    pub host_ips: Vec<String>,
    pub start_time: Option<Time>,
    /// Set when the kubelet decided the pod is over (reason, message), e.g.
    /// `DeadlineExceeded`.
    pub failed: Option<(String, String)>,
    /// The kubelet evicted the pod: the message of its `DisruptionTarget` condition
    /// (reason TerminationByKubelet).
    pub disruption: Option<String>,
    /// The pod is terminal: containers will not be restarted.
    pub terminal: bool,
    /// The status last written (or the pod's), for lastTransitionTime.
    pub old: Option<&'a PodStatus>,
    /// Termination messages of exited containers, by runtime id.
    pub messages: &'a HashMap<String, String>,
    /// The resources each container runs with (None: not known yet).
    pub allocation: Option<&'a super::resize::Allocation>,
    /// A resize that is pending or failed: (condition type, reason, message).
    pub resize: Option<&'a super::resize::Unfinished>,
}

pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// Whether an exited container (exit `code`) is to be started again.
pub fn should_restart(pod: &Pod, c: &Container, init: bool, code: i32) -> bool {
    if init && is_sidecar(c) {
        return true;
    }
    match restart_policy(pod) {
        "Never" => false,
        "OnFailure" => code != 0,
        // An init container that succeeded is done even under Always.
        _ if init => code != 0,
        _ => true,
    }
}

fn time(s: &Option<String>) -> Option<Time> {
    s.as_ref()
        .and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok())
        .map(Time)
}

pub fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// How long ago `t` was (zero if in the future).
pub fn since(t: &Time) -> std::time::Duration {
    let d = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
    std::time::Duration::try_from(d).unwrap_or_default()
}

pub fn terminated(st: &ContainerState, message: Option<&String>) -> ContainerStateTerminated {
    let code = st
        .exit_code
        .unwrap_or(if st.status == Status::Unknown { 255 } else { 0 });
    ContainerStateTerminated {
        exit_code: code,
        reason: Some(
            match (st.oom_killed, code, st.status) {
                (true, _, _) => "OOMKilled",
                (_, _, Status::Unknown) => "Unknown",
                (_, 0, _) if st.error.is_none() => "Completed",
                _ if st.error.is_some() => "StartError",
                _ => "Error",
            }
            .into(),
        ),
        message: message
            .filter(|m| !m.is_empty())
            .cloned()
            .or_else(|| st.error.clone()),
        started_at: time(&st.started_at),
        finished_at: time(&st.finished_at),
        container_id: Some(format!("skiff://{}", st.id)),
        signal: None,
    }
}

fn is_exited(st: &ContainerState) -> bool {
    matches!(st.status, Status::Stopped | Status::Unknown)
}

fn container_status(
    o: &Observed<'_>,
    c: &Container,
    init: bool,
    pod_has_init: bool,
) -> ContainerStatus {
    let instances = o.containers.get(&c.name).map(Vec::as_slice).unwrap_or(&[]);
    let latest = instances.first();
    let restart_count = latest
        .and_then(|s| s.labels.get(super::labels::RESTART_COUNT))
        .and_then(|r| r.parse::<i32>().ok())
        .unwrap_or(0);
    let probe = latest
        .and_then(|s| o.probes.get(&s.id))
        .copied()
        .unwrap_or_default();
    let mut last = instances.get(1).map(|s| KState {
        terminated: Some(terminated(s, o.messages.get(&s.id))),
        ..Default::default()
    });
    let mut state: Option<KState>;
    let mut ready = false;
    let mut started = Some(false);
    match latest {
        None => {
            state = Some(ContainerStateWaiting {
                reason: Some(
                    // Upstream's default for a container not made yet, init ones too.
                    if pod_has_init {
                        "PodInitializing"
                    } else {
                        "ContainerCreating"
                    }
                    .into(),
                ),
                message: None,
            })
            .map(|w| KState {
                waiting: Some(w),
                ..Default::default()
            })
        }
        Some(st) if st.status == Status::Created => {
            state = Some(KState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some("ContainerCreating".into()),
                    message: None,
                }),
                ..Default::default()
            })
        }
        Some(st) if st.status == Status::Running => {
            state = Some(KState {
                running: Some(ContainerStateRunning {
                    started_at: time(&st.started_at),
                }),
                ..Default::default()
            });
            started = Some(probe.started);
            // A regular init container is ready only once it has completed.
            ready = (!init || is_sidecar(c)) && probe.started && probe.ready;
        }
        Some(st) => {
            let t = terminated(st, o.messages.get(&st.id));
            // A regular init container that completed counts as ready (upstream).
            ready = init && !is_sidecar(c) && t.exit_code == 0;
            state = Some(KState {
                terminated: Some(t),
                ..Default::default()
            });
        }
    }
    if let Some((reason, message)) = o.waiting.get(&c.name) {
        let restartable = match latest {
            None => true,
            Some(st) if is_exited(st) => {
                !o.terminal && should_restart(o.pod, c, init, st.exit_code.unwrap_or(0))
            }
            _ => false,
        };
        if restartable {
            if let Some(s) = state.take().filter(|s| s.terminated.is_some()) {
                last = Some(s);
            }
            state = Some(KState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: (!message.is_empty()).then(|| message.clone()),
                }),
                ..Default::default()
            });
            ready = false;
        }
    }
    let image = c.image.clone().unwrap_or_default();
    // Every container the runtime knows reports the resources it was given (a pod's
    // resize is refused while its running containers report none).
    let allocated = latest.map(|_| {
        o.allocation
            .and_then(|a| a.get(&c.name))
            .cloned()
            .unwrap_or_default()
    });
    ContainerStatus {
        allocated_resources: allocated.as_ref().and_then(|r| r.requests.clone()),
        resources: allocated,
        name: c.name.clone(),
        state,
        last_state: Some(last.unwrap_or_default()),
        ready,
        restart_count,
        image_id: latest
            .and_then(|s| {
                o.image_refs
                    .get(&s.image)
                    .or_else(|| o.image_refs.get(&image))
            })
            .cloned()
            .unwrap_or_default(),
        image,
        container_id: latest.map(|s| format!("skiff://{}", s.id)),
        started,
        ..Default::default()
    }
}

fn cond(
    o: &Observed<'_>,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let old = o
        .old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    let status = if ok { "True" } else { "False" };
    let last_transition_time = match old {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => Some(now()),
    };
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(String::from),
        message: message.filter(|m| !m.is_empty()),
        last_transition_time,
        last_probe_time: None,
        observed_generation: o.pod.metadata.generation,
    }
}

/// Upstream's `getPhase` (ContainerRestartRules off, as in v1.35's defaults).
pub fn phase(
    o: &Observed<'_>,
    init: &[ContainerStatus],
    regular: &[ContainerStatus],
    initialized: bool,
) -> &'static str {
    let spec = o.pod.spec.as_ref();
    let init_specs = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[]);
    let (mut pending_init, mut pending_sidecar, mut failed_init) = (0, 0, 0);
    let (mut running, mut waiting, mut stopped, mut succeeded, mut unknown) = (0, 0, 0, 0, 0);
    for (c, s) in init_specs.iter().zip(init) {
        let st = s.state.clone().unwrap_or_default();
        let last = s.last_state.as_ref().and_then(|l| l.terminated.as_ref());
        if is_sidecar(c) {
            if st.running.is_some() {
                if s.started != Some(true) {
                    pending_sidecar += 1;
                }
                running += 1;
            } else if st.waiting.is_some() && last.is_none() {
                pending_sidecar += 1;
                waiting += 1;
            }
            continue;
        }
        if st.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &st.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if let Some(l) = last {
            if l.exit_code != 0 {
                failed_init += 1;
            }
        } else {
            pending_init += 1;
        }
    }
    for s in regular {
        let st = s.state.clone().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if st.waiting.is_some() {
            if s.last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .is_some()
            {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    let policy = restart_policy(o.pod);
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecar > 0 && !initialized) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if o.terminal {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

pub fn generate(o: &Observed<'_>) -> PodStatus {
    let spec = o.pod.spec.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let has_init = !init_specs.is_empty();
    let any_regular_created = spec
        .containers
        .iter()
        .any(|c| o.containers.contains_key(&c.name));
    let init: Vec<ContainerStatus> = init_specs
        .iter()
        .map(|c| container_status(o, c, true, has_init))
        .collect();
    let initialized_now = init_specs.iter().zip(&init).all(|(c, s)| {
        if is_sidecar(c) {
            s.started == Some(true)
        } else {
            s.ready
        }
    });
    let regular: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(o, c, false, has_init))
        .collect();
    // Ephemeral containers: reported like the others but never ready, never "started",
    // sorted by name (upstream's status manager), and without a say in phase or readiness.
    let mut ephemeral: Vec<ContainerStatus> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|ec| {
            let c = super::container::from_ephemeral(ec);
            ContainerStatus {
                ready: false,
                started: None,
                ..container_status(o, &c, false, has_init)
            }
        })
        .collect();
    ephemeral.sort_by(|a, b| a.name.cmp(&b.name));
    let initialized = initialized_now || any_regular_created;
    let mut phase = phase(o, &init, &regular, initialized).to_string();
    let (mut reason, mut message) = (None, None);
    if let Some((r, m)) = &o.failed {
        phase = "Failed".into();
        reason = Some(r.clone());
        message = Some(m.clone());
    }
    let terminal_phase = phase == "Succeeded" || phase == "Failed";

    let mut conditions = Vec::new();
    conditions.push(cond(
        o,
        "PodReadyToStartContainers",
        o.sandbox_ready,
        None,
        None,
    ));
    let incomplete: Vec<&str> = init_specs
        .iter()
        .zip(&init)
        .filter(|(c, s)| {
            if is_sidecar(c) {
                s.started != Some(true)
            } else {
                !s.ready
            }
        })
        .map(|(c, _)| c.name.as_str())
        .collect();
    conditions.push(if phase == "Succeeded" {
        cond(o, "Initialized", true, Some("PodCompleted"), None)
    } else if initialized || incomplete.is_empty() {
        cond(o, "Initialized", true, None, None)
    } else {
        cond(
            o,
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                incomplete.join(" ")
            )),
        )
    });
    let unready: Vec<&str> = init_specs
        .iter()
        .zip(&init)
        .filter(|(c, s)| is_sidecar(c) && !s.ready)
        .map(|(c, _)| c.name.as_str())
        .chain(regular.iter().filter(|s| !s.ready).map(|s| s.name.as_str()))
        .collect();
    let (cr_ok, cr_reason, cr_msg) = if terminal_phase {
        (
            false,
            Some(if phase == "Succeeded" {
                "PodCompleted"
            } else {
                "PodFailed"
            }),
            None,
        )
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    // Ready: ContainersReady, then the readiness gates.
    let mut ready = (cr_ok, cr_reason, cr_msg.clone());
    if cr_ok {
        let existing = o
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let msgs: Vec<String> = spec
            .readiness_gates
            .iter()
            .flatten()
            .filter_map(
                |g| match existing.iter().find(|c| c.type_ == g.condition_type) {
                    None => Some(format!(
                        "corresponding condition of pod readiness gate \"{}\" does not exist.",
                        g.condition_type
                    )),
                    Some(c) if c.status != "True" => Some(format!(
                        "the status of pod readiness gate \"{}\" is not \"True\", but {}",
                        g.condition_type, c.status
                    )),
                    _ => None,
                },
            )
            .collect();
        if !msgs.is_empty() {
            ready = (false, Some("ReadinessGatesNotReady"), Some(msgs.join(", ")));
        }
    }
    conditions.push(cond(o, "Ready", ready.0, ready.1, ready.2));
    conditions.push(cond(o, "ContainersReady", cr_ok, cr_reason, cr_msg));
    conditions.push(cond(o, "PodScheduled", true, None, None));
    // An eviction by this kubelet is a disruption it owns (upstream's TerminationByKubelet).
    let evicted = o.disruption.as_ref().filter(|_| o.failed.is_some());
    if let Some(m) = evicted {
        let reason = Some("TerminationByKubelet");
        conditions.push(cond(o, "DisruptionTarget", true, reason, Some(m.clone())));
    }
    if let Some((type_, reason, message)) = o.resize.filter(|_| !terminal_phase) {
        conditions.push(cond(o, type_, true, Some(reason), Some(message.clone())));
    }
    // Conditions owned by others (readiness gates, DisruptionTarget) are kept as they are.
    let mut ours = vec![
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
        super::resize::PENDING,
        super::resize::IN_PROGRESS,
    ];
    if evicted.is_some() {
        ours.push("DisruptionTarget");
    }
    for c in o
        .pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
    {
        if !ours.contains(&c.type_.as_str()) {
            conditions.push(c);
        }
    }
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        reason,
        message,
        host_ip: o.host_ips.first().cloned(),
        host_ips: (!o.host_ips.is_empty()).then(|| {
            o.host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        pod_ip: o.pod_ips.first().cloned(),
        pod_ips: (!o.pod_ips.is_empty()).then(|| {
            o.pod_ips
                .iter()
                .map(|ip| PodIP { ip: ip.clone() })
                .collect()
        }),
        start_time: o.start_time.clone(),
        qos_class: Some(super::resources::qos_class(o.pod).into()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(regular),
        ephemeral_container_statuses: (!ephemeral.is_empty()).then_some(ephemeral),
        observed_generation: o.pod.metadata.generation,
        ..Default::default()
    }
}
