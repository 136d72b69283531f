//! Pod worker state machines on the fake runtime, fake network and fake API (no root,
//! paused clock).

use super::api::{PodApi, Token};
use super::env::{EnvError, Objects};
use super::fake_cri::{Behavior, Call, FakeCri};
use super::worker::Worker;
use super::*;
use crate::network::{NetworkError, Sandbox, SandboxRequest};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ExecAction, Pod, PodSpec, PodStatus, Probe, Secret,
};
use parking_lot::Mutex;
use std::time::Duration;

/// The harness node: room for the pods the tests admit (4 cpus, 8 GiB).
const NODE_FIELDS: downward::Fields = downward::Fields {
    host_ips: Vec::new(),
    pod_ips: Vec::new(),
    node_cpu_milli: 4000,
    node_memory_bytes: 8 << 30,
    node_ephemeral_bytes: 0,
};

#[derive(Default)]
struct FakeNet(Mutex<Vec<String>>);
impl PodNetwork for FakeNet {
    fn setup(&self, req: SandboxRequest) -> BoxFuture<'_, Result<Sandbox, NetworkError>> {
        self.0.lock().push(req.id.clone());
        Box::pin(async move {
            Ok(Sandbox {
                netns: Some(format!("/run/netns/{}", req.id).into()),
                ip: Some("10.42.0.7".parse().unwrap()),
                hosts_file: "/tmp/hosts".into(),
                resolv_conf: "/tmp/resolv".into(),
            })
        })
    }
    fn teardown(&self, pod_id: &str) -> BoxFuture<'_, Result<(), NetworkError>> {
        self.0.lock().retain(|p| p != pod_id);
        Box::pin(async { Ok(()) })
    }
    fn pods(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

#[derive(Default)]
struct FakeApi {
    statuses: Mutex<Vec<PodStatus>>,
    deleted: Mutex<Vec<String>>,
}
impl Objects for FakeApi {
    fn config_map<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, EnvError>> {
        Box::pin(async { Ok(None) })
    }
    fn secret<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, EnvError>> {
        Box::pin(async { Ok(None) })
    }
}
impl PodApi for FakeApi {
    fn patch_status<'a>(
        &'a self,
        _: &'a Pod,
        s: &'a PodStatus,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.statuses.lock().push(s.clone());
        Box::pin(async { Ok(()) })
    }
    fn delete_pod<'a>(&'a self, p: &'a Pod) -> BoxFuture<'a, Result<(), String>> {
        self.deleted
            .lock()
            .push(p.metadata.name.clone().unwrap_or_default());
        Box::pin(async { Ok(()) })
    }
    fn request_token<'a>(
        &'a self,
        _: &'a Pod,
        _: &'a str,
        _: Option<String>,
        _: i64,
    ) -> BoxFuture<'a, Result<Token, String>> {
        Box::pin(async {
            Ok(Token {
                token: "t".into(),
                expires: chrono::Utc::now() + chrono::Duration::hours(1),
            })
        })
    }
}

