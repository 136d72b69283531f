//! Per-container cgroups under a `skiff` parent, on cgroup v1, v2 or a hybrid of both.
//!
//! The hierarchy roots are discovered at run time from `/proc/self/mountinfo` and passed
//! around as paths, so the file writing is tested on tempdir fixtures. Invariant: every
//! directory `create` makes is listed in the `CgroupSet`, and `remove` removes exactly those.

use oci_spec::runtime::{LinuxDeviceType, LinuxResources};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cgroup {0} still has processes")]
    Busy(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// v1 controllers a container cgroup is made in (cpuset is left alone: it needs cpus/mems
/// copied down before any task can join, and no limit here uses it).
const V1_CONTROLLERS: &[&str] = &["cpu", "cpuacct", "memory", "pids", "devices"];
const V2_CONTROLLERS: &[&str] = &["cpu", "memory", "pids"];

/// Where the cgroup file systems are mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hierarchies {
    /// (mount point, controllers on it) for each v1 hierarchy we use.
    pub v1: Vec<(PathBuf, Vec<String>)>,
    pub v2: Option<PathBuf>,
}

impl Hierarchies {
    /// This host's hierarchies, read once per process: every container start used to
    /// parse the whole mount table (which grows with each pod's mounts) several times.
    /// Cgroup file systems are mounted at boot and do not move while we run.
    pub fn detect() -> Hierarchies {
        static DETECTED: std::sync::OnceLock<Hierarchies> = std::sync::OnceLock::new();
        DETECTED
            .get_or_init(|| {
                std::fs::read_to_string("/proc/self/mountinfo")
                    .map(|t| Self::from_mountinfo(&t))
                    .unwrap_or_default()
            })
            .clone()
    }

    pub fn from_mountinfo(text: &str) -> Hierarchies {
        let mut h = Hierarchies::default();
        for line in text.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = pre.split(' ').nth(4).unwrap_or("");
            let mut post = post.split(' ');
            let fstype = post.next().unwrap_or("");
            let superopts = post.nth(1).unwrap_or("");
            match fstype {
                "cgroup2" => h.v2 = Some(PathBuf::from(mount_point)),
                "cgroup" => {
                    let ctrls: Vec<String> = superopts
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o))
                        .map(str::to_string)
                        .collect();
                    if !ctrls.is_empty() && !h.v1.iter().any(|(p, _)| p == Path::new(mount_point)) {
                        h.v1.push((PathBuf::from(mount_point), ctrls));
                    }
                }
                _ => {}
            }
        }
        h
    }

    /// Which of the controllers pod limits need (cpu, memory, pids) no mounted hierarchy
    /// offers. Without them a container would run unlimited, so a node refuses to start.
    pub fn missing_controllers(&self) -> Vec<&'static str> {
        let v2 = self
            .v2
            .as_deref()
            .map(|root| self.v2_controllers(root))
            .unwrap_or_default();
        V2_CONTROLLERS
            .iter()
            .copied()
            .filter(|c| {
                !self.v1.iter().any(|(_, cs)| cs.iter().any(|x| x == c))
                    && !v2.iter().any(|x| x == c)
            })
            .collect()
    }

    /// Controllers the v2 tree can give us: those of its root that v1 does not hold.
    fn v2_controllers(&self, root: &Path) -> Vec<String> {
        let avail = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        avail
            .split_whitespace()
            .filter(|c| V2_CONTROLLERS.contains(c))
            .filter(|c| !self.v1.iter().any(|(_, cs)| cs.iter().any(|x| x == c)))
            .map(str::to_string)
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDir {
    pub path: PathBuf,
    /// v1: the controllers of this hierarchy; v2: the controllers enabled for it.
    pub controllers: Vec<String>,
    pub v2: bool,
    /// Root of the hierarchy (for v2 subtree_control delegation).
    pub root: PathBuf,
}

/// Parent cgroup of every container (`<hierarchy>/<parent>/<id>`). `SKIFF_CGROUP_PARENT`
/// overrides the default `skiff`, so tests get private trees they can remove afterwards
/// without racing other tests that create containers under the shared parent.
pub fn cgroup_parent() -> String {
    std::env::var("SKIFF_CGROUP_PARENT")
        .ok()
        .filter(|s| !s.is_empty() && !s.contains("..") && !s.starts_with('/'))
        .unwrap_or_else(|| "skiff".to_owned())
}

/// One container's cgroup directories, one per hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupSet {
    pub dirs: Vec<CgroupDir>,
}

