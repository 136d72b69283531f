//! The node's container runtime: images (pull, import, content store), snapshots
//! (unpacked layers, overlay rootfs) and containers (OCI bundles owned by one shim each).
//! Knows no Kubernetes types; the kubelet translates pods into `Runtime` calls.
//!
//! Invariant: all state lives under the agent dir (`<data-dir>/agent`), so a new `Runtime`
//! re-adopts everything a killed process left running.

pub mod containers;
pub mod images;
pub mod snapshots;

pub use containers::facade::{ExecIo, Runtime, RuntimeError, RuntimeOptions};
pub use containers::{
    ContainerConfig, ContainerId, ContainerState, ExecConfig, ExitStatus, Mount, Network,
    Resources, Rlimit, RuntimeKind, Status, User,
};