struct Harness {
    cri: FakeCri,
    api: Arc<FakeApi>,
    ctx: Arc<Context>,
    tx: watch::Sender<Option<Arc<Pod>>>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

fn pod(containers: Vec<Container>, init: Vec<Container>, policy: &str) -> Pod {
    let mut p = Pod {
        spec: Some(PodSpec {
            containers,
            init_containers: (!init.is_empty()).then_some(init),
            restart_policy: Some(policy.into()),
            node_name: Some("n1".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    p.metadata.name = Some("web".into());
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some("uid1".into());
    p
}

fn c(name: &str) -> Container {
    Container {
        name: name.into(),
        image: Some("busybox:1".into()),
        ..Default::default()
    }
}

impl Harness {
    fn start(cri: FakeCri, p: Pod) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let api = Arc::new(FakeApi::default());
        let (recorder, _rx) = events::Recorder::channel();
        std::mem::forget(_rx);
        let ctx = Arc::new(Context {
            cri: Arc::new(cri.clone()),
            network: Arc::new(FakeNet::default()),
            api: api.clone(),
            recorder,
            pod_log_dir: dir.path().join("logs"),
            root_dir: dir.path().join("pods"),
            host_ips: vec!["192.168.1.10".into()],
            node_fields: NODE_FIELDS,
            services: Default::default(),
            evictions: Default::default(),
            allocations: Default::default(),
            pressure: Default::default(),
            node: Default::default(),
            image_gc: None,
        });
        let (tx, shutdown) = (watch::channel(None).0, CancellationToken::new());
        let h = Harness {
            cri,
            api,
            ctx,
            tx,
            shutdown,
            _dir: dir,
        };
        h.spawn(p);
        h
    }

    fn spawn(&self, p: Pod) {
        let p = Arc::new(p);
        self.tx.send_replace(Some(p.clone()));
        let w = Worker::new(self.ctx.clone(), "uid1".into(), self.tx.subscribe(), p);
        tokio::spawn(w.run(self.shutdown.child_token()));
    }

    fn last(&self) -> PodStatus {
        self.api
            .statuses
            .lock()
            .last()
            .cloned()
            .expect("a status was written")
    }

    fn creates(&self) -> usize {
        self.cri
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Create(_)))
            .count()
    }
}

async fn wait(d: u64) {
    tokio::time::sleep(Duration::from_secs(d)).await;
}

fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a k8s_openapi::api::core::v1::PodCondition {
    s.conditions
        .as_ref()
        .unwrap()
        .iter()
        .find(|c| c.type_ == t)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_pod_runs_and_reports_upstream_status() {
    let h = Harness::start(
        FakeCri::new().with_image("busybox:1"),
        pod(vec![c("app")], vec![], "Always"),
    );
    wait(1).await;
    let s = h.last();
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.7"));
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert!(cs.ready && cs.started == Some(true) && cs.restart_count == 0);
    assert!(cs
        .container_id
        .as_deref()
        .unwrap()
        .starts_with("skiff://k8s-"));
    assert!(cs.state.as_ref().unwrap().running.is_some());
    for t in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ] {
        assert_eq!(cond(&s, t).status, "True", "{t}");
    }
    let n = h.api.statuses.lock().len();
    wait(60).await;
    assert_eq!(
        h.api.statuses.lock().len(),
        n,
        "an unchanged pod writes no status"
    );
}

#[tokio::test(start_paused = true)]
async fn a_crashing_container_restarts_with_doubling_backoff() {
    let cri = FakeCri::new().with_image("busybox:1");
    cri.script(
        "app",
        vec![Behavior::Exit {
            code: 1,
            after: Duration::from_secs(1),
        }],
    );
    let h = Harness::start(cri, pod(vec![c("app")], vec![], "Always"));
    // As upstream: the first restart is immediate, then 10s, 20s, ...
    wait(3).await;
    assert_eq!(h.creates(), 2);
    let s = h.last();
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    let w = cs
        .state
        .as_ref()
        .unwrap()
        .waiting
        .as_ref()
        .expect("waiting");
    assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(
        w.message.as_deref(),
        Some("back-off 10s restarting failed container=app pod=web_default(uid1)")
    );
    let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(
        cond(&s, "Ready").reason.as_deref(),
        Some("ContainersNotReady")
    );
    assert_eq!(
        cond(&s, "Ready").message.as_deref(),
        Some("containers with unready status: [app]")
    );
    assert_eq!(cs.restart_count, 1);
    wait(8).await; // t=11
    assert_eq!(h.creates(), 2, "still backing off");
    wait(2).await; // t=13
    assert_eq!(h.creates(), 3, "restarted 10s after the second exit");
    wait(1).await; // t=14
    let w = h.last().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(
        w.message.as_deref(),
        Some("back-off 20s restarting failed container=app pod=web_default(uid1)")
    );
    wait(17).await; // t=31
    assert_eq!(h.creates(), 3);
    wait(3).await; // t=34
    assert_eq!(h.creates(), 4);
    assert_eq!(h.last().container_statuses.unwrap()[0].restart_count, 3);
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_in_order_and_a_failure_under_never_fails_the_pod() {
    let cri = FakeCri::new().with_image("busybox:1");
    cri.script(
        "one",
        vec![Behavior::Exit {
            code: 0,
            after: Duration::from_secs(1),
        }],
    );
    cri.script(
        "two",
        vec![Behavior::Exit {
            code: 3,
            after: Duration::from_secs(1),
        }],
    );
    let h = Harness::start(cri, pod(vec![c("app")], vec![c("one"), c("two")], "Never"));
    wait(0).await;
    tokio::task::yield_now().await;
    let s = h.last();
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(
        cond(&s, "Initialized").message.as_deref(),
        Some("containers with incomplete status: [one two]")
    );
    assert_eq!(
        s.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap()
            .reason
            .as_deref(),
        Some("PodInitializing")
    );
    // An init container not made yet waits with the same reason (upstream's default for
    // a pod with init containers; conformance watches for it).
    let waiting = |st: &k8s_openapi::api::core::v1::ContainerStatus| {
        st.state.clone().unwrap().waiting.and_then(|w| w.reason)
    };
    assert_eq!(
        waiting(&s.init_container_statuses.clone().unwrap()[1]).as_deref(),
        Some("PodInitializing")
    );
    wait(5).await;
    let s = h.last();
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let init = s.init_container_statuses.unwrap();
    assert_eq!(
        init[1].state.clone().unwrap().terminated.unwrap().exit_code,
        3
    );
    assert_eq!(h.creates(), 2, "the app container never starts");
}

#[tokio::test(start_paused = true)]
async fn a_sidecar_keeps_running_and_the_app_starts_after_it() {
    let cri = FakeCri::new().with_image("busybox:1");
    let mut side = c("side");
    side.restart_policy = Some("Always".into());
    let h = Harness::start(cri, pod(vec![c("app")], vec![side], "Always"));
    wait(1).await;
    let s = h.last();
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let init = s.init_container_statuses.unwrap();
    assert!(init[0].state.clone().unwrap().running.is_some() && init[0].ready);
    assert!(s.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .running
        .is_some());
}

#[tokio::test(start_paused = true)]
async fn a_failing_liveness_probe_restarts_the_container() {
    let cri = FakeCri::new().with_image("busybox:1");
    cri.script_exec("app", vec![0, 1, 1, 1, 0]);
    let mut app = c("app");
    app.liveness_probe = Some(Probe {
        exec: Some(ExecAction {
            command: Some(vec!["true".into()]),
        }),
        period_seconds: Some(1),
        failure_threshold: Some(3),
        ..Default::default()
    });
    let h = Harness::start(cri, pod(vec![app], vec![], "Always"));
    wait(6).await;
    assert!(h.cri.calls().iter().any(|c| matches!(c, Call::Stop(..))));
    wait(15).await;
    let s = h.last();
    let cs = &s.container_statuses.as_ref().unwrap()[0];
    assert_eq!(cs.restart_count, 1);
    assert!(cs.state.as_ref().unwrap().running.is_some());
}

#[tokio::test(start_paused = true)]
async fn graceful_deletion_waits_the_grace_period_then_deletes_the_pod() {
    let cri = FakeCri::new().with_image("busybox:1");
    cri.script("app", vec![Behavior::IgnoreStop]);
    let mut p = pod(vec![c("app")], vec![], "Always");
    let h = Harness::start(cri, p.clone());
    wait(1).await;
    assert!(h.ctx.allocations.contains("uid1"), "admitted");
    p.metadata.deletion_timestamp = Some(status::now());
    p.metadata.deletion_grace_period_seconds = Some(5);
    h.tx.send_replace(Some(Arc::new(p)));
    wait(3).await;
    assert!(
        h.api.deleted.lock().is_empty(),
        "still within the grace period"
    );
    assert!(
        h.ctx.allocations.contains("uid1"),
        "a terminating pod holds its place until its containers stop"
    );
    wait(3).await;
    assert_eq!(*h.api.deleted.lock(), ["web"]);
    // Stopped, though its object is still there: new pods are admitted without it.
    assert!(!h.ctx.allocations.contains("uid1"));
    assert!(h.cri.calls().contains(&Call::Stop(
        h.cri.configs()[0].id.clone(),
        Duration::from_secs(5)
    )));
    let cs = h.last().container_statuses.unwrap();
    assert_eq!(
        cs[0].state.clone().unwrap().terminated.unwrap().exit_code,
        137
    );
    // The object goes: the worker removes the containers.
    h.tx.send_replace(None);
    wait(1).await;
    assert!(h.cri.configs().is_empty());
}

/// A pod whose container did not stop (the runtime failed) still uses what it held: it
/// keeps its requests, host ports and address, and its object, until a later stop works.
#[tokio::test(start_paused = true)]
async fn a_pod_whose_stop_failed_keeps_its_place_until_a_stop_works() {
    let cri = FakeCri::new().with_image("busybox:1");
    let mut p = pod(vec![c("app")], vec![], "Always");
    let h = Harness::start(cri, p.clone());
    wait(1).await;
    assert_eq!(h.ctx.network.pods(), ["uid1"]);
    h.cri.fail_stops(true);
    p.metadata.deletion_timestamp = Some(status::now());
    p.metadata.deletion_grace_period_seconds = Some(2);
    h.tx.send_replace(Some(Arc::new(p)));
    wait(5).await;
    let stops = |h: &Harness| {
        h.cri
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Stop(..)))
            .count()
    };
    assert!(stops(&h) >= 2, "stopped again after a failure");
    assert!(h.api.deleted.lock().is_empty(), "the object stays");
    assert!(h.ctx.allocations.contains("uid1"), "it holds its place");
    assert_eq!(h.ctx.network.pods(), ["uid1"], "and its network");
    h.cri.fail_stops(false);
    wait(2).await;
    assert_eq!(*h.api.deleted.lock(), ["web"]);
    assert!(!h.ctx.allocations.contains("uid1"));
    assert!(h.ctx.network.pods().is_empty());
    let s = h.last();
    assert_eq!(
        s.pod_ip.as_deref(),
        Some("10.42.0.7"),
        "the status keeps the address"
    );
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
}

/// A finished pod gives back its address, host ports and image volumes as soon as its
/// containers are done, long before its object is deleted; its status keeps its address.
#[tokio::test(start_paused = true)]
async fn a_finished_pod_gives_back_its_network_and_image_volumes() {
    let cri = FakeCri::new().with_image("busybox:1").with_image("tools:1");
    cri.script(
        "app",
        vec![Behavior::Exit {
            code: 0,
            after: Duration::from_secs(2),
        }],
    );
    let mut p = pod(vec![c("app")], vec![], "Never");
    p.spec.as_mut().unwrap().volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
        name: "tools".into(),
        image: Some(k8s_openapi::api::core::v1::ImageVolumeSource {
            reference: Some("tools:1".into()),
            pull_policy: Some("IfNotPresent".into()),
        }),
        ..Default::default()
    }]);
    let h = Harness::start(cri, p.clone());
    wait(1).await;
    assert_eq!(h.ctx.network.pods(), ["uid1"]);
    let mount = h.ctx.root_dir.join("uid1");
    let mount = super::volumes::image_volume_dir(&mount, "tools");
    assert!(mount.is_dir(), "the image volume is mounted");
    wait(2).await;
    let done = h.last();
    assert_eq!(done.phase.as_deref(), Some("Succeeded"));
    // The API now shows it terminal (the fake API does not echo statuses back).
    p.status = Some(done);
    h.tx.send_replace(Some(Arc::new(p)));
    wait(1).await;
    assert!(h.ctx.network.pods().is_empty(), "its network is torn down");
    assert!(!h.ctx.allocations.contains("uid1"));
    assert!(h.cri.calls().contains(&Call::UnmountImage(mount.clone())));
    assert!(!mount.exists());
    let s = h.last();
    assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.7"));
    assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
    assert!(h.api.deleted.lock().is_empty());
}

