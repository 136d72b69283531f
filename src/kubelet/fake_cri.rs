//! An in-memory [`Cri`] for tests and simulated nodes: containers are records, processes
//! are timers.
//!
//! What a container does once started is scripted per container name
//! ([`FakeCri::script`]): run until stopped, exit with a code after a delay, be OOM-killed,
//! ignore the stop signal (so only SIGKILL after the grace period ends it). Images are
//! present or not, pulls can be made to fail, and exec answers are scripted too. Every call
//! is recorded so tests can assert on what the kubelet asked for.
//!
//! [`FakeCri::simulated`] is the runtime of `skiff sim-nodes`: every image is present, no
//! call is recorded (it runs for days), and each container's behaviour and whether its
//! probes pass come from a [`ScriptSource`] asked at creation (the pod's annotations).
//!
//! Invariant: the fake keeps the runtime's contract: states only move
//! Created → Running → Stopped, an exit is recorded with its time, `wait` resolves on exit.

use super::cri::{Credentials, Cri, CriError, ExecOutput, FsStats, ImageInfo, StoredImage};
use crate::runtime::containers::state::has_labels;
use crate::runtime::containers::{ContainerConfig, ContainerState, ExitStatus, Resources, Status};
use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What a started container does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behavior {
    /// Runs until stopped or killed.
    Run,
    /// Exits with `code` after `after`.
    Exit { code: i32, after: Duration },
    /// Killed by the OOM killer after `after` (exit code 137).
    Oom { after: Duration },
    /// Ignores the stop signal: only SIGKILL (after the grace period) ends it.
    IgnoreStop,
}

/// What a simulated container does and whether its probes pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scripted {
    pub behavior: Behavior,
    /// `false`: readiness probes fail (liveness and startup probes still pass).
    pub ready: bool,
}

impl Default for Scripted {
    fn default() -> Scripted {
        Scripted {
            behavior: Behavior::Run,
            ready: true,
        }
    }
}

/// Decides, when a container is created, what it will do (see [`FakeCri::simulated`]).
pub type ScriptSource = Arc<dyn Fn(&ContainerConfig) -> Scripted + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Pull(String, Option<Credentials>),
    Create(String),
    Start(String),
    Stop(String, Duration),
    Kill(String, i32),
    Remove(String),
    Exec(String, Vec<String>),
    EnsurePodCgroup(String, Resources),
    UpdateResources(String, Resources),
    MountImage(String, std::path::PathBuf),
    UnmountImage(std::path::PathBuf),
    RemovePodCgroup(String),
}

struct Container {
    state: ContainerState,
    config: ContainerConfig,
    behavior: Behavior,
    /// Readiness answer of a simulated container's probes.
    ready: bool,
    exited: watch::Sender<Option<ExitStatus>>,
}

#[derive(Default)]
struct Inner {
    containers: HashMap<String, Container>,
    images: BTreeSet<String>,
    pull_errors: HashMap<String, String>,
    /// Per container name: behaviours for successive starts (last one repeats).
    scripts: HashMap<String, VecDeque<Behavior>>,
    /// Per container name: exec results (last one repeats); default exit 0.
    exec_results: HashMap<String, VecDeque<i32>>,
    calls: Vec<Call>,
    /// Simulated: every image present, calls not recorded, behaviour from the source.
    source: Option<ScriptSource>,
    /// Pod cgroups that exist (path → resources).
    pod_cgroups: BTreeMap<String, Resources>,
    /// What `image_fs_info` answers; each image takes [`FAKE_IMAGE_SIZE`] of it.
    image_fs: FsStats,
    /// See [`FakeCri::fail_stops`].
    fail_stops: bool,
}

/// The size every fake image reports.
pub const FAKE_IMAGE_SIZE: u64 = 1 << 20;

impl Inner {
    /// Records a call, except on a simulated node (which would grow without end).
    fn record(&mut self, call: Call) {
        if self.source.is_none() {
            self.calls.push(call);
        }
    }
}

/// See the module docs. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct FakeCri {
    inner: Arc<Mutex<Inner>>,
}

fn now() -> String {
    crate::runtime::containers::state::now_rfc3339()
}

impl FakeCri {
    pub fn new() -> FakeCri {
        FakeCri::default()
    }

    /// The runtime of a simulated node: every image is present, calls are not recorded,
    /// and `source` decides each container's behaviour and readiness at creation; probes
    /// of every kind are answered here ([`Cri::simulated_probe`]), never dialled.
    pub fn simulated(source: ScriptSource) -> FakeCri {
        let fake = FakeCri::default();
        fake.inner.lock().source = Some(source);
        fake
    }

