//! `Runtime`: images + snapshots + shims behind one async API (what the kubelet and
//! `skiff ctr` use).
//!
//! Invariant: the runtime keeps no container state in memory; everything is read from
//! `<agent>/containers/<id>/` and the live shims, so a new `Runtime` after the previous
//! process was SIGKILLed sees exactly what the old one would have (re-adoption is free).
//! The one thing remembered is each listed container's labels, which never change in its
//! life: a listing filtered by label reads the state of the matching containers only.

use super::cgroups::{CgroupSet, Hierarchies};
use super::shim::protocol::{self as proto, ProtocolError, Request, Response};
use super::shim::{self, ShimConfig, ShimError};
use super::spec::{self, Accounts, SpecError};
use super::state::{ContainerState, Status};
use super::{validate_id, ContainerConfig, ContainerId, ExecConfig, ExitStatus, RuntimeKind};
use crate::runtime::images::{ImageError, ImageStore, RegistriesConfig};
use crate::runtime::snapshots::{SnapshotError, Snapshotter};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid container id {0:?}")]
    InvalidId(String),
    #[error("container {0} already exists")]
    AlreadyExists(String),
    #[error("container {0} not found")]
    NotFound(String),
    #[error("container {0} is running (stop it first or force)")]
    Running(String),
    #[error("image {0} not found")]
    ImageNotFound(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Shim(#[from] ShimError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error(transparent)]
    Cgroup(#[from] super::cgroups::CgroupError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("background task failed: {0}")]
    Join(String),
    #[error("exec timed out after {0:?} (the process was killed)")]
    ExecTimeout(Duration),
    #[error("invalid cgroup path {0:?} (relative, without `..`)")]
    InvalidCgroup(String),
}

#[derive(Debug, Default, Clone)]
pub struct RuntimeOptions {
    pub registries: RegistriesConfig,
    /// Binary re-executed as the shim; default: the running executable.
    pub shim_exe: Option<PathBuf>,
    /// Pull images that are not in the store on `create`.
    pub pull_missing: bool,
}

/// Standard streams for an exec: pipes/files, or one pty slave (tty mode).
pub enum ExecIo {
    Pipes {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Tty(OwnedFd),
}

pub struct Runtime {
    agent_dir: PathBuf,
    containers: PathBuf,
    labels: Arc<LabelIndex>,
    images: Arc<ImageStore>,
    snapshots: Arc<Snapshotter>,
    shim_exe: PathBuf,
    pull_missing: bool,
}

/// Which directory a container id names: a container removed and made again under the
/// same id gets a new directory, told apart by its birth time (the inode number alone is
/// often reused at once). Birth times are as coarse as the kernel clock (a few ms), so a
/// remove and make within one tick that also reuses the inode would keep stale labels:
/// harmless for the kubelet, whose ids are derived from the very labels they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirIdentity {
    inode: u64,
    born: Option<std::time::SystemTime>,
}

impl DirIdentity {
    fn of(meta: &std::fs::Metadata) -> DirIdentity {
        DirIdentity {
            inode: std::os::unix::fs::MetadataExt::ino(meta),
            born: meta.created().ok(),
        }
    }
}

/// The labels of the containers seen by a listing, by id and directory.
#[derive(Default)]
struct LabelIndex(parking_lot::Mutex<HashMap<String, (DirIdentity, Labels)>>);

type Labels = BTreeMap<String, String>;

impl LabelIndex {
    fn known_not_to_match(
        &self,
        id: &str,
        dir: DirIdentity,
        matches: &dyn Fn(&Labels) -> bool,
    ) -> bool {
        // Without a birth time a directory cannot be told from its successor: read it.
        dir.born.is_some()
            && self
                .0
                .lock()
                .get(id)
                .is_some_and(|(d, labels)| *d == dir && !matches(labels))
    }

    fn remember(&self, id: String, dir: DirIdentity, labels: &Labels) {
        let mut known = self.0.lock();
        if known.get(&id).is_none_or(|(d, _)| *d != dir) {
            known.insert(id, (dir, labels.clone()));
        }
    }

    fn forget_all_but(&self, listed: &HashSet<String>) {
        self.0.lock().retain(|id, _| listed.contains(id));
    }
}

/// A socket read that ran into its timeout.
fn is_timeout(e: &ProtocolError) -> bool {
    matches!(e, ProtocolError::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// `/<runtime parent>/<rel>` for a caller-named cgroup.
fn group_path(rel: &str) -> Result<String, RuntimeError> {
    let ok = !rel.is_empty()
        && !rel.starts_with('/')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !ok {
        return Err(RuntimeError::InvalidCgroup(rel.to_owned()));
    }
    Ok(format!("/{}/{rel}", super::cgroups::cgroup_parent()))
}

/// The cgroupsPath of container `id`: under `parent` when given (its pod's cgroup).
fn container_cgroup(parent: Option<&str>, id: &str) -> Result<String, RuntimeError> {
    group_path(&match parent {
        Some(p) => format!("{p}/{id}"),
        None => id.to_owned(),
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RuntimeError::Join(e.to_string()))?
}

impl Runtime {
    pub fn open(agent_dir: &Path, opts: RuntimeOptions) -> Result<Runtime, RuntimeError> {
        let containers = agent_dir.join("containers");
        std::fs::create_dir_all(&containers)?;
        let shim_exe = match opts.shim_exe {
            Some(p) => p,
            None => std::env::current_exe()?,
        };
        Ok(Runtime {
            agent_dir: agent_dir.to_path_buf(),
            labels: Arc::default(),
            images: Arc::new(ImageStore::open(agent_dir, opts.registries)?),
            snapshots: Arc::new(Snapshotter::new(agent_dir)),
            containers,
            shim_exe,
            pull_missing: opts.pull_missing,
        })
    }

    /// Creates the cgroup `rel` (relative to the runtime's parent; intermediate cgroups
    /// too) or updates its limits: a pod cgroup that containers are then created under.
    pub async fn ensure_cgroup(
        &self,
        rel: &str,
        resources: &super::Resources,
    ) -> Result<(), RuntimeError> {
        let path = group_path(rel)?;
        let res = spec::linux_resources(resources).map_err(SpecError::from)?;
        blocking(move || Ok(CgroupSet::plan(&Hierarchies::detect(), &path).create(Some(&res))?))
            .await
    }

    /// Changes the limits of container `id`'s cgroup (created under `parent`) while it runs.
    pub async fn update_resources(
        &self,
        parent: Option<&str>,
        id: &str,
        resources: &super::Resources,
    ) -> Result<(), RuntimeError> {
        self.existing_dir(id)?;
        let path = container_cgroup(parent, id)?;
        let res = spec::linux_resources(resources).map_err(SpecError::from)?;
        blocking(move || Ok(CgroupSet::plan(&Hierarchies::detect(), &path).create(Some(&res))?))
            .await
    }

    /// Mounts image `reference` (already pulled) read-only at `target`, an image volume;
    /// returns the image id. Idempotent.
    pub async fn mount_image(
        &self,
        reference: &str,
        target: &Path,
    ) -> Result<String, RuntimeError> {
        let image = self
            .images
            .get(reference)?
            .ok_or_else(|| RuntimeError::ImageNotFound(reference.to_owned()))?;
        let (images, snaps, target) = (
            self.images.clone(),
            self.snapshots.clone(),
            target.to_owned(),
        );
        blocking(move || {
            let layers = snaps.ensure_unpacked(&images, &image)?;
            crate::runtime::snapshots::overlay::mount_readonly(&target, &layers)?;
            Ok(image.id.clone())
        })
        .await
    }

    /// Unmounts an image volume (absent is fine).
    pub async fn unmount_image(&self, target: &Path) -> Result<(), RuntimeError> {
        let target = target.to_owned();
        blocking(move || {
            Ok(crate::runtime::snapshots::overlay::unmount_readonly(
                &target,
            )?)
        })
        .await
    }

    /// Removes the cgroup `rel` once its containers are gone (absent is fine).
    pub async fn remove_cgroup(&self, rel: &str) -> Result<(), RuntimeError> {
        let path = group_path(rel)?;
        blocking(move || Ok(CgroupSet::plan(&Hierarchies::detect(), &path).remove()?)).await
    }

    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers.join(id)
    }

    fn existing_dir(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        if !validate_id(id) {
            return Err(RuntimeError::InvalidId(id.into()));
        }
        let d = self.container_dir(id);
        if d.join(super::state::STATE_FILE).exists() {
            Ok(d)
        } else {
            Err(RuntimeError::NotFound(id.into()))
        }
    }

    /// Prepares rootfs + bundle and starts the shim; the container waits for `start`.
    pub async fn create(&self, cfg: ContainerConfig) -> Result<ContainerId, RuntimeError> {
        if !validate_id(&cfg.id) {
            return Err(RuntimeError::InvalidId(cfg.id));
        }
        let cgroups_path = container_cgroup(cfg.cgroup_parent.as_deref(), &cfg.id)?;
        let image = match self.images.get(&cfg.image)? {
            Some(i) => i,
            None if self.pull_missing => self.images.pull(&cfg.image, None, None).await?,
            None => return Err(RuntimeError::ImageNotFound(cfg.image)),
        };
        let dir = self.container_dir(&cfg.id);
        if let Err(e) = std::fs::create_dir(&dir) {
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                RuntimeError::AlreadyExists(cfg.id)
            } else {
                e.into()
            });
        }
        let (images, snaps, exe, agent) = (
            self.images.clone(),
            self.snapshots.clone(),
            self.shim_exe.clone(),
            self.agent_dir.clone(),
        );
        let id = cfg.id.clone();
        let d = dir.clone();
        let res = blocking(move || {
            let layers = snaps.ensure_unpacked(&images, &image)?;
            let rootfs = snaps.mount_rootfs(&cfg.id, &layers)?;
            // Read inside the rootfs: an image's /etc/passwd may be a symlink to a host file.
            let read = |p: &str| super::in_root::read_to_string(&rootfs, Path::new(p)).ok();
            let passwd = read("etc/passwd");
            let group = read("etc/group");
            let accounts = Accounts {
                passwd: passwd.as_deref(),
                group: group.as_deref(),
            };
            let mut spec = spec::generate(&image.config, &cfg, accounts, &cgroups_path)?;
            let cgroups = CgroupSet::plan(&Hierarchies::detect(), &cgroups_path);
            spec::add_cgroup_mounts(&mut spec, &cgroups, !cfg.security.privileged)?;
            std::fs::write(
                d.join("config.json"),
                serde_json::to_vec_pretty(&spec).map_err(std::io::Error::other)?,
            )?;
            let sc = ShimConfig {
                id: cfg.id.clone(),
                log_path: cfg
                    .log_path
                    .clone()
                    .unwrap_or_else(|| d.join("container.log")),
                external_runtime: match &cfg.runtime {
                    RuntimeKind::Embedded => None,
                    RuntimeKind::External(b) => Some(b.clone()),
                },
                runtime_root: agent.join("oci-runtime"),
                stdin: cfg.stdin,
                tty: cfg.tty,
                image: image.reference.clone(),
                labels: cfg.labels.clone(),
                cgroup_hierarchies: Some(Hierarchies::detect()),
            };
            std::fs::write(
                d.join(shim::SHIM_CONFIG),
                serde_json::to_vec(&sc).map_err(std::io::Error::other)?,
            )?;
            shim::spawn(&exe, &d)?;
            Ok(())
        })
        .await;
        if let Err(e) = res {
            let _ = self.cleanup(&id, &dir).await;
            return Err(e);
        }
        Ok(id)
    }

    async fn call(&self, id: &str, req: Request) -> Result<Response, RuntimeError> {
        let dir = self.existing_dir(id)?;
        blocking(move || Ok(proto::call(&dir, &req)?)).await
    }

    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.call(id, Request::Start).await.map(|_| ())
    }

    pub async fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let dir = self.existing_dir(id)?;
        Ok(shim::read_state(&dir)?)
    }

    /// Every container on disk, live or exited, oldest first (this is also re-adoption
    /// after a restart).
    pub async fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        self.list_labelled(&[]).await
    }

    /// The containers carrying every `(key, value)` label of `wanted`, oldest first. Each
    /// state read costs a file and a `/proc` read: a pod worker listing every container of
    /// the node on each sync made a burst of pods quadratic (a fifth of a 100-pod burst's
    /// CPU).
    pub async fn list_labelled(
        &self,
        wanted: &[(&str, &str)],
    ) -> Result<Vec<ContainerState>, RuntimeError> {
        let wanted: Vec<(String, String)> = wanted
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (dir, index) = (self.containers.clone(), self.labels.clone());
        blocking(move || {
            let matches = |labels: &Labels| super::state::has_labels(labels, &wanted);
            let mut out = Vec::new();
            let mut listed = HashSet::new();
            for e in std::fs::read_dir(&dir)? {
                let e = e?;
                let Ok(id) = e.file_name().into_string() else {
                    continue;
                };
                let Ok(made) = e.metadata().map(|m| DirIdentity::of(&m)) else {
                    continue; // removed meanwhile
                };
                listed.insert(id.clone());
                if index.known_not_to_match(&id, made, &matches) {
                    continue;
                }
                if let Ok(st) = shim::read_state(&e.path()) {
                    index.remember(id, made, &st.labels);
                    if matches(&st.labels) {
                        out.push(st);
                    }
                }
            }
            index.forget_all_but(&listed);
            out.sort_by(|a, b| a.created_at.cmp(&b.created_at));
            Ok(out)
        })
        .await
    }

    pub async fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        self.call(id, Request::Signal { signal }).await.map(|_| ())
    }

    /// Stop signal, then SIGKILL after `grace`; returns once the container has exited.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<ExitStatus, RuntimeError> {
        let st = self.state(id).await?;
        if st.status == Status::Stopped || st.status == Status::Unknown {
            return Ok(ExitStatus {
                code: st.exit_code.unwrap_or(255),
                oom_killed: st.oom_killed,
            });
        }
        self.call(
            id,
            Request::Stop {
                grace_ms: grace.as_millis() as u64,
            },
        )
        .await?;
        self.wait(id).await
    }

    pub async fn wait(&self, id: &str) -> Result<ExitStatus, RuntimeError> {
        let dir = self.existing_dir(id)?;
        blocking(move || {
            let st = shim::read_state(&dir)?;
            if matches!(st.status, Status::Stopped | Status::Unknown) {
                return Ok(ExitStatus {
                    code: st.exit_code.unwrap_or(255),
                    oom_killed: st.oom_killed,
                });
            }
            match proto::call(&dir, &Request::Wait)? {
                Response::Exited { status } => Ok(status),
                r => Err(ProtocolError::Bad(format!("unexpected answer {r:?}")).into()),
            }
        })
        .await
    }

    /// Attached stream (output frames in, stdin/resize frames out); see `shim::protocol`.
    pub async fn attach(&self, id: &str) -> Result<UnixStream, RuntimeError> {
        let dir = self.existing_dir(id)?;
        blocking(move || {
            let mut s = proto::connect(&dir)?;
            proto::write_json(&mut s, &Request::Attach)?;
            proto::read_response(&mut s)?;
            Ok(s)
        })
        .await
    }

    pub async fn resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), RuntimeError> {
        self.call(id, Request::Resize { rows, cols })
            .await
            .map(|_| ())
    }

    pub async fn exec(
        &self,
        id: &str,
        config: ExecConfig,
        io: ExecIo,
    ) -> Result<ExitStatus, RuntimeError> {
        self.exec_with_timeout(id, config, io, None).await
    }

    /// [`Runtime::exec`] that SIGKILLs the process once `timeout` has passed (an exec probe's
    /// `timeoutSeconds`, as containerd does) and then reports [`RuntimeError::ExecTimeout`].
    pub async fn exec_with_timeout(
        &self,
        id: &str,
        config: ExecConfig,
        io: ExecIo,
        timeout: Option<Duration>,
    ) -> Result<ExitStatus, RuntimeError> {
        let dir = self.existing_dir(id)?;
        // A zero socket timeout would mean none.
        let timeout = timeout.map(|t| t.max(Duration::from_millis(1)));
        blocking(move || {
            let s = proto::connect(&dir)?;
            let req = Request::Exec { config };
            match &io {
                ExecIo::Tty(t) => proto::send_with_fds(&s, &req, &[t.as_raw_fd()])?,
                ExecIo::Pipes {
                    stdin,
                    stdout,
                    stderr,
                } => {
                    let null;
                    let stdin_fd = match stdin {
                        Some(f) => f.as_raw_fd(),
                        None => {
                            null = std::fs::File::open("/dev/null")?;
                            null.as_raw_fd()
                        }
                    };
                    proto::send_with_fds(
                        &s,
                        &req,
                        &[stdin_fd, stdout.as_raw_fd(), stderr.as_raw_fd()],
                    )?
                }
            }
            // Our copies must close so the caller sees EOF when the process exits.
            drop(io);
            let mut s = s;
            let pid = match proto::read_response(&mut s)? {
                Response::ExecStarted { pid } => pid,
                r => return Err(ProtocolError::Bad(format!("unexpected answer {r:?}")).into()),
            };
            s.set_read_timeout(timeout)?;
            let exited = match proto::read_response(&mut s) {
                Err(e) if timeout.is_some() && is_timeout(&e) => {
                    // The shim has not reaped it (it answers when it does), so the pid is
                    // still this process.
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    s.set_read_timeout(Some(Duration::from_secs(2)))?;
                    let _ = proto::read_response(&mut s);
                    return Err(RuntimeError::ExecTimeout(timeout.unwrap_or_default()));
                }
                r => r?,
            };
            match exited {
                Response::Exited { status } => Ok(status),
                r => Err(ProtocolError::Bad(format!("unexpected answer {r:?}")).into()),
            }
        })
        .await
    }

    /// Stops (if `force`), shuts the shim down, removes cgroups, rootfs and the directory.
    pub async fn remove(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let dir = self.existing_dir(id)?;
        let st = self.state(id).await?;
        if matches!(st.status, Status::Created | Status::Running) {
            if !force {
                return Err(RuntimeError::Running(id.into()));
            }
            self.stop(id, Duration::ZERO).await?;
        }
        if shim::pid_alive(st.shim_pid) {
            self.call(id, Request::Shutdown).await?;
            let pid = st.shim_pid;
            blocking(move || {
                shim::wait_gone(pid, Duration::from_secs(1));
                Ok(())
            })
            .await?;
        }
        self.cleanup(id, &dir).await
    }

    /// Idempotent teardown of whatever exists for `id` (also after a dead shim).
    async fn cleanup(&self, id: &str, dir: &Path) -> Result<(), RuntimeError> {
        let (snaps, id, dir) = (self.snapshots.clone(), id.to_string(), dir.to_path_buf());
        blocking(move || {
            // The path the container was created with (under its pod's cgroup, say); a
            // container without a readable spec was never started in any other.
            let rel = std::fs::read(dir.join("config.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<oci_spec::runtime::Spec>(&b).ok())
                .and_then(|s| s.linux().as_ref()?.cgroups_path().clone())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("/{}/{id}", super::cgroups::cgroup_parent()));
            let cg = CgroupSet::plan(&Hierarchies::detect(), &rel);
            for pid in cg.pids() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if let Ok(sc) = std::fs::read(dir.join(shim::SHIM_CONFIG)) {
                if let Ok(sc) = serde_json::from_slice::<ShimConfig>(&sc) {
                    if let Some(bin) = &sc.external_runtime {
                        super::external::delete(bin, &sc);
                    }
                }
            }
            cg.remove()?;
            snaps.remove_rootfs(&id)?;
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::containers::state::{for_test, write_atomic};

    /// Writes an exited container `id` labelled `pod=<pod>` (no shim needed).
    fn exited(rt: &Runtime, id: &str, pod: &str) {
        let dir = rt.container_dir(id);
        std::fs::create_dir_all(&dir).unwrap();
        let st = ContainerState {
            status: Status::Stopped,
            shim_pid: 0,
            exit_code: Some(0),
            labels: BTreeMap::from([("pod".to_owned(), pod.to_owned())]),
            ..for_test(id)
        };
        write_atomic(&dir, &st).unwrap();
    }

    fn ids(states: &[ContainerState]) -> Vec<&str> {
        states.iter().map(|s| s.id.as_str()).collect()
    }

    #[tokio::test]
    async fn a_labelled_listing_reads_labels_once_per_container_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let rt = Runtime::open(tmp.path(), RuntimeOptions::default()).unwrap();
        exited(&rt, "a1", "a");
        exited(&rt, "b1", "b");
        exited(&rt, "a2", "a");
        let a = rt.list_labelled(&[("pod", "a")]).await.unwrap();
        assert_eq!(ids(&a), ["a1", "a2"]);
        assert_eq!(rt.list().await.unwrap().len(), 3);

        // Labels never change in a container's life, so b1's are not read again: a state
        // rewritten in place (which the runtime never does) goes unnoticed by the filter
        // (where the file system keeps birth times; without them every state is read)...
        exited(&rt, "b1", "a");
        let a = rt.list_labelled(&[("pod", "a")]).await.unwrap();
        if std::fs::metadata(tmp.path())
            .and_then(|m| m.created())
            .is_ok()
        {
            assert_eq!(ids(&a), ["a1", "a2"]);
        }

        // ...but a container made again under the same id has a new directory and is read
        // (a clock tick later: birth times are as coarse as the kernel's clock).
        std::fs::remove_dir_all(rt.container_dir("b1")).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        exited(&rt, "b1", "a");
        let a = rt.list_labelled(&[("pod", "a")]).await.unwrap();
        assert_eq!(ids(&a), ["a1", "a2", "b1"]);

        // Removed containers leave the index and the listings.
        std::fs::remove_dir_all(rt.container_dir("a1")).unwrap();
        let a = rt.list_labelled(&[("pod", "a")]).await.unwrap();
        assert_eq!(ids(&a), ["a2", "b1"]);
        assert!(!rt.labels.0.lock().contains_key("a1"));
        assert!(rt.list_labelled(&[("pod", "b")]).await.unwrap().is_empty());
    }
}
