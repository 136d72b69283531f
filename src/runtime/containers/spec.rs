//! OCI runtime spec generation: image config (Entrypoint/Cmd/Env/WorkingDir/User/StopSignal)
//! plus caller overrides → `oci_spec::runtime::Spec`, with containerd-like defaults (mounts,
//! device set, masked/read-only paths, capabilities, no_new_privs, rlimits).
//!
//! Pure: no file system access. User and group names are resolved against the rootfs's
//! `/etc/passwd` and `/etc/group` texts passed in by the caller.

use super::{ContainerConfig, Mount, Network, Resources, User};
use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, Mount as OciMount,
    MountBuilder, PosixRlimitBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use std::collections::HashSet;

/// Annotation carrying the image's StopSignal to the shim.
pub const STOP_SIGNAL_ANNOTATION: &str = "org.opencontainers.image.stopSignal";
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("container has no command: neither the image nor the caller gives one")]
    NoCommand,
    #[error("unknown user {0:?} (not in the image's /etc/passwd)")]
    UnknownUser(String),
    #[error("unknown group {0:?} (not in the image's /etc/group)")]
    UnknownGroup(String),
    #[error("building the spec: {0}")]
    Build(#[from] oci_spec::OciSpecError),
}

/// The rootfs's account databases, used only when the image names a user by name.
#[derive(Debug, Default, Clone, Copy)]
pub struct Accounts<'a> {
    pub passwd: Option<&'a str>,
    pub group: Option<&'a str>,
}

/// Devices every container gets (created by the embedded init, allowed in the devices cgroup).
/// (path, type, major, minor, mode)
pub const DEFAULT_DEVICES: &[(&str, char, i64, i64, u32)] = &[
    ("/dev/null", 'c', 1, 3, 0o666),
    ("/dev/zero", 'c', 1, 5, 0o666),
    ("/dev/full", 'c', 1, 7, 0o666),
    ("/dev/random", 'c', 1, 8, 0o666),
    ("/dev/urandom", 'c', 1, 9, 0o666),
    ("/dev/tty", 'c', 5, 0, 0o666),
];

/// containerd's default masked paths: hidden by /dev/null (files) or an empty ro tmpfs (dirs).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// containerd's default capability set.
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability the kernel knows (for `privileged` and `add: [ALL]`).
const ALL_CAP_NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// This process's capability bounding set (`CapBnd`, bit N = capability N; every bit when
/// unreadable). `ALL_CAP_NAMES` is in the kernel's bit order.
fn own_bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

fn parse_cap(name: &str) -> Option<Capability> {
    let n = name.trim_start_matches("CAP_").to_ascii_uppercase();
    n.parse().ok()
}

/// The bounding set: the default set, plus `cap_add`, minus `cap_drop` (drop wins, `ALL`
/// in either means every capability), or everything when privileged. Unknown names are
/// ignored as containerd does with capabilities the kernel lacks.
pub fn capability_set(sec: &super::Security) -> HashSet<Capability> {
    let bounding = own_bounding_set();
    // "Every capability" is every one this process may still hand on (containerd's
    // `cap.Current()`): asking for one outside our bounding set fails the start with EPERM.
    let all = || {
        ALL_CAP_NAMES
            .iter()
            .enumerate()
            .filter(move |(bit, _)| bounding & (1u64 << bit) != 0)
            .filter_map(|(_, n)| parse_cap(n))
    };
    if sec.privileged {
        return all().collect();
    }
    let mut set: HashSet<Capability> = DEFAULT_CAPS.iter().copied().collect();
    for a in &sec.cap_add {
        if a.eq_ignore_ascii_case("ALL") {
            set.extend(all());
        } else if let Some(c) = parse_cap(a) {
            set.insert(c);
        }
    }
    for d in &sec.cap_drop {
        if d.eq_ignore_ascii_case("ALL") {
            set.clear();
        } else if let Some(c) = parse_cap(d) {
            set.remove(&c);
        }
    }
    set
}

