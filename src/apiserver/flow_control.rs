//! Priority and fairness for API requests, as upstream's API Priority and Fairness (APF)
//! does it in outline: each request from the network is classified into a priority level
//! by who sent it, and a level runs at most its number of *seats* of requests at once; the
//! rest wait, first come first served, for a seat of their own level. Waiting is bounded:
//! a request that gets no seat in [`QUEUE_TIMEOUT`] is answered 429, its Status saying
//! when to retry (`retryAfterSeconds`), as upstream's.
//!
//! Why: on 2 cores, 100 kubelets starting pods put thousands of requests in flight at
//! once; every one of them was polled in turn, so each took as long as the whole burst
//! (p99 ~1 s) while the scheduler and the controllers, on the same worker threads, waited
//! for turns behind them. With seats a request waits for a seat, then runs with few others:
//! it takes milliseconds once it runs, and the control plane keeps its share of the
//! threads. The price is paid in the queue: in a burst a kubelet's request may wait
//! seconds for its seat (as upstream's would under APF); too few seats make pods start
//! late, so the default leaves the `system` level 30.
//!
//! Levels (upstream's default FlowSchemas, simplified):
//! - exempt: `system:masters`, and in-process callers (the scheduler and the controllers
//!   bound their own concurrency by their workers);
//! - `node-high`: a node's writes of its own Node and Lease, so heartbeats never wait
//!   behind pod traffic;
//! - `system`: everything else a node sends (pod status, events, tokens);
//! - `global-default`: every other identity.
//!
//! Long-running requests (watches, exec/attach/port-forward, proxies, logs) take
//! no seat: upstream exempts them from the in-flight limits too.
//!
//! Like upstream's SLI (`apiserver_request_sli_duration_seconds`), the request log reports
//! the time spent waiting for a seat (`queued_ms`) apart from the total.

use super::request::{ResourceRequest, Verb};
use super::status::ApiError;
use super::UserInfo;
use crate::api::registry::Subresource;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Longest a request waits for a seat before it is refused with 429.
pub const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// The seats of each limited priority level.
pub struct FlowControl {
    node_high: Arc<Semaphore>,
    system: Arc<Semaphore>,
    global_default: Arc<Semaphore>,
}

/// A request's priority level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Exempt,
    NodeHigh,
    System,
    GlobalDefault,
}

impl FlowControl {
    /// `seats` shared by the limited levels in upstream's proportions of nominal shares
    /// (node-high 40, system 30, global-default 20), each with at least 2.
    pub fn new(seats: usize) -> FlowControl {
        const SHARES: [usize; 3] = [40, 30, 20];
        let total: usize = SHARES.iter().sum();
        let share = |n: usize| Arc::new(Semaphore::new((seats * n / total).max(2)));
        FlowControl {
            node_high: share(SHARES[0]),
            system: share(SHARES[1]),
            global_default: share(SHARES[2]),
        }
    }

    /// Waits for a seat of `level` (none for exempt requests), adding the wait to
    /// `queued_ns`. A request that waits longer than [`QUEUE_TIMEOUT`] gets 429.
    pub async fn seat(
        &self,
        level: Level,
        queued_ns: &AtomicU64,
    ) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        let seats = match level {
            Level::Exempt => return Ok(None),
            Level::NodeHigh => &self.node_high,
            Level::System => &self.system,
            Level::GlobalDefault => &self.global_default,
        };
        if let Ok(p) = seats.clone().try_acquire_owned() {
            return Ok(Some(p));
        }
        let waited = Instant::now();
        let permit = tokio::time::timeout(QUEUE_TIMEOUT, seats.clone().acquire_owned()).await;
        queued_ns.fetch_add(waited.elapsed().as_nanos() as u64, Ordering::Relaxed);
        match permit {
            Ok(Ok(p)) => Ok(Some(p)),
            // The semaphores are never closed; a timeout is the only way here.
            _ => Err(ApiError {
                details: Some(serde_json::json!({"retryAfterSeconds": 1})),
                ..ApiError::too_many_requests("Too many requests, please try again later.")
            }),
        }
    }
}

