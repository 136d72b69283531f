//! Preemption choices, throughput of the scheduling loop on in-memory nodes, and the
//! scheduler against a real API server state (temp store).

use super::*;
use crate::scheduler::framework::{prefilter, NoLookups};
use crate::scheduler::preemption::Outcome;
use crate::scheduler::testutil::*;
use serde_json::json;

fn outcome(c: &Cache, p: k8s_openapi::api::core::v1::Pod) -> Outcome {
    let p = Arc::new(p);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let diag = framework::schedule(c, &p, &NoLookups, &mut rng).expect_err("must not fit");
    let cycle = prefilter(c, &p, &NoLookups).expect("prefilter");
    preemption::preempt(c, &cycle, &diag)
}

fn prio(name: &str, cpu: i64, priority: i32) -> k8s_openapi::api::core::v1::Pod {
    pod_with(name, cpu, json!({"spec": {"priority": priority}}))
}

fn victims(o: Outcome) -> (String, Vec<String>) {
    match o {
        Outcome::Preempt { node, victims } => {
            let mut v: Vec<String> = victims
                .iter()
                .map(|p| p.pod.metadata.name.clone().unwrap_or_default())
                .collect();
            v.sort();
            (node, v)
        }
        other => panic!("expected preemption, got {other:?}"),
    }
}

#[test]
fn preemption_picks_the_node_whose_most_important_victim_is_least_important() {
    let c = cache(
        vec![node("a", 1000, 4), node("b", 1000, 4)],
        vec![on("a", prio("mid", 600, 5)), on("b", prio("low", 600, 1))],
    );
    assert_eq!(
        victims(outcome(&c, prio("urgent", 800, 10))),
        ("b".into(), vec!["low".into()])
    );
}

#[test]
fn preemption_evicts_only_as_many_low_priority_pods_as_needed_keeping_the_important_ones() {
    let c = cache(
        vec![node("a", 1000, 4)],
        vec![
            on("a", prio("p1", 300, 1)),
            on("a", prio("p2", 300, 2)),
            on("a", prio("p3", 300, 3)),
            on("a", prio("same", 100, 10)),
        ],
    );
    // 1000m − 1000m used; 500m needed: two 300m pods go, the least important ones.
    assert_eq!(
        victims(outcome(&c, prio("urgent", 500, 10))),
        ("a".into(), vec!["p1".into(), "p2".into()])
    );
}

#[test]
fn preemption_prefers_fewer_victims_at_equal_priority() {
    let c = cache(
        vec![node("a", 1000, 4), node("b", 1000, 4)],
        vec![
            on("a", prio("a1", 400, 1)),
            on("a", prio("a2", 400, 1)),
            on("b", prio("b1", 800, 1)),
        ],
    );
    assert_eq!(
        victims(outcome(&c, prio("urgent", 700, 10))),
        ("b".into(), vec!["b1".into()])
    );
}

#[test]
fn a_pod_with_preemption_policy_never_preempts_nothing() {
    let c = cache(vec![node("a", 1000, 4)], vec![on("a", prio("low", 900, 1))]);
    let p = pod_with(
        "urgent",
        500,
        json!({"spec": {"priority": 10, "preemptionPolicy": "Never"}}),
    );
    match outcome(&c, p) {
        Outcome::NotEligible(m) => assert_eq!(m, preemption::POLICY_NEVER),
        other => panic!("{other:?}"),
    }
}

#[test]
fn without_lower_priority_pods_preemption_reports_why_it_cannot_help() {
    let c = cache(
        vec![
            node("a", 1000, 4),
            node_with(
                "t",
                4000,
                4,
                json!({"spec": {"taints": [{"key": "node-role", "value": "x", "effect": "NoSchedule"}]}}),
            ),
        ],
        vec![on("a", prio("peer", 900, 0))],
    );
    let p = Arc::new(prio("p", 500, 0));
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut diag = framework::schedule(&c, &p, &NoLookups, &mut rng).expect_err("no fit");
    let cycle = prefilter(&c, &p, &NoLookups).expect("prefilter");
    match preemption::preempt(&c, &cycle, &diag) {
        Outcome::NoCandidate(m) => diag.post_filter = Some(m),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        diag.message(),
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {node-role: x}. \
         preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, \
         1 Preemption is not helpful for scheduling."
    );
}