/// Final argv: Kubernetes semantics (`command` replaces Entrypoint and drops Cmd; `args`
/// replaces Cmd).
pub fn resolve_args(
    image: &ImageConfiguration,
    cfg: &ContainerConfig,
) -> Result<Vec<String>, SpecError> {
    let ic = image.config().as_ref();
    let entrypoint = match &cfg.command {
        Some(c) => c.clone(),
        None => ic.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
    };
    let args = match (&cfg.args, &cfg.command) {
        (Some(a), _) => a.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => ic.and_then(|c| c.cmd().clone()).unwrap_or_default(),
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(args).collect();
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(argv)
}

/// Image env, then caller env replacing same-named variables; PATH always present.
pub fn resolve_env(image: &ImageConfiguration, cfg: &ContainerConfig) -> Vec<String> {
    let mut env: Vec<String> = image
        .config()
        .as_ref()
        .and_then(|c| c.env().clone())
        .unwrap_or_default();
    let mut set = |kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_string();
        match env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(key.as_str()))
        {
            Some(slot) => *slot = kv,
            None => env.push(kv),
        }
    };
    if cfg.tty {
        set("TERM=xterm".to_string());
    }
    for (k, v) in &cfg.env {
        set(format!("{k}={v}"));
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env
}

/// The image's `User` (`name`, `uid`, `name:group`, `uid:gid`) → numeric ids plus the
/// supplementary groups the user is listed in.
pub fn resolve_user(spec: &str, accounts: Accounts<'_>) -> Result<User, SpecError> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd_entry = |pred: &dyn Fn(&[&str]) -> bool| -> Option<(String, u32, u32)> {
        accounts.passwd?.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 4 && pred(&f) {
                Some((f[0].to_string(), f[2].parse().ok()?, f[3].parse().ok()?))
            } else {
                None
            }
        })
    };
    let (name, uid, mut gid) = match u.parse::<u32>() {
        Ok(uid) => {
            let found = passwd_entry(&|f| f[2] == u);
            (
                found.as_ref().map(|e| e.0.clone()),
                uid,
                found.map(|e| e.2).unwrap_or(0),
            )
        }
        Err(_) => {
            let (n, uid, gid) = passwd_entry(&|f| f[0] == u)
                .ok_or_else(|| SpecError::UnknownUser(u.to_string()))?;
            (Some(n), uid, gid)
        }
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => accounts
                .group
                .and_then(|t| {
                    t.lines().find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() >= 3 && f[0] == g)
                            .then(|| f[2].parse().ok())
                            .flatten()
                    })
                })
                .ok_or_else(|| SpecError::UnknownGroup(g.to_string()))?,
        };
    }
    let mut additional_gids = Vec::new();
    if let (Some(name), Some(groups)) = (name, accounts.group) {
        for l in groups.lines() {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(id) = f[2].parse::<u32>() {
                    if id != gid && !additional_gids.contains(&id) {
                        additional_gids.push(id);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<OciMount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn default_mounts() -> Result<Vec<OciMount>, SpecError> {
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
    ])
}

/// `/sys/fs/cgroup` as runc shows it to a container without a cgroup namespace, so
/// programs that size themselves from their cgroup limits (and `cat cpu.max`) see their
/// own: on a host with v1 hierarchies, a tmpfs holding the container's directory of each
/// (at the hierarchy's name, `cpu,cpuacct`, and at each controller's, as the host's
/// symlinks); on a v2-only host, the container's v2 directory itself. Read-only unless the
/// container is privileged. Added after the `/sys` mount it lies on.
pub fn add_cgroup_mounts(
    spec: &mut Spec,
    set: &super::cgroups::CgroupSet,
    read_only: bool,
) -> Result<(), SpecError> {
    let bind_opts: &[&str] = if read_only {
        &["rbind", "nosuid", "noexec", "nodev", "ro"]
    } else {
        &["rbind", "nosuid", "noexec", "nodev"]
    };
    let v1: Vec<_> = set.dirs.iter().filter(|d| !d.v2).collect();
    let mut out = Vec::new();
    if v1.is_empty() {
        if let Some(d) = set.dirs.iter().find(|d| d.v2) {
            out.push(mount(
                "/sys/fs/cgroup",
                "bind",
                &d.path.display().to_string(),
                bind_opts,
            )?);
        }
    } else {
        out.push(mount(
            "/sys/fs/cgroup",
            "tmpfs",
            "tmpfs",
            &["nosuid", "noexec", "nodev", "mode=755"],
        )?);
        for d in v1 {
            let Some(name) = d.root.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let mut names = vec![name.to_owned()];
            names.extend(d.controllers.iter().filter(|c| *c != name).cloned());
            for n in names {
                out.push(mount(
                    &format!("/sys/fs/cgroup/{n}"),
                    "bind",
                    &d.path.display().to_string(),
                    bind_opts,
                )?);
            }
        }
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let at = mounts
        .iter()
        .position(|m| m.destination() == std::path::Path::new("/sys"))
        .map_or(mounts.len(), |i| i + 1);
    let tmpfs = out
        .first()
        .is_some_and(|m| m.typ().as_deref() == Some("tmpfs"));
    mounts.splice(at..at, out);
    spec.set_mounts(Some(mounts));
    if read_only && tmpfs {
        // The tmpfs is writable while the binds go in; made read-only with the other
        // read-only paths at the end.
        if let Some(linux) = spec.linux_mut() {
            let mut paths = linux.readonly_paths().clone().unwrap_or_default();
            paths.push("/sys/fs/cgroup".to_owned());
            linux.set_readonly_paths(Some(paths));
        }
    }
    Ok(())
}

fn device_rules() -> Result<Vec<LinuxDeviceCgroup>, SpecError> {
    let mut rules = vec![LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()?];
    let mut allow = |typ, major: i64, minor: Option<i64>| -> Result<(), SpecError> {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(typ)
            .major(major)
            .access("rwm");
        if let Some(m) = minor {
            b = b.minor(m);
        }
        rules.push(b.build()?);
        Ok(())
    };
    for (_, _, major, minor, _) in DEFAULT_DEVICES {
        allow(LinuxDeviceType::C, *major, Some(*minor))?;
    }
    allow(LinuxDeviceType::C, 5, Some(2))?; // /dev/ptmx
    allow(LinuxDeviceType::C, 136, None)?; // /dev/pts/*
    Ok(rules)
}

/// The cgroup settings of `r` (no device rules).
pub fn linux_resources(r: &Resources) -> Result<LinuxResources, oci_spec::OciSpecError> {
    let mut rb = LinuxResourcesBuilder::default();
    if let Some(limit) = r.memory_limit_bytes {
        rb = rb.memory(LinuxMemoryBuilder::default().limit(limit).build()?);
    }
    if r.cpu_shares.is_some() || r.cpu_quota_us.is_some() || r.cpu_period_us.is_some() {
        let mut cb = LinuxCpuBuilder::default();
        if let Some(s) = r.cpu_shares {
            cb = cb.shares(s);
        }
        if let Some(q) = r.cpu_quota_us {
            cb = cb.quota(q);
        }
        if let Some(p) = r.cpu_period_us {
            cb = cb.period(p);
        }
        rb = rb.cpu(cb.build()?);
    }
    if let Some(p) = r.pids_limit {
        rb = rb.pids(LinuxPidsBuilder::default().limit(p).build()?);
    }
    rb.build()
}

/// Builds the bundle's `config.json`. `cgroups_path` is e.g. `/skiff/<id>`.
pub fn generate(
    image: &ImageConfiguration,
    cfg: &ContainerConfig,
    accounts: Accounts<'_>,
    cgroups_path: &str,
) -> Result<Spec, SpecError> {
    let ic = image.config().as_ref();
    let args = resolve_args(image, cfg)?;
    let env = resolve_env(image, cfg);
    let user = match (
        &cfg.user,
        ic.and_then(|c| c.user().clone()).filter(|u| !u.is_empty()),
    ) {
        (Some(u), _) => u.clone(),
        (None, Some(s)) => resolve_user(&s, accounts)?,
        (None, None) => User::default(),
    };
    let cwd = cfg
        .working_dir
        .clone()
        .or_else(|| ic.and_then(|c| c.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());

    let all_caps = capability_set(&cfg.security);
    // Like moby: a non-root process keeps the set only in its bounding set.
    let effective = if user.uid == 0 {
        all_caps.clone()
    } else {
        HashSet::new()
    };
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(all_caps)
        .permitted(effective.clone())
        .effective(effective)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()?;
    let mut ub = UserBuilder::default().uid(user.uid).gid(user.gid);
    if !user.additional_gids.is_empty() {
        ub = ub.additional_gids(user.additional_gids.clone());
    }
    let process = ProcessBuilder::default()
        .terminal(cfg.tty)
        .args(args)
        .env(env)
        .cwd(cwd)
        .user(ub.build()?)
        .capabilities(caps)
        .no_new_privileges(cfg.security.no_new_privileges.unwrap_or(true))
        // Like containerd's CRI: no rlimits by default, the container inherits the shim's
        // (raising a hard limit needs CAP_SYS_RESOURCE, which hosts may not grant).
        .rlimits(
            cfg.rlimits
                .iter()
                .map(|r| {
                    PosixRlimitBuilder::default()
                        .typ(r.kind)
                        .hard(r.hard)
                        .soft(r.soft)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?,
        )
        .build()?;

    let mut mounts = default_mounts()?;
    for m in &cfg.mounts {
        mounts.push(match m {
            Mount::Bind {
                source,
                destination,
                read_only,
            } => {
                let src = source.display().to_string();
                let opts: &[&str] = if *read_only {
                    &["rbind", "rprivate", "ro"]
                } else {
                    &["rbind", "rprivate"]
                };
                mount(destination, "bind", &src, opts)?
            }
            Mount::Tmpfs {
                destination,
                size_bytes,
            } => {
                let size = size_bytes.map(|s| format!("size={s}"));
                let mut opts = vec!["nosuid", "nodev", "mode=1777"];
                if let Some(s) = &size {
                    opts.push(s);
                }
                mount(destination, "tmpfs", "tmpfs", &opts)?
            }
        });
    }
    for (dest, file) in [
        ("/etc/hosts", &cfg.hosts_file),
        ("/etc/resolv.conf", &cfg.resolv_conf),
    ] {
        if let Some(f) = file {
            mounts.push(mount(
                dest,
                "bind",
                &f.display().to_string(),
                &["rbind", "rprivate"],
            )?);
        }
    }

    let mut namespaces = Vec::new();
    let mut pid = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Pid);
    if let Some(p) = &cfg.pid_namespace {
        pid = pid.path(p.clone());
    }
    namespaces.push(pid.build()?);
    for t in [
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ] {
        namespaces.push(LinuxNamespaceBuilder::default().typ(t).build()?);
    }
    match &cfg.network {
        Network::Host => {}
        Network::None => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .build()?,
        ),
        Network::Join(p) => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(p.clone())
                .build()?,
        ),
    }

    let mut resources = linux_resources(&cfg.resources)?;
    resources.set_devices(Some(device_rules()?));
    let linux = LinuxBuilder::default()
        .sysctl(
            cfg.sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .namespaces(namespaces)
        .resources(resources)
        .cgroups_path(cgroups_path)
        .masked_paths(if cfg.security.privileged {
            Vec::new()
        } else {
            MASKED_PATHS.iter().map(|s| s.to_string()).collect()
        })
        .readonly_paths(if cfg.security.privileged {
            Vec::new()
        } else {
            READONLY_PATHS.iter().map(|s| s.to_string()).collect()
        })
        .build()?;

    let mut annotations: std::collections::HashMap<String, String> = Default::default();
    if let Some(sig) = ic.and_then(|c| c.stop_signal().clone()) {
        annotations.insert(STOP_SIGNAL_ANNOTATION.to_string(), sig);
    }
    let hostname = cfg
        .hostname
        .clone()
        .unwrap_or_else(|| cfg.id.chars().take(63).collect());
    Ok(SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(cfg.read_only_rootfs)
                .build()?,
        )
        .hostname(hostname)
        .process(process)
        .mounts(mounts)
        .linux(linux)
        .annotations(annotations)
        .build()?)
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
