//! The kubelet: pod workers, probes, volumes, status and the node's heartbeat, driving the
//! embedded runtime (`crate::runtime`) through a small CRI-shaped interface and the pod
//! network (`crate::network`). The kubelet API (:10250) lives here too.
//!
//! [`labels`] is the one contract between the pieces: how a pod's containers are named and
//! labelled in the runtime and where their logs go, so that the pod workers, the kubelet
//! API (logs, exec, attach) and restart re-adoption agree.

pub mod labels;
pub mod server;