/// A critical pod admitted in place of a pod it preempts starts nothing until that pod's
/// containers have stopped (within its own grace period) and it gave back its room.
#[tokio::test(start_paused = true)]
async fn a_critical_pod_starts_only_once_the_pod_it_preempted_has_stopped() {
    use k8s_openapi::api::core::v1::ResourceRequirements;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let with_cpu = |name: &str, cpu: &str| Container {
        resources: Some(ResourceRequirements {
            requests: Some([("cpu".to_string(), Quantity(cpu.into()))].into()),
            ..Default::default()
        }),
        ..c(name)
    };
    let cri = FakeCri::new().with_image("busybox:1");
    cri.script("low", vec![Behavior::IgnoreStop]);
    let mut low = pod(vec![with_cpu("low", "3500m")], vec![], "Always");
    low.spec.as_mut().unwrap().termination_grace_period_seconds = Some(3);
    let h = Harness::start(cri, low);
    wait(1).await;
    assert_eq!(h.creates(), 1);

    let mut crit = pod(vec![with_cpu("crit", "1")], vec![], "Always");
    crit.metadata.name = Some("crit".into());
    crit.metadata.uid = Some("uid-crit".into());
    crit.spec.as_mut().unwrap().priority = Some(2_000_001_000);
    let crit = Arc::new(crit);
    let (_tx, rx) = watch::channel(Some(crit.clone()));
    let w = Worker::new(h.ctx.clone(), "uid-crit".into(), rx, crit);
    tokio::spawn(w.run(h.shutdown.child_token()));
    wait(2).await;
    assert_eq!(h.creates(), 1, "the victim is still in its grace period");
    assert!(h.ctx.network.pods().contains(&"uid1".to_string()));
    wait(2).await;
    assert!(!h.ctx.network.pods().contains(&"uid1".to_string()));
    assert_eq!(
        h.creates(),
        2,
        "the critical pod started once the victim stopped"
    );
}