    /// The image filesystem `image_fs_info` reports.
    pub fn set_image_fs(&self, fs: FsStats) {
        self.inner.lock().image_fs = fs;
    }

    /// The images present (by name, which is also their id here).
    pub fn images(&self) -> Vec<String> {
        self.inner.lock().images.iter().cloned().collect()
    }

    pub fn with_image(self, image: &str) -> FakeCri {
        self.inner.lock().images.insert(image.to_owned());
        self
    }

    pub fn fail_pull(&self, image: &str, message: &str) {
        self.inner
            .lock()
            .pull_errors
            .insert(image.to_owned(), message.to_owned());
    }

    /// Successive starts of containers named `container` behave as listed.
    pub fn script(&self, container: &str, behaviors: Vec<Behavior>) {
        self.inner
            .lock()
            .scripts
            .insert(container.to_owned(), behaviors.into());
    }

    /// Successive execs in containers named `container` exit with these codes.
    pub fn script_exec(&self, container: &str, codes: Vec<i32>) {
        self.inner
            .lock()
            .exec_results
            .insert(container.to_owned(), codes.into());
    }

    /// The pod cgroups that exist now, with their resources.
    pub fn pod_cgroups(&self) -> BTreeMap<String, Resources> {
        self.inner.lock().pod_cgroups.clone()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().calls.clone()
    }

    pub fn configs(&self) -> Vec<ContainerConfig> {
        let g = self.inner.lock();
        let mut v: Vec<_> = g.containers.values().map(|c| c.config.clone()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// While set, stops fail and leave the container running (a runtime that cannot reach
    /// it).
    pub fn fail_stops(&self, fail: bool) {
        self.inner.lock().fail_stops = fail;
    }

    /// Makes a running container exit now (as if its process died).
    pub fn exit(&self, id: &str, code: i32) {
        finish(&self.inner, id, code, false);
    }

    fn create_now(
        &self,
        config: ContainerConfig,
        scripted: Option<Scripted>,
    ) -> Result<String, CriError> {
        let mut g = self.inner.lock();
        g.record(Call::Create(config.id.clone()));
        if g.containers.contains_key(&config.id) {
            Err(CriError::Runtime(format!(
                "container {} already exists",
                config.id
            )))
        } else if g.source.is_none() && !g.images.contains(&config.image) {
            Err(CriError::ImageNotFound(config.image.clone()))
        } else {
            let name = FakeCri::name_of(&config);
            let (behavior, ready) = match scripted {
                Some(s) => (s.behavior, s.ready),
                None => {
                    let b = match g.scripts.get_mut(&name) {
                        Some(q) if q.len() > 1 => q.pop_front().unwrap_or(Behavior::Run),
                        Some(q) => q.front().cloned().unwrap_or(Behavior::Run),
                        None => Behavior::Run,
                    };
                    (b, true)
                }
            };
            let state = ContainerState {
                id: config.id.clone(),
                status: Status::Created,
                pid: 0,
                shim_pid: 0,
                exit_code: None,
                oom_killed: false,
                created_at: now(),
                started_at: None,
                finished_at: None,
                error: None,
                image: config.image.clone(),
                log_path: config.log_path.clone().unwrap_or_default(),
                runtime: "fake".into(),
                labels: config.labels.clone(),
            };
            let id = config.id.clone();
            // A simulated node keeps only what it answers from (environments and mounts
            // of thousands of pods would be most of its memory).
            let config = if g.source.is_some() {
                ContainerConfig {
                    id: config.id,
                    image: config.image,
                    labels: config.labels,
                    ..ContainerConfig::default()
                }
            } else {
                config
            };
            let (exited, _) = watch::channel(None);
            g.containers.insert(
                id.clone(),
                Container {
                    state,
                    config,
                    behavior,
                    ready,
                    exited,
                },
            );
            Ok(id)
        }
    }

    fn name_of(config: &ContainerConfig) -> String {
        config
            .labels
            .get(super::labels::CONTAINER_NAME)
            .cloned()
            .unwrap_or_default()
    }
}

fn finish(inner: &Mutex<Inner>, id: &str, code: i32, oom: bool) {
    let mut g = inner.lock();
    if let Some(c) = g.containers.get_mut(id) {
        if c.state.status == Status::Running || c.state.status == Status::Created {
            c.state.status = Status::Stopped;
            c.state.exit_code = Some(code);
            c.state.oom_killed = oom;
            c.state.finished_at = Some(now());
            let _ = c.exited.send(Some(ExitStatus {
                code,
                oom_killed: oom,
            }));
        }
    }
}

fn later(inner: Arc<Mutex<Inner>>, id: String, after: Duration, code: i32, oom: bool) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        finish(&inner, &id, code, oom);
    });
}

