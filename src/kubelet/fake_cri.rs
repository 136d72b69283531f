//! An in-memory [`Cri`] for tests: containers are records, processes are timers.
//!
//! What a container does once started is scripted per container name
//! ([`FakeCri::script`]): run until stopped, exit with a code after a delay, be OOM-killed,
//! ignore the stop signal (so only SIGKILL after the grace period ends it). Images are
//! present or not, pulls can be made to fail, and exec answers are scripted too. Every call
//! is recorded so tests can assert on what the kubelet asked for.
//!
//! Invariant: the fake keeps the runtime's contract: states only move
//! Created → Running → Stopped, an exit is recorded with its time, `wait` resolves on exit.

use super::cri::{Credentials, Cri, CriError, ExecOutput, ImageInfo};
use crate::runtime::containers::{ContainerConfig, ContainerState, ExitStatus, Status};
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Pull(String, Option<Credentials>),
    Create(String),
    Start(String),
    Stop(String, Duration),
    Kill(String, i32),
    Remove(String),
    Exec(String, Vec<String>),
}

struct Container {
    state: ContainerState,
    config: ContainerConfig,
    behavior: Behavior,
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

    pub fn calls(&self) -> Vec<Call> {
        self.inner.lock().calls.clone()
    }

    pub fn configs(&self) -> Vec<ContainerConfig> {
        let g = self.inner.lock();
        let mut v: Vec<_> = g.containers.values().map(|c| c.config.clone()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Makes a running container exit now (as if its process died).
    pub fn exit(&self, id: &str, code: i32) {
        finish(&self.inner, id, code, false);
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
        let present = self.inner.lock().images.contains(image);
        let info = present.then(|| info(image));
        async move { Ok(info) }.boxed()
    }

    fn pull_image(
        &self,
        image: &str,
        credentials: Option<Credentials>,
    ) -> BoxFuture<'_, Result<ImageInfo, CriError>> {
        let mut g = self.inner.lock();
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
        let mut g = self.inner.lock();
        g.calls.push(Call::Create(config.id.clone()));
        let r = if g.containers.contains_key(&config.id) {
            Err(CriError::Runtime(format!(
                "container {} already exists",
                config.id
            )))
        } else if !g.images.contains(&config.image) {
            Err(CriError::ImageNotFound(config.image.clone()))
        } else {
            let name = FakeCri::name_of(&config);
            let behavior = match g.scripts.get_mut(&name) {
                Some(q) if q.len() > 1 => q.pop_front().unwrap_or(Behavior::Run),
                Some(q) => q.front().cloned().unwrap_or(Behavior::Run),
                None => Behavior::Run,
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
            let (exited, _) = watch::channel(None);
            g.containers.insert(
                id.clone(),
                Container {
                    state,
                    config,
                    behavior,
                    exited,
                },
            );
            Ok(id)
        };
        async move { r }.boxed()
    }

    fn start_container(&self, id: &str) -> BoxFuture<'_, Result<(), CriError>> {
        let mut g = self.inner.lock();
        g.calls.push(Call::Start(id.to_owned()));
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
                g.calls.push(Call::Stop(id.clone(), grace));
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
        self.inner
            .lock()
            .calls
            .push(Call::Kill(id.to_owned(), signal));
        finish(&self.inner, id, 128 + signal, false);
        async { Ok(()) }.boxed()
    }

    fn remove_container(&self, id: &str) -> BoxFuture<'_, Result<(), CriError>> {
        finish(&self.inner, id, 137, false);
        let mut g = self.inner.lock();
        g.calls.push(Call::Remove(id.to_owned()));
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

    fn list_containers(&self) -> BoxFuture<'_, Result<Vec<ContainerState>, CriError>> {
        let mut v: Vec<_> = self
            .inner
            .lock()
            .containers
            .values()
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
        g.calls.push(Call::Exec(id.to_owned(), cmd));
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