/// A preStop hook may need a sidecar (the conformance suite's httpGet hook goes through
/// one): sidecars are stopped only once the regular containers are, in reverse order.
#[tokio::test(start_paused = true)]
async fn sidecars_stop_after_the_regular_containers_in_reverse_order() {
    let cri = FakeCri::new().with_image("busybox:1");
    cri.script("app", vec![Behavior::IgnoreStop]);
    let (mut side1, mut side2) = (c("side1"), c("side2"));
    side1.restart_policy = Some("Always".into());
    side2.restart_policy = Some("Always".into());
    let mut p = pod(vec![c("app")], vec![side1, side2], "Always");
    let h = Harness::start(cri, p.clone());
    wait(1).await;
    p.metadata.deletion_timestamp = Some(status::now());
    p.metadata.deletion_grace_period_seconds = Some(4);
    h.tx.send_replace(Some(Arc::new(p)));
    wait(8).await;
    assert_eq!(*h.api.deleted.lock(), ["web"]);
    let id = |name: &str| {
        h.cri
            .configs()
            .iter()
            .find(|c| c.labels.values().any(|v| v == name))
            .map(|c| c.id.clone())
            .unwrap()
    };
    let stops: Vec<String> = h
        .cri
        .calls()
        .into_iter()
        .filter_map(|call| match call {
            Call::Stop(stopped, _) => Some(stopped),
            _ => None,
        })
        .collect();
    assert_eq!(stops, [id("app"), id("side2"), id("side1")]);
    // The app used its 4 s; each sidecar still gets the minimum 2 s.
    assert!(h
        .cri
        .calls()
        .contains(&Call::Stop(id("side2"), Duration::from_secs(2))));
}