impl CgroupSet {
    /// `rel` is the spec's cgroupsPath, e.g. `/skiff/<id>`.
    pub fn plan(h: &Hierarchies, rel: &str) -> CgroupSet {
        let rel = rel.trim_start_matches('/');
        let mut dirs: Vec<CgroupDir> =
            h.v1.iter()
                .map(|(root, ctrls)| CgroupDir {
                    path: root.join(rel),
                    controllers: ctrls.clone(),
                    v2: false,
                    root: root.clone(),
                })
                .collect();
        // The v2 tree is joined even without controllers: it tracks every process of the
        // container, which is what removal checks.
        if let Some(root) = &h.v2 {
            dirs.push(CgroupDir {
                path: root.join(rel),
                controllers: h.v2_controllers(root),
                v2: true,
                root: root.clone(),
            });
        }
        CgroupSet { dirs }
    }

    pub fn create(&self, res: Option<&LinuxResources>) -> Result<(), CgroupError> {
        for d in &self.dirs {
            if d.v2 && !d.controllers.is_empty() {
                enable_subtree(&d.root, &d.path, &d.controllers)?;
            }
            std::fs::create_dir_all(&d.path).map_err(io(&d.path))?;
            if let Some(res) = res {
                if d.v2 {
                    apply_v2(d, res)?;
                } else {
                    apply_v1(d, res)?;
                }
            }
        }
        Ok(())
    }

    pub fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for d in &self.dirs {
            write(&d.path, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Processes still in the container's cgroup (v2 tree preferred, it holds them all).
    pub fn pids(&self) -> Vec<i32> {
        let d = self
            .dirs
            .iter()
            .find(|d| d.v2)
            .or_else(|| self.dirs.first());
        d.and_then(|d| std::fs::read_to_string(d.path.join("cgroup.procs")).ok())
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Number of OOM kills in the container's memory cgroup.
    pub fn oom_kills(&self) -> u64 {
        let read_key = |file: PathBuf, key: &str| -> u64 {
            std::fs::read_to_string(file)
                .ok()
                .and_then(|t| {
                    t.lines().find_map(|l| {
                        let (k, v) = l.split_once(' ')?;
                        (k == key).then(|| v.trim().parse().ok()).flatten()
                    })
                })
                .unwrap_or(0)
        };
        self.dirs
            .iter()
            .filter(|d| d.controllers.iter().any(|c| c == "memory"))
            .map(|d| {
                if d.v2 {
                    read_key(d.path.join("memory.events"), "oom_kill")
                } else {
                    read_key(d.path.join("memory.oom_control"), "oom_kill")
                }
            })
            .sum()
    }

    /// Removes every directory; a cgroup that still has processes is retried briefly
    /// (the kernel frees exiting tasks asynchronously).
    pub fn remove(&self) -> Result<(), CgroupError> {
        for d in &self.dirs {
            release_memory(d);
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(&d.path) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    // Usually free within a millisecond of the last task's exit: retry
                    // often, for up to about half a second.
                    Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) && tries < 500 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                        return Err(CgroupError::Busy(d.path.clone()))
                    }
                    Err(e) => return Err(io(&d.path)(e)),
                }
            }
        }
        Ok(())
    }
}

/// Reclaims the page cache still charged to a v1 memory cgroup about to be removed, once
/// no task is left in it. A removed cgroup with charged pages stays in the kernel
/// ("dying", with its per-CPU state) until they are reclaimed: this session's bench runs
/// had left 680 of them. The price: cached pages of files that outlive the container
/// (image layers it read first, host paths) are dropped and read again by the next user.
/// Errors are ignored: removal goes on either way.
fn release_memory(d: &CgroupDir) {
    if d.v2 || !d.controllers.iter().any(|c| c == "memory") {
        return;
    }
    let idle =
        std::fs::read_to_string(d.path.join("cgroup.procs")).is_ok_and(|p| p.trim().is_empty());
    if idle {
        let _ = std::fs::write(d.path.join("memory.force_empty"), "0");
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let p = dir.join(file);
    std::fs::write(&p, value).map_err(io(&p))
}

/// Every ancestor between the v2 root and the container must delegate the controllers.
fn enable_subtree(root: &Path, leaf: &Path, ctrls: &[String]) -> Result<(), CgroupError> {
    let value: String = ctrls.iter().map(|c| format!("+{c} ")).collect();
    let mut cur = root.to_path_buf();
    let rel = leaf.strip_prefix(root).unwrap_or(leaf);
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        if i + 1 == comps.len() {
            break;
        }
        write(&cur, "cgroup.subtree_control", value.trim_end())?;
        cur = cur.join(c);
        std::fs::create_dir_all(&cur).map_err(io(&cur))?;
    }
    write(&cur, "cgroup.subtree_control", value.trim_end())
}