impl Cri for FakeCri {
    fn image_status(&self, image: &str) -> BoxFuture<'_, Result<Option<ImageInfo>, CriError>> {
        let g = self.inner.lock();
        let present = g.source.is_some() || g.images.contains(image);
        drop(g);
        let info = present.then(|| info(image));
        async move { Ok(info) }.boxed()
    }

    fn pull_image(
        &self,
        image: &str,
        credentials: Option<Credentials>,
    ) -> BoxFuture<'_, Result<ImageInfo, CriError>> {
        let mut g = self.inner.lock();
        if g.source.is_some() {
            let r = Ok(info(image));
            return async move { r }.boxed();
        }
        g.calls.push(Call::Pull(image.to_owned(), credentials));
        let r = match g.pull_errors.get(image) {
            Some(m) => Err(CriError::Pull(m.clone())),
            None => {
                g.images.insert(image.to_owned());
                Ok(info(image))
            }
        };
        async move { r }.boxed()
    }

    fn create_container(&self, config: ContainerConfig) -> BoxFuture<'_, Result<String, CriError>> {
        // The source is asked outside the lock.
        let source = self.inner.lock().source.clone();
        let scripted = source.map(|s| s(&config));
        async move { self.create_now(config, scripted) }.boxed()
    }

    fn simulated_probe(&self, id: &str, kind: super::probes::Kind) -> Option<Result<(), String>> {
        let g = self.inner.lock();
        g.source.as_ref()?;
        Some(match g.containers.get(id) {
            Some(c) if c.state.status == Status::Running => {
                if kind == super::probes::Kind::Readiness && !c.ready {
                    Err("simulated: readiness fails (sim.skiff.io/ready=false)".into())
                } else {
                    Ok(())
                }
            }
            _ => Err("container is not running".into()),
        })
    }

    fn start_container(&self, id: &str) -> BoxFuture<'_, Result<(), CriError>> {
        let mut g = self.inner.lock();
        g.record(Call::Start(id.to_owned()));
        let r = match g.containers.get_mut(id) {
            None => Err(CriError::NotFound(id.to_owned())),
            Some(c) if c.state.status != Status::Created => {
                Err(CriError::Runtime(format!("container {id} is not created")))
            }
            Some(c) => {
                c.state.status = Status::Running;
                c.state.pid = 4242;
                c.state.started_at = Some(now());
                match c.behavior {
                    Behavior::Exit { code, after } => {
                        later(self.inner.clone(), id.to_owned(), after, code, false)
                    }
                    Behavior::Oom { after } => {
                        later(self.inner.clone(), id.to_owned(), after, 137, true)
                    }
                    Behavior::Run | Behavior::IgnoreStop => {}
                }
                Ok(())
            }
        };
        async move { r }.boxed()
    }

    fn stop_container(
        &self,
        id: &str,
        grace: Duration,
    ) -> BoxFuture<'_, Result<ExitStatus, CriError>> {
        let id = id.to_owned();
        async move {
            let (behavior, mut rx) = {
                let mut g = self.inner.lock();
                g.record(Call::Stop(id.clone(), grace));
                if g.fail_stops {
                    return Err(CriError::Runtime(format!(
                        "simulated: stopping {id} failed"
                    )));
                }
                match g.containers.get(&id) {
                    None => return Err(CriError::NotFound(id)),
                    Some(c) => (c.behavior.clone(), c.exited.subscribe()),
                }
            };
            if behavior == Behavior::IgnoreStop {
                tokio::time::sleep(grace).await;
                finish(&self.inner, &id, 137, false);
            } else {
                finish(&self.inner, &id, 143, false);
            }
            let st = rx.wait_for(|s| s.is_some()).await.map(|s| *s);
            match st {
                Ok(Some(s)) => Ok(s),
                _ => Err(CriError::NotFound(id)),
            }
        }
        .boxed()
    }

    fn kill_container(&self, id: &str, signal: i32) -> BoxFuture<'_, Result<(), CriError>> {
        self.inner.lock().record(Call::Kill(id.to_owned(), signal));
        finish(&self.inner, id, 128 + signal, false);
        async { Ok(()) }.boxed()
    }

    fn ensure_pod_cgroup(
        &self,
        path: &str,
        resources: Resources,
    ) -> BoxFuture<'_, Result<(), CriError>> {
        let mut g = self.inner.lock();
        g.record(Call::EnsurePodCgroup(path.to_owned(), resources.clone()));
        if g.source.is_none() {
            g.pod_cgroups.insert(path.to_owned(), resources);
        }
        async { Ok(()) }.boxed()
    }

    fn update_container_resources(
        &self,
        _cgroup_parent: Option<&str>,
        id: &str,
        resources: Resources,
    ) -> BoxFuture<'_, Result<(), CriError>> {
        let mut g = self.inner.lock();
        g.record(Call::UpdateResources(id.to_owned(), resources.clone()));
        if let Some(c) = g.containers.get_mut(id) {
            c.config.resources = resources;
        }
        async { Ok(()) }.boxed()
    }

    fn mount_image(
        &self,
        image: &str,
        target: &std::path::Path,
    ) -> BoxFuture<'_, Result<(), CriError>> {
        let mut g = self.inner.lock();
        g.record(Call::MountImage(image.to_owned(), target.to_owned()));
        let known = g.images.contains(image);
        // The mount point, as the runtime leaves it (not on a simulated node: nothing
        // there reads it).
        if known && g.source.is_none() {
            let _ = std::fs::create_dir_all(target);
        }
        let image = image.to_owned();
        async move {
            if known {
                Ok(())
            } else {
                Err(CriError::Runtime(format!("image {image} not found")))
            }
        }
        .boxed()
    }

    fn unmount_image(&self, target: &std::path::Path) -> BoxFuture<'_, Result<(), CriError>> {
        self.inner
            .lock()
            .record(Call::UnmountImage(target.to_owned()));
        let _ = std::fs::remove_dir(target);
        async { Ok(()) }.boxed()
    }

    fn writable_layer_usage(&self, _id: &str) -> BoxFuture<'_, Result<u64, CriError>> {
        async { Ok(0) }.boxed()
    }

    fn remove_pod_cgroup(&self, path: &str) -> BoxFuture<'_, Result<(), CriError>> {
        let mut g = self.inner.lock();
        g.record(Call::RemovePodCgroup(path.to_owned()));
        g.pod_cgroups.remove(path);
        async { Ok(()) }.boxed()
    }

    fn remove_container(&self, id: &str) -> BoxFuture<'_, Result<(), CriError>> {
        finish(&self.inner, id, 137, false);
        let mut g = self.inner.lock();
        g.record(Call::Remove(id.to_owned()));
        g.containers.remove(id);
        async { Ok(()) }.boxed()
    }

    fn container_status(
        &self,
        id: &str,
    ) -> BoxFuture<'_, Result<Option<ContainerState>, CriError>> {
        let st = self
            .inner
            .lock()
            .containers
            .get(id)
            .map(|c| c.state.clone());
        async move { Ok(st) }.boxed()
    }

    fn list_images(&self) -> BoxFuture<'_, Result<Vec<StoredImage>, CriError>> {
        let g = self.inner.lock();
        let v = g
            .images
            .iter()
            .map(|i| StoredImage {
                id: i.clone(),
                size: FAKE_IMAGE_SIZE,
                in_use: g.containers.values().any(|c| &c.config.image == i),
            })
            .collect();
        async move { Ok(v) }.boxed()
    }

    fn image_fs_info(&self) -> BoxFuture<'_, Result<FsStats, CriError>> {
        let fs = self.inner.lock().image_fs;
        async move { Ok(fs) }.boxed()
    }

    fn remove_images(&self, ids: Vec<String>) -> BoxFuture<'_, Result<u64, CriError>> {
        let mut g = self.inner.lock();
        let mut freed = 0;
        for id in ids {
            if g.images.remove(&id) {
                freed += FAKE_IMAGE_SIZE;
                g.image_fs.available += FAKE_IMAGE_SIZE;
            }
        }
        async move { Ok(freed) }.boxed()
    }

    fn list_containers_labelled<'a>(
        &'a self,
        wanted: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Vec<ContainerState>, CriError>> {
        let mut v: Vec<_> = self
            .inner
            .lock()
            .containers
            .values()
            .filter(|c| has_labels(&c.state.labels, wanted))
            .map(|c| c.state.clone())
            .collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        async move { Ok(v) }.boxed()
    }

    fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        _timeout: Duration,
    ) -> BoxFuture<'_, Result<ExecOutput, CriError>> {
        let mut g = self.inner.lock();
        g.record(Call::Exec(id.to_owned(), cmd));
        let name = match g.containers.get(id) {
            Some(c) if c.state.status == Status::Running => FakeCri::name_of(&c.config),
            _ => {
                return async move { Err(CriError::Runtime("container is not running".into())) }
                    .boxed()
            }
        };
        let code = match g.exec_results.get_mut(&name) {
            Some(q) if q.len() > 1 => q.pop_front().unwrap_or(0),
            Some(q) => q.front().copied().unwrap_or(0),
            None => 0,
        };
        async move {
            Ok(ExecOutput {
                code,
                output: Vec::new(),
            })
        }
        .boxed()
    }

    fn wait_container(&self, id: &str) -> BoxFuture<'_, Result<ExitStatus, CriError>> {
        let rx = self
            .inner
            .lock()
            .containers
            .get(id)
            .map(|c| c.exited.subscribe());
        let id = id.to_owned();
        async move {
            let Some(mut rx) = rx else {
                return Err(CriError::NotFound(id));
            };
            match rx.wait_for(|s| s.is_some()).await.map(|s| *s) {
                Ok(Some(s)) => Ok(s),
                // Removed while waited on.
                _ => Err(CriError::NotFound(id)),
            }
        }
        .boxed()
    }
}