#[tokio::test(start_paused = true)]
async fn a_new_worker_adopts_running_containers_without_restarting_them() {
    let cri = FakeCri::new().with_image("busybox:1");
    let h = Harness::start(cri, pod(vec![c("app")], vec![], "Always"));
    wait(1).await;
    h.shutdown.cancel();
    wait(1).await;
    let h2 = Harness::start(h.cri.clone(), pod(vec![c("app")], vec![], "Always"));
    wait(1).await;
    assert_eq!(h2.creates(), 1, "no new container");
    let cs = &h2.last().container_statuses.unwrap()[0];
    assert!(cs.state.as_ref().unwrap().running.is_some() && cs.restart_count == 0);
}

#[tokio::test(start_paused = true)]
async fn active_deadline_fails_the_pod_and_stops_its_containers() {
    let mut p = pod(vec![c("app")], vec![], "Always");
    p.spec.as_mut().unwrap().active_deadline_seconds = Some(5);
    let h = Harness::start(FakeCri::new().with_image("busybox:1"), p);
    wait(1).await;
    assert_eq!(h.last().phase.as_deref(), Some("Running"));
    // The deadline is measured on the wall clock (startTime): move it back.
    let mut st = h.last();
    st.start_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(10),
    ));
    let mut p2 = pod(vec![c("app")], vec![], "Always");
    p2.spec.as_mut().unwrap().active_deadline_seconds = Some(5);
    p2.status = Some(st);
    h.shutdown.cancel();
    let h2 = Harness::start(h.cri.clone(), p2);
    wait(2).await;
    let s = h2.last();
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        s.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
}