#[test]
fn the_failed_scheduling_message_says_preemption_is_not_allowed_for_a_never_pod() {
    let mut core = Core::new();
    core.cache.set_node(Arc::new(node("a", 1000, 4)));
    core.cache
        .add_or_update_bound_pod(Arc::new(on("a", prio("low", 900, 1))));
    let p = Arc::new(pod_with(
        "p",
        500,
        json!({"spec": {"priority": 10, "preemptionPolicy": "Never"}}),
    ));
    let now = Instant::now();
    core.queue.add_or_update("default/p", p, now);
    let popped = core.queue.pop(now).expect("queued");
    match core.schedule_one(popped, &NoLookups, now) {
        Decision::Unschedulable {
            message, nominate, ..
        } => {
            assert_eq!(
                message,
                "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to \
                 preemptionPolicy=Never."
            );
            assert_eq!(nominate, None);
        }
        Decision::Bind { node, .. } => panic!("bound to {node}"),
    }
}

#[test]
fn the_room_a_preemptor_made_is_kept_from_lower_priority_pods_until_it_is_bound() {
    let mut core = Core::new();
    core.cache.set_node(Arc::new(node("a", 1000, 4)));
    let low = Arc::new(on("a", prio("low", 600, 1)));
    core.cache.add_or_update_bound_pod(low.clone());
    let now = Instant::now();
    let urgent = Arc::new(prio("urgent", 800, 10));
    match core.schedule_one(urgent.clone(), &NoLookups, now) {
        Decision::Unschedulable {
            nominate, victims, ..
        } => {
            assert_eq!(nominate.as_deref(), Some("a"));
            assert_eq!(victims.len(), 1);
        }
        Decision::Bind { node, .. } => panic!("bound to {node}"),
    }
    // The informer echoes the preemptor before its nomination is written: it stays.
    core.on_pod(Change::Applied(urgent.clone()), now);
    // The victim goes, and its replacement (same priority) is tried first.
    core.on_pod(Change::Deleted(low), now);
    let replacement = Arc::new(prio("low-2", 600, 1));
    match core.schedule_one(replacement, &NoLookups, now) {
        Decision::Unschedulable { message, .. } => {
            assert!(message.contains("Insufficient cpu"), "{message}")
        }
        Decision::Bind { node, .. } => panic!("the replacement took the room on {node}"),
    }
    // A pod of higher priority than the preemptor does not wait for it.
    let vip = Arc::new(prio("vip", 100, 20));
    assert!(matches!(
        core.schedule_one(vip, &NoLookups, now),
        Decision::Bind { .. }
    ));
    match core.schedule_one(urgent, &NoLookups, now) {
        Decision::Bind { node, .. } => assert_eq!(node, "a"),
        Decision::Unschedulable { message, .. } => panic!("{message}"),
    }
    assert!(!core.cache.has_nominations());
}

#[test]
fn a_pod_kept_off_cordoned_nodes_is_retried_on_the_uncordon_not_on_every_pod_deletion() {
    let mut core = Core::new();
    let cordoned = Arc::new(node_with(
        "a",
        1000,
        4,
        json!({"spec": {"unschedulable": true}}),
    ));
    core.on_node(Change::Applied(cordoned), Instant::now());
    let old = Arc::new(on("a", pod("old", 100)));
    core.on_pod(Change::Applied(old.clone()), Instant::now());
    let waiting = Arc::new(pod("web", 100));
    let t0 = Instant::now();
    core.on_pod(Change::Applied(waiting), t0);
    let popped = core.queue.pop(t0).expect("queued");
    match core.schedule_one(popped, &NoLookups, t0) {
        Decision::Unschedulable { message, .. } => assert_eq!(
            message,
            "0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes \
             are available: 1 Preemption is not helpful for scheduling."
        ),
        Decision::Bind { node, .. } => panic!("bound to {node} while cordoned"),
    }
    core.on_pod(Change::Deleted(old), t0);
    // A heartbeat changes nothing the filters read.
    let heartbeat = node_with(
        "a",
        1000,
        4,
        json!({"spec": {"unschedulable": true}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:10Z"}]}}),
    );
    core.on_node(Change::Applied(Arc::new(heartbeat)), t0);
    let later = t0 + std::time::Duration::from_secs(1);
    assert!(
        core.queue.pop(later).is_none(),
        "requeued by a change that cannot help"
    );
    core.on_node(Change::Applied(Arc::new(node("a", 1000, 4))), t0);
    let popped = core.queue.pop(later).expect("requeued by the uncordon");
    assert!(matches!(
        core.schedule_one(popped, &NoLookups, t0),
        Decision::Bind { .. }
    ));
}

#[test]
fn a_pod_waiting_for_affinity_is_retried_when_a_pod_this_scheduler_placed_is_confirmed() {
    let mut core = Core::new();
    let t0 = Instant::now();
    core.on_node(Change::Applied(Arc::new(node("a", 1000, 4))), t0);
    let follower = Arc::new(pod_with(
        "follower",
        100,
        json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
        ]}}}}),
    ));
    core.on_pod(Change::Applied(follower), t0);
    let popped = core.queue.pop(t0).expect("queued");
    assert!(matches!(
        core.schedule_one(popped, &NoLookups, t0),
        Decision::Unschedulable { .. }
    ));
    let web = pod_with("web", 100, json!({"metadata": {"labels": {"app": "web"}}}));
    core.on_pod(Change::Applied(Arc::new(web.clone())), t0);
    let popped = core.queue.pop(t0).expect("web queued");
    assert!(matches!(
        core.schedule_one(popped, &NoLookups, t0),
        Decision::Bind { .. }
    ));
    let later = t0 + std::time::Duration::from_secs(1);
    assert!(
        core.queue.pop(later).is_none(),
        "nothing changed for it yet"
    );
    // The informer shows web bound: the pod it assumed is confirmed.
    core.on_pod(Change::Applied(Arc::new(on("a", web))), t0);
    let popped = core.queue.pop(later).expect("requeued by the placement");
    assert!(matches!(
        core.schedule_one(popped, &NoLookups, later),
        Decision::Bind { .. }
    ));
}