fn info(image: &str) -> ImageInfo {
    let repo = image.split(':').next().unwrap_or(image);
    ImageInfo {
        reference: image.to_owned(),
        image_ref: format!("{repo}@sha256:{}", "0".repeat(64)),
        user: None,
    }
}

/// Labels of the containers of one pod uid (test helper).
pub fn pod_containers(states: &[ContainerState], uid: &str) -> Vec<BTreeMap<String, String>> {
    states
        .iter()
        .filter(|s| s.labels.get(super::labels::POD_UID).map(String::as_str) == Some(uid))
        .map(|s| s.labels.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::probes::Kind;

    #[tokio::test]
    async fn a_simulated_runtime_has_every_image_scripts_from_its_source_and_answers_probes() {
        let source: ScriptSource = Arc::new(|config: &ContainerConfig| {
            let failing =
                config.labels.get(super::super::labels::CONTAINER_NAME) == Some(&"bad".to_owned());
            Scripted {
                behavior: if failing {
                    Behavior::Exit {
                        code: 3,
                        after: Duration::ZERO,
                    }
                } else {
                    Behavior::Run
                },
                ready: !failing,
            }
        });
        let cri = FakeCri::simulated(source);
        assert!(cri.image_status("any/image:1").await.unwrap().is_some());
        let config = |id: &str, name: &str| ContainerConfig {
            id: id.into(),
            image: "never/pulled".into(),
            labels: BTreeMap::from([(
                super::super::labels::CONTAINER_NAME.to_owned(),
                name.to_owned(),
            )]),
            ..ContainerConfig::default()
        };
        let good = cri.create_container(config("g", "good")).await.unwrap();
        let bad = cri.create_container(config("b", "bad")).await.unwrap();
        // Not running yet: probes fail.
        assert!(cri
            .simulated_probe(&good, Kind::Readiness)
            .unwrap()
            .is_err());
        cri.start_container(&good).await.unwrap();
        cri.start_container(&bad).await.unwrap();
        assert_eq!(cri.simulated_probe(&good, Kind::Readiness), Some(Ok(())));
        assert_eq!(cri.wait_container(&bad).await.unwrap().code, 3);
        // Nothing is recorded on a simulated node.
        assert!(cri.calls().is_empty());
        // A test fake answers no probes itself.
        assert_eq!(FakeCri::new().simulated_probe(&good, Kind::Liveness), None);
    }

    #[tokio::test]
    async fn a_simulated_container_that_is_not_ready_still_passes_liveness() {
        let source: ScriptSource = Arc::new(|_: &ContainerConfig| Scripted {
            behavior: Behavior::Run,
            ready: false,
        });
        let cri = FakeCri::simulated(source);
        let id = cri
            .create_container(ContainerConfig {
                id: "c".into(),
                image: "x".into(),
                ..ContainerConfig::default()
            })
            .await
            .unwrap();
        cri.start_container(&id).await.unwrap();
        assert!(cri.simulated_probe(&id, Kind::Readiness).unwrap().is_err());
        assert_eq!(cri.simulated_probe(&id, Kind::Liveness), Some(Ok(())));
        assert_eq!(cri.simulated_probe(&id, Kind::Startup), Some(Ok(())));
    }
}
