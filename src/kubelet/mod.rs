//! The kubelet: pod workers, probes, volumes, status and the node's heartbeat, driving the
//! embedded runtime (`crate::runtime`) through a small CRI-shaped interface and the pod
//! network (`crate::network`). The kubelet API (:10250) lives here too.
//!
//! [`labels`] is the one contract between the pieces: how a pod's containers are named and
//! labelled in the runtime and where their logs go, so that the pod workers, the kubelet
//! API (logs, exec, attach) and restart re-adoption agree.
//!
//! The node itself: [`node_status`] computes the Node and its status (capacity, conditions,
//! labels) from [`host`]'s readings; [`heartbeat`] registers it and reports; [`lease`]
//! keeps the `kube-node-lease` Lease.

pub mod heartbeat;
pub mod host;
pub mod labels;
pub mod lease;
pub mod node_status;
pub mod server;