/// Schedules `n` ReplicaSet-like pods (default spreading applies) onto 100 nodes with the
/// real loop's core (queue, cycle, assume), without the API; returns pods per node and
/// the rate.
fn schedule_in_memory(n: usize) -> (Vec<usize>, f64) {
    let mut core = Core::new();
    for i in 0..100 {
        core.cache
            .set_node(Arc::new(node(&format!("n{i:03}"), 4000, 16)));
    }
    let now = Instant::now();
    for i in 0..n {
        let p = pod_with(
            &format!("web-{i}"),
            100,
            json!({"metadata": {"labels": {"app": "web"}}}),
        );
        core.queue
            .add_or_update(&format!("default/web-{i}"), Arc::new(p), now);
    }
    let start = Instant::now();
    let mut bound = 0;
    while let Some(p) = core.queue.pop(now) {
        let key = pod_key(&p);
        match core.schedule_one(p, &Owned, now) {
            Decision::Bind { .. } => {
                core.queue.done(&key);
                bound += 1;
            }
            Decision::Unschedulable { message, .. } => panic!("{key}: {message}"),
        }
    }
    let rate = bound as f64 / start.elapsed().as_secs_f64();
    let per_node = core.cache.nodes().map(|n| n.pods.len()).collect();
    (per_node, rate)
}

#[test]
fn three_thousand_pods_spread_evenly_over_a_hundred_nodes_through_the_assumed_cache() {
    let (per_node, rate) = schedule_in_memory(3000);
    eprintln!("scheduled 3000 pods on 100 in-memory nodes at {rate:.0} pods/s (this build)");
    assert_eq!(per_node.iter().sum::<usize>(), 3000);
    let (min, max) = (per_node.iter().min(), per_node.iter().max());
    assert!(
        max.zip(min).is_some_and(|(a, b)| a - b <= 2),
        "uneven: {per_node:?}"
    );
}

use rand::SeedableRng;

// ---- against a real API server state ----

use crate::apiserver::testing::TestServer;
use crate::controllers::testing::eventually;
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

struct Running {
    _server: TestServer,
    admin: kube::Client,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), SchedulerError>>,
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("no panic")
            .expect("scheduler stopped cleanly");
    }
}

async fn start() -> Running {
    let server = TestServer::start().await;
    let admin = server.admin();
    server.create_default_service_account().await;
    let stop = CancellationToken::new();
    let informers = Informers::new(admin.clone(), stop.clone());
    let sched = Scheduler::new(
        server.client_as(
            crate::apiserver::SCHEDULER_USER,
            &[crate::apiserver::AUTHENTICATED_GROUP],
        ),
        informers.clone(),
    );
    tokio::spawn(informers.run());
    let task = tokio::spawn(sched.run(stop.clone()));
    Running {
        _server: server,
        admin,
        stop,
        task,
    }
}

async fn add_node(c: &kube::Client, name: &str, cpu: &str) {
    let api: Api<Node> = Api::all(c.clone());
    let n: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}
    }))
    .expect("node");
    api.create(&PostParams::default(), &n)
        .await
        .expect("create node");
    let status = json!({"status": {
        "capacity": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
        "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}]
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
}

async fn add_pod(c: &kube::Client, name: &str, cpu: &str) {
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox",
                 "resources": {"requests": {"cpu": cpu}}}]}
    }))
    .expect("pod");
    api.create(&PostParams::default(), &p)
        .await
        .expect("create pod");
}

async fn node_of(c: &kube::Client, name: &str) -> Option<String> {
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    api.get(name).await.ok()?.spec?.node_name
}