#[tokio::test(start_paused = true)]
async fn image_pull_failures_report_err_image_pull_then_back_off() {
    let cri = FakeCri::new();
    cri.fail_pull("busybox:1", "not found");
    let h = Harness::start(cri, pod(vec![c("app")], vec![], "Always"));
    wait(0).await;
    tokio::task::yield_now().await;
    let waiting = |h: &Harness| {
        h.last().container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap()
    };
    assert_eq!(waiting(&h).reason.as_deref(), Some("ErrImagePull"));
    wait(3).await;
    let w = waiting(&h);
    assert_eq!(w.reason.as_deref(), Some("ImagePullBackOff"));
    assert!(w
        .message
        .unwrap()
        .starts_with("Back-off pulling image \"busybox:1\""));
    // Retried once each back-off has passed since the last attempt (10 s, then 20 s), as
    // upstream's IsInBackOffSinceUpdate: pulls at 0, 10 and 30 s.
    wait(32).await;
    let pulls = h
        .cri
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Pull(i, _) if i == "busybox:1"))
        .count();
    assert_eq!(pulls, 3);
}

#[tokio::test(start_paused = true)]
async fn an_image_volume_that_cannot_be_pulled_backs_off() {
    let cri = FakeCri::new().with_image("busybox:1");
    cri.fail_pull("tools:1", "not found");
    let mut p = pod(vec![c("app")], vec![], "Always");
    p.spec.as_mut().unwrap().volumes = Some(vec![k8s_openapi::api::core::v1::Volume {
        name: "tools".into(),
        image: Some(k8s_openapi::api::core::v1::ImageVolumeSource {
            reference: Some("tools:1".into()),
            pull_policy: Some("Always".into()),
        }),
        ..Default::default()
    }]);
    let h = Harness::start(cri, p);
    wait(30).await;
    let pulls = h
        .cri
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Pull(i, _) if i == "tools:1"))
        .count();
    // 10 s, then 20 s: three pulls in 30 s, not one per 2 s retry.
    assert!((2..=3).contains(&pulls), "{pulls} pulls");
    assert_eq!(h.creates(), 0, "no container without its volume");
    let w = h.last().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap();
    assert_eq!(w.reason.as_deref(), Some("ContainerCreating"));
}