fn has(d: &CgroupDir, c: &str) -> bool {
    d.controllers.iter().any(|x| x == c)
}

fn apply_v1(d: &CgroupDir, res: &LinuxResources) -> Result<(), CgroupError> {
    if has(d, "memory") {
        if let Some(limit) = res.memory().as_ref().and_then(|m| m.limit()) {
            // Without a swap limit the kernel would swap instead of OOM-killing. The kernel
            // keeps memory <= memory+swap at every step, so a raise (a resize) writes the
            // memory+swap limit first and a cut writes it last.
            let memsw = d.path.join("memory.memsw.limit_in_bytes").exists();
            let current = std::fs::read_to_string(d.path.join("memory.limit_in_bytes"))
                .ok()
                .and_then(|t| t.trim().parse::<i64>().ok());
            let raise = current.is_some_and(|c| limit > c);
            if memsw && raise {
                write(&d.path, "memory.memsw.limit_in_bytes", &limit.to_string())?;
            }
            write(&d.path, "memory.limit_in_bytes", &limit.to_string())?;
            if memsw && !raise {
                write(&d.path, "memory.memsw.limit_in_bytes", &limit.to_string())?;
            }
        }
    }
    if has(d, "cpu") {
        if let Some(cpu) = res.cpu() {
            if let Some(s) = cpu.shares() {
                write(&d.path, "cpu.shares", &s.to_string())?;
            }
            if let Some(p) = cpu.period() {
                write(&d.path, "cpu.cfs_period_us", &p.to_string())?;
            }
            if let Some(q) = cpu.quota() {
                write(&d.path, "cpu.cfs_quota_us", &q.to_string())?;
            }
        }
    }
    if has(d, "pids") {
        if let Some(p) = res.pids() {
            write(&d.path, "pids.max", &limit_str(p.limit()))?;
        }
    }
    if has(d, "devices") {
        for rule in res.devices().iter().flatten() {
            let typ = match rule.typ() {
                Some(LinuxDeviceType::C) => "c",
                Some(LinuxDeviceType::B) => "b",
                _ => "a",
            };
            let num = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_else(|| "*".into());
            let access = rule.access().clone().unwrap_or_else(|| "rwm".into());
            let entry = if typ == "a" {
                "a".to_string()
            } else {
                format!("{typ} {}:{} {access}", num(rule.major()), num(rule.minor()))
            };
            write(
                &d.path,
                if rule.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                },
                &entry,
            )?;
        }
    }
    Ok(())
}

fn limit_str(n: i64) -> String {
    if n <= 0 {
        "max".to_string()
    } else {
        n.to_string()
    }
}

/// cgroup v1 cpu.shares [2, 262144] → v2 cpu.weight [1, 10000] (the runc/crun formula).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

fn apply_v2(d: &CgroupDir, res: &LinuxResources) -> Result<(), CgroupError> {
    if has(d, "memory") {
        if let Some(limit) = res.memory().as_ref().and_then(|m| m.limit()) {
            write(&d.path, "memory.max", &limit_str(limit))?;
            if d.path.join("memory.swap.max").exists() {
                write(&d.path, "memory.swap.max", "0")?;
            }
        }
    }
    if has(d, "cpu") {
        if let Some(cpu) = res.cpu() {
            if let Some(s) = cpu.shares() {
                write(&d.path, "cpu.weight", &shares_to_weight(s).to_string())?;
            }
            if cpu.quota().is_some() || cpu.period().is_some() {
                let quota = cpu
                    .quota()
                    .filter(|q| *q > 0)
                    .map(|q| q.to_string())
                    .unwrap_or_else(|| "max".into());
                write(
                    &d.path,
                    "cpu.max",
                    &format!("{quota} {}", cpu.period().unwrap_or(100_000)),
                )?;
            }
        }
    }
    if has(d, "pids") {
        if let Some(p) = res.pids() {
            write(&d.path, "pids.max", &limit_str(p.limit()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "cgroups_tests.rs"]
mod tests;
