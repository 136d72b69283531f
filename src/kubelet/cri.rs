//! The CRI-shaped interface between the pod workers and a container runtime.
//!
//! The pod workers only ever talk to a [`Cri`]: the embedded runtime through
//! [`crate::kubelet::runtime_cri::RuntimeCri`] in the product, the in-memory
//! [`crate::kubelet::fake_cri::FakeCri`] in tests (no root, scriptable exits). The data types
//! are the runtime's own (`ContainerConfig`, `ContainerState`, `ExitStatus`), which know no
//! Kubernetes types; which pod a container belongs to is in its labels
//! ([`crate::kubelet::labels`]).
//!
//! Invariant: the trait is stateless from the caller's side: every question is answered
//! from the runtime, so a worker that restarts (or a new kubelet process) sees the same
//! containers the previous one left.

use crate::runtime::containers::{ContainerConfig, ContainerState, ExitStatus, Resources};
use futures::future::BoxFuture;
use std::path::Path;
use std::time::Duration;

pub use crate::runtime::images::registries::Credentials;

/// An image in the runtime's store, for image garbage collection (CRI's ListImages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    /// The image id (config digest); every reference to it goes with it.
    pub id: String,
    /// Bytes on disk that removing it could free (its layers may be shared).
    pub size: u64,
    /// A container (running or exited) was made from it.
    pub in_use: bool,
}

/// The filesystem holding the images (CRI's ImageFsInfo), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    pub capacity: u64,
    pub available: u64,
}

/// A stored image as the kubelet reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Normalized reference, e.g. `docker.io/library/busybox:1.36`.
    pub reference: String,
    /// `status.containerStatuses[].imageID`: `<repository>@<manifest digest>`.
    pub image_ref: String,
    /// Numeric user of the image's `User`, when it is numeric (runAsNonRoot check).
    pub user: Option<String>,
}

/// What an exec (probe or hook) produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub code: i32,
    pub output: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("image {0} not found")]
    ImageNotFound(String),
    #[error("{0}")]
    Pull(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("command timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Runtime(String),
}

/// The container runtime as the kubelet needs it. Dyn-safe: workers hold `Arc<dyn Cri>`.
pub trait Cri: Send + Sync {
    /// Whether containers bind the host paths their mounts name (a real runtime: sub paths
    /// are then pinned first, see `volumes::mounts`, and memory-backed volumes get their
    /// tmpfs); a simulated one binds nothing, so nothing is mounted for it.
    fn binds_host_paths(&self) -> bool {
        false
    }

    /// The stored image named `image`, if present.
    fn image_status(&self, image: &str) -> BoxFuture<'_, Result<Option<ImageInfo>, CriError>>;
    fn pull_image(
        &self,
        image: &str,
        credentials: Option<Credentials>,
    ) -> BoxFuture<'_, Result<ImageInfo, CriError>>;
    /// Creates the pod-level cgroup `path` (relative to the runtime's cgroup parent, as in
    /// [`ContainerConfig::cgroup_parent`]) with `resources`, or updates them.
    fn ensure_pod_cgroup(
        &self,
        path: &str,
        resources: Resources,
    ) -> BoxFuture<'_, Result<(), CriError>>;
    /// Changes the cgroup limits of a running container (an in-place resize); `cgroup_parent`
    /// is the one it was created under.
    fn update_container_resources(
        &self,
        cgroup_parent: Option<&str>,
        id: &str,
        resources: Resources,
    ) -> BoxFuture<'_, Result<(), CriError>>;
    /// Mounts image `image` (pulled) read-only at `target`: an image volume. Idempotent; the
    /// image counts as in use until [`Cri::unmount_image`].
    fn mount_image(&self, image: &str, target: &Path) -> BoxFuture<'_, Result<(), CriError>>;
    /// Unmounts an image volume (absent is fine).
    fn unmount_image(&self, target: &Path) -> BoxFuture<'_, Result<(), CriError>>;
    /// Bytes the container has written to its writable layer.
    fn writable_layer_usage(&self, id: &str) -> BoxFuture<'_, Result<u64, CriError>>;
    /// Removes a pod-level cgroup whose containers are gone (absent is fine).
    fn remove_pod_cgroup(&self, path: &str) -> BoxFuture<'_, Result<(), CriError>>;
    /// Creates (does not start) a container; returns its id.
    fn create_container(&self, config: ContainerConfig) -> BoxFuture<'_, Result<String, CriError>>;
    fn start_container(&self, id: &str) -> BoxFuture<'_, Result<(), CriError>>;
    /// Stop signal, SIGKILL after `grace`; resolves once the container has exited.
    fn stop_container(
        &self,
        id: &str,
        grace: Duration,
    ) -> BoxFuture<'_, Result<ExitStatus, CriError>>;
    fn kill_container(&self, id: &str, signal: i32) -> BoxFuture<'_, Result<(), CriError>>;
    /// Removes a container (stopping it first if needed).
    fn remove_container(&self, id: &str) -> BoxFuture<'_, Result<(), CriError>>;
    fn container_status(&self, id: &str)
        -> BoxFuture<'_, Result<Option<ContainerState>, CriError>>;
    /// Every container, live or exited.
    fn list_containers(&self) -> BoxFuture<'_, Result<Vec<ContainerState>, CriError>> {
        self.list_containers_labelled(&[])
    }
    /// The containers carrying every `(key, value)` label of `wanted` (CRI's label
    /// selector), live or exited; reads only those containers' state.
    fn list_containers_labelled<'a>(
        &'a self,
        wanted: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Vec<ContainerState>, CriError>>;
    /// Runs `cmd` in a running container, stdout and stderr merged; kills it after
    /// `timeout` and reports [`CriError::Timeout`].
    fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<ExecOutput, CriError>>;
    /// Resolves when the container has exited.
    fn wait_container(&self, id: &str) -> BoxFuture<'_, Result<ExitStatus, CriError>>;
    /// Every stored image, with whether a container uses it.
    fn list_images(&self) -> BoxFuture<'_, Result<Vec<StoredImage>, CriError>>;
    /// The image filesystem's size and free space.
    fn image_fs_info(&self) -> BoxFuture<'_, Result<FsStats, CriError>>;
    /// Removes the images with these ids and whatever content only they needed; returns
    /// the bytes freed.
    fn remove_images(&self, ids: Vec<String>) -> BoxFuture<'_, Result<u64, CriError>>;
    /// A simulated runtime (no processes, no pod network) answers probes itself:
    /// `Some(outcome)`; `None` (every real runtime) = run the probe's handler.
    fn simulated_probe(&self, _id: &str, _kind: super::probes::Kind) -> Option<Result<(), String>> {
        None
    }
}