#[tokio::test(start_paused = true)]
async fn termination_messages_come_from_the_file_or_the_log_tail() {
    let cri = FakeCri::new().with_image("busybox:1");
    cri.script(
        "app",
        vec![Behavior::Exit {
            code: 0,
            after: Duration::from_secs(2),
        }],
    );
    cri.script(
        "logs",
        vec![Behavior::Exit {
            code: 1,
            after: Duration::from_secs(2),
        }],
    );
    let mut logs = c("logs");
    logs.termination_message_policy = Some("FallbackToLogsOnError".into());
    let h = Harness::start(cri, pod(vec![c("app"), logs], vec![], "Never"));
    wait(1).await;
    let dir = h.ctx.root_dir.join("uid1/containers/app");
    std::fs::write(dir.join("0.term"), "all done").unwrap();
    let log = h
        .cri
        .configs()
        .iter()
        .find(|c| c.labels["io.kubernetes.container.name"] == "logs")
        .unwrap()
        .log_path
        .clone()
        .unwrap();
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, "2026-01-01T00:00:00.000000000Z stdout F first\n2026-01-01T00:00:00.000000000Z stderr P par\n2026-01-01T00:00:00.000000000Z stderr F tial\n").unwrap();
    wait(3).await;
    let s = h.last();
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    let cs = s.container_statuses.unwrap();
    let t = |i: usize| cs[i].state.clone().unwrap().terminated.unwrap();
    assert_eq!(
        (t(0).message.as_deref(), t(0).reason.as_deref()),
        (Some("all done"), Some("Completed"))
    );
    assert_eq!(
        (t(1).message.as_deref(), t(1).exit_code),
        (Some("first\npartial\n"), 1)
    );
}

#[tokio::test(start_paused = true)]
async fn an_oom_kill_is_reported_as_oomkilled_and_limits_reach_the_runtime() {
    let cri = FakeCri::new().with_image("busybox:1");
    cri.script(
        "app",
        vec![
            Behavior::Oom {
                after: Duration::from_secs(1),
            },
            Behavior::Run,
        ],
    );
    let mut app = c("app");
    app.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
        limits: Some(
            [
                (
                    "memory".to_string(),
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity("64Mi".into()),
                ),
                (
                    "cpu".to_string(),
                    k8s_openapi::apimachinery::pkg::api::resource::Quantity("500m".into()),
                ),
            ]
            .into(),
        ),
        ..Default::default()
    });
    let h = Harness::start(cri, pod(vec![app], vec![], "Always"));
    wait(3).await;
    let s = h.last();
    assert_eq!(s.qos_class.as_deref(), Some("Guaranteed"));
    let cs = &s.container_statuses.unwrap()[0];
    let last = cs.last_state.clone().unwrap().terminated.unwrap();
    assert_eq!(
        (last.exit_code, last.reason.as_deref()),
        (137, Some("OOMKilled"))
    );
    assert_eq!(
        cs.restart_count, 1,
        "restarted at once after the first exit"
    );
    let r = &h.cri.configs()[0].resources;
    assert_eq!(
        (r.memory_limit_bytes, r.cpu_quota_us, r.cpu_shares),
        (Some(64 << 20), Some(50_000), Some(512))
    );
}

#[tokio::test(start_paused = true)]
async fn a_pod_the_api_shows_terminal_is_never_started_again() {
    let mut p = pod(vec![c("app")], vec![], "Always");
    p.status = Some(PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    });
    let h = Harness::start(FakeCri::new().with_image("busybox:1"), p);
    wait(2).await;
    assert_eq!(h.creates(), 0);
    assert!(h.api.statuses.lock().is_empty());
}