async fn events_for(c: &kube::Client, pod: &str, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(c.clone(), "default");
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(pod) && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

#[tokio::test]
async fn pods_are_bound_reported_unschedulable_and_retried_when_a_node_is_added() {
    let r = start().await;
    let c = &r.admin;
    add_node(c, "small", "1").await;
    add_pod(c, "fits", "500m").await;
    eventually("the pod is bound to the only node", || async {
        node_of(c, "fits").await.as_deref() == Some("small")
    })
    .await;
    eventually("a Scheduled event is recorded", || async {
        events_for(c, "fits", "Scheduled").await.iter().any(|e| {
            e.message.as_deref() == Some("Successfully assigned default/fits to small")
                && e.source.as_ref().and_then(|s| s.component.as_deref()) == Some(SCHEDULER_NAME)
        })
    })
    .await;

    add_pod(c, "big", "2").await;
    let expected = "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are \
                    available: 1 No preemption victims found for incoming pod.";
    eventually("FailedScheduling is recorded with the summary", || async {
        events_for(c, "big", "FailedScheduling")
            .await
            .iter()
            .any(|e| {
                e.message.as_deref() == Some(expected) && e.type_.as_deref() == Some("Warning")
            })
    })
    .await;
    eventually(
        "PodScheduled=False/Unschedulable carries the same message",
        || async {
            let api: Api<Pod> = Api::namespaced(c.clone(), "default");
            let Ok(p) = api.get("big").await else {
                return false;
            };
            p.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                        && c.message.as_deref() == Some(expected)
                })
        },
    )
    .await;
    assert_eq!(node_of(c, "big").await, None);

    add_node(c, "large", "4").await;
    eventually(
        "the waiting pod is bound once a node with room appears",
        || async { node_of(c, "big").await.as_deref() == Some("large") },
    )
    .await;
    r.stop().await;
}

#[tokio::test]
async fn a_higher_priority_pod_preempts_a_lower_one_and_is_nominated() {
    let r = start().await;
    let c = &r.admin;
    add_node(c, "only", "1").await;
    add_pod(c, "victim", "800m").await;
    eventually("the low-priority pod is bound", || async {
        node_of(c, "victim").await.is_some()
    })
    .await;
    let pcs: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(c.clone());
    let pc = serde_json::from_value(json!({"metadata": {"name": "high"}, "value": 1000}))
        .expect("priority class");
    pcs.create(&PostParams::default(), &pc)
        .await
        .expect("create priority class");
    let api: Api<Pod> = Api::namespaced(c.clone(), "default");
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "urgent"},
        "spec": {"priorityClassName": "high", "containers": [{"name": "c", "image": "busybox",
                 "resources": {"requests": {"cpu": "800m"}}}]}
    }))
    .expect("pod");
    api.create(&PostParams::default(), &p)
        .await
        .expect("create");
    eventually("the preemptor is nominated to the node", || async {
        api.get("urgent")
            .await
            .ok()
            .and_then(|p| p.status?.nominated_node_name)
            .as_deref()
            == Some("only")
    })
    .await;
    eventually("the victim got a Preempted event", || async {
        !events_for(c, "victim", "Preempted").await.is_empty()
    })
    .await;
    // No kubelet here: finish the victim's graceful deletion as one would.
    let gone = api
        .delete(
            "victim",
            &kube::api::DeleteParams::default().grace_period(0),
        )
        .await;
    assert!(gone.is_ok() || matches!(gone, Err(kube::Error::Api(ref s)) if s.code == 404));
    eventually(
        "the preemptor is bound after the victim is gone",
        || async { node_of(c, "urgent").await.as_deref() == Some("only") },
    )
    .await;
    r.stop().await;
}

/// Fifty binds decided at once reach the API at most [`WRITES_IN_FLIGHT`] at a time, and
/// every one of them is made.
#[tokio::test]
async fn binds_reach_the_api_at_most_writes_in_flight_at_a_time() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let svc = tower::service_fn({
        let (in_flight, most) = (in_flight.clone(), most.clone());
        move |_req: http::Request<kube::client::Body>| {
            let (in_flight, most) = (in_flight.clone(), most.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                http::Response::builder()
                    .status(201)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            }
        }
    });
    let (recorder, _events) = Recorder::channel();
    let actor = Actor {
        client: kube::Client::new(svc, "default"),
        recorder,
        writes: Arc::new(Semaphore::new(WRITES_IN_FLIGHT)),
    };
    let (done, mut outcomes) = mpsc::unbounded_channel();
    for i in 0..50 {
        actor.bind(
            Arc::new(pod(&format!("p{i}"), 100)),
            "n".into(),
            Vec::new(),
            done.clone(),
        );
    }
    for _ in 0..50 {
        match outcomes.recv().await.expect("an outcome per bind") {
            BindOutcome::Bound { .. } => {}
            BindOutcome::Failed { key, error, .. } => panic!("{key}: {error}"),
        }
    }
    assert_eq!(most.load(Ordering::SeqCst), WRITES_IN_FLIGHT);
}