/// The priority level of a resource request from `user`; `in_process` for the server's
/// own components.
pub fn classify(in_process: bool, user: &UserInfo, rr: &ResourceRequest, watch: bool) -> Level {
    if in_process || user.in_group(super::MASTERS_GROUP) || long_running(rr, watch) {
        return Level::Exempt;
    }
    let Some(node) = crate::authz::node::node_name(user) else {
        return Level::GlobalDefault;
    };
    let own = rr.name.as_deref() == Some(node);
    let heartbeat = match (rr.rt.group.as_str(), rr.rt.plural.as_str()) {
        ("", "nodes") => own || rr.verb == Verb::Create,
        ("coordination.k8s.io", "leases") => rr.namespace.as_deref() == Some("kube-node-lease"),
        _ => false,
    };
    if heartbeat {
        Level::NodeHigh
    } else {
        Level::System
    }
}

/// Requests that stay open as long as the client wants: never limited.
fn long_running(rr: &ResourceRequest, watch: bool) -> bool {
    watch
        || rr.verb == Verb::Watch
        || matches!(
            rr.subresource,
            Some(
                Subresource::Exec
                    | Subresource::Attach
                    | Subresource::PortForward
                    | Subresource::Proxy
                    | Subresource::Log
            )
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::registry::Registry;

    fn request(
        group: &str,
        plural: &str,
        ns: Option<&str>,
        name: Option<&str>,
        verb: Verb,
    ) -> ResourceRequest {
        ResourceRequest {
            rt: Registry::new()
                .lookup(group, "v1", plural)
                .expect("a built-in resource"),
            namespace: ns.map(str::to_owned),
            name: name.map(str::to_owned),
            subresource: None,
            verb,
        }
    }

    #[test]
    fn nodes_heartbeats_outrank_their_pod_traffic_and_admins_and_the_server_wait_for_nothing() {
        let node = UserInfo::new("system:node:n1", &["system:nodes"]);
        let lease = request(
            "coordination.k8s.io",
            "leases",
            Some("kube-node-lease"),
            Some("n1"),
            Verb::Update,
        );
        let own_node = request("", "nodes", None, Some("n1"), Verb::Patch);
        let status = request("", "pods", Some("default"), Some("p"), Verb::Patch);
        assert_eq!(classify(false, &node, &lease, false), Level::NodeHigh);
        assert_eq!(classify(false, &node, &own_node, false), Level::NodeHigh);
        assert_eq!(classify(false, &node, &status, false), Level::System);
        let other_node = request("", "nodes", None, Some("n2"), Verb::Get);
        assert_eq!(classify(false, &node, &other_node, false), Level::System);
        // A watch stays open: no seat, whoever asks.
        let pods = request("", "pods", None, None, Verb::Watch);
        assert_eq!(classify(false, &node, &pods, true), Level::Exempt);

        let user = UserInfo::new("alice", &["system:authenticated"]);
        assert_eq!(classify(false, &user, &status, false), Level::GlobalDefault);
        // A name that only looks like a node's is not one.
        let pretender = UserInfo::new("system:node:n1", &["system:authenticated"]);
        assert_eq!(
            classify(false, &pretender, &lease, false),
            Level::GlobalDefault
        );
        let admin = UserInfo::new("system:admin", &["system:masters"]);
        assert_eq!(classify(false, &admin, &status, false), Level::Exempt);
        assert_eq!(classify(true, &user, &status, false), Level::Exempt);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_for_a_seat_of_its_level_and_is_refused_after_the_queue_timeout() {
        let fc = FlowControl::new(0); // the minimum: two seats per level
        let queued = AtomicU64::new(0);
        let a = fc.seat(Level::System, &queued).await.unwrap();
        let b = fc.seat(Level::System, &queued).await.unwrap();
        assert!(a.is_some() && b.is_some());
        assert_eq!(queued.load(Ordering::Relaxed), 0);
        // Other levels are not held up by a full one.
        assert!(fc.seat(Level::NodeHigh, &queued).await.unwrap().is_some());
        assert!(fc.seat(Level::Exempt, &queued).await.unwrap().is_none());
        // A third waits until a seat is given back...
        let third = fc.seat(Level::System, &queued);
        let give_back = async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            drop(a);
        };
        let (third, ()) = tokio::join!(third, give_back);
        let third = third.unwrap();
        assert!(third.is_some());
        assert_eq!(queued.load(Ordering::Relaxed), 2_000_000_000);
        // ...and one that never gets one is told to come back.
        let e = fc.seat(Level::System, &queued).await.unwrap_err();
        assert_eq!(e.code, 429);
        assert_eq!(e.details, Some(serde_json::json!({"retryAfterSeconds": 1})));
        drop((b, third));
    }
}