#[tokio::test(start_paused = true)]
async fn containers_get_the_api_service_variables_unless_they_define_them() {
    let mut app = c("app");
    app.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
        name: "KUBERNETES_SERVICE_PORT".into(),
        value: Some("mine".into()),
        value_from: None,
    }]);
    let cri = FakeCri::new().with_image("busybox:1");
    let dir = tempfile::tempdir().unwrap();
    let (recorder, _rx) = events::Recorder::channel();
    let mut kubernetes = k8s_openapi::api::core::v1::Service::default();
    kubernetes.metadata.namespace = Some("default".into());
    kubernetes.metadata.name = Some("kubernetes".into());
    kubernetes.spec = Some(k8s_openapi::api::core::v1::ServiceSpec {
        cluster_ip: Some("10.43.0.1".into()),
        ports: Some(vec![k8s_openapi::api::core::v1::ServicePort {
            port: 443,
            ..Default::default()
        }]),
        ..Default::default()
    });
    let ctx = Arc::new(Context {
        cri: Arc::new(cri.clone()),
        network: Arc::new(FakeNet::default()),
        api: Arc::new(FakeApi::default()),
        recorder,
        pod_log_dir: dir.path().join("logs"),
        root_dir: dir.path().join("pods"),
        host_ips: vec![],
        node_fields: NODE_FIELDS,
        services: Arc::new(parking_lot::RwLock::new(
            [(
                ("default".to_string(), "kubernetes".to_string()),
                kubernetes,
            )]
            .into(),
        )),
        evictions: Default::default(),
        allocations: Default::default(),
        pressure: Default::default(),
        node: Default::default(),
        image_gc: None,
    });
    let p = Arc::new(pod(vec![app], vec![], "Always"));
    let (tx, rx) = watch::channel(Some(p.clone()));
    tokio::spawn(Worker::new(ctx, "uid1".into(), rx, p).run(CancellationToken::new()));
    wait(1).await;
    let env = cri.configs()[0].env.clone();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("KUBERNETES_SERVICE_HOST").as_deref(), Some("10.43.0.1"));
    assert_eq!(get("KUBERNETES_SERVICE_PORT").as_deref(), Some("mine"));
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn best_effort_pods_share_the_minimum_cpu_shares_under_their_class_cgroup() {
    let h = Harness::start(
        FakeCri::new().with_image("busybox:1"),
        pod(vec![c("app")], vec![], "Always"),
    );
    wait(1).await;
    let cgroups = h.cri.pod_cgroups();
    // The Burstable class has no pod's requests: the minimum shares too.
    assert_eq!(
        cgroups.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "kubepods/besteffort",
            "kubepods/besteffort/poduid1",
            "kubepods/burstable"
        ]
    );
    assert!(cgroups.values().all(|r| r.cpu_shares == Some(2)));
    h.tx.send_replace(None);
    wait(5).await;
    assert_eq!(
        h.cri.pod_cgroups().keys().collect::<Vec<_>>(),
        ["kubepods/besteffort", "kubepods/burstable"],
        "the class cgroups stay for the next pod"
    );
}

#[tokio::test(start_paused = true)]
async fn containers_run_in_a_pod_cgroup_under_the_qos_class_that_goes_with_the_pod() {
    let mut app = c("app");
    app.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
        requests: Some(
            [(
                "cpu".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("250m".into()),
            )]
            .into(),
        ),
        ..Default::default()
    });
    let h = Harness::start(
        FakeCri::new().with_image("busybox:1"),
        pod(vec![app, c("side")], vec![], "Always"),
    );
    wait(1).await;
    assert_eq!(h.last().qos_class.as_deref(), Some("Burstable"));
    let path = "kubepods/burstable/poduid1";
    let cgroups = h.cri.pod_cgroups();
    let res = cgroups.get(path).expect("the pod cgroup exists");
    assert_eq!(
        (res.cpu_shares, res.cpu_quota_us, res.memory_limit_bytes),
        (Some(256), None, None),
        "shares from the pod's requests; no limit as one container declares none"
    );
    let calls = h.cri.calls();
    let ensured = calls
        .iter()
        .position(|c| matches!(c, Call::EnsurePodCgroup(p, _) if p == path))
        .expect("the pod cgroup was ensured");
    let created = calls
        .iter()
        .position(|c| matches!(c, Call::Create(_)))
        .expect("a container was created");
    assert!(ensured < created, "the pod cgroup comes first: {calls:?}");
    assert!(h
        .cri
        .configs()
        .iter()
        .all(|c| c.cgroup_parent.as_deref() == Some(path)));
    // The Burstable class is weighted by its pods' requests (upstream's QoS manager).
    assert_eq!(cgroups["kubepods/burstable"].cpu_shares, Some(256));
    h.tx.send_replace(None);
    wait(5).await;
    let left = h.cri.pod_cgroups();
    assert_eq!(
        left.keys().collect::<Vec<_>>(),
        ["kubepods/burstable"],
        "the pod cgroup goes with the pod: {left:?}"
    );
    assert_eq!(left["kubepods/burstable"].cpu_shares, Some(2));
}
