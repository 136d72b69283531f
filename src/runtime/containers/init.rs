//! Embedded container creation: runs in the child the shim cloned into new namespaces.
//! Mounts the rootfs and the spec's mounts, creates the standard devices, pivots, masks
//! paths, then waits at the start gate and becomes the container process.
//!
//! Invariant: runs in a freshly cloned child of the single-threaded shim, so it may
//! allocate freely; it never returns: it execs or reports an error on the sync pipe and exits.

use super::spec::{DEFAULT_DEVICES, MASKED_PATHS};
use nix::libc;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::{Capability, LinuxNamespaceType, Process, Spec};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Standard descriptors the container process gets, already open in the child.
#[derive(Debug, Clone, Copy)]
pub enum InitStdio {
    Pipes {
        stdin: RawFd,
        stdout: RawFd,
        stderr: RawFd,
    },
    /// The pty slave becomes stdio and controlling terminal.
    Tty(RawFd),
}

/// Fds for the parent↔child handshake: `ready` is written by the child ("R" when set up,
/// "E<msg>" on error; EOF by exec means started), `gate` is read by the child ("S" = start).
pub struct Sync {
    pub to_parent: RawFd,
    pub from_parent: RawFd,
}

/// The namespaces the spec lists (new ones and ones to join by path).
fn namespaces(spec: &Spec) -> impl Iterator<Item = &oci_spec::runtime::LinuxNamespace> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
}

/// Namespace clone flags the spec asks for (net only when no path is given).
pub fn clone_flags(spec: &Spec) -> libc::c_int {
    let mut flags = 0;
    for ns in namespaces(spec) {
        if ns.path().is_some() {
            continue;
        }
        flags |= match ns.typ() {
            LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
            LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
            LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
            LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
            LinuxNamespaceType::Network => libc::CLONE_NEWNET,
            _ => 0,
        };
    }
    flags
}

/// Entry of the cloned child. Never returns.
pub fn run(spec: &Spec, bundle: &Path, stdio: InitStdio, sync: Sync) -> ! {
    let mut to_parent = unsafe_file(sync.to_parent);
    let err = match prepare(spec, bundle, stdio, sync.from_parent, &mut to_parent) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = to_parent.write_all(format!("E{err}").as_bytes());
    // SAFETY: _exit in a forked child skips atexit handlers that belong to the shim.
    unsafe { libc::_exit(127) }
}

fn unsafe_file(fd: RawFd) -> std::fs::File {
    // SAFETY: the fd was created by the shim for this child and is owned by it alone.
    unsafe { std::fs::File::from_raw_fd(fd) }
}

fn ctx<T, E: std::fmt::Display>(
    r: Result<T, E>,
    what: impl FnOnce() -> String,
) -> Result<T, String> {
    r.map_err(|e| format!("{}: {e}", what()))
}

pub(crate) enum Never {}

fn prepare(
    spec: &Spec,
    bundle: &Path,
    stdio: InitStdio,
    gate: RawFd,
    to_parent: &mut std::fs::File,
) -> Result<Never, String> {
    setup_stdio(stdio)?;
    join_namespaces(spec)?;
    let root = spec.root().as_ref().ok_or("spec has no root")?;
    let rootfs = bundle.join(root.path());
    setup_rootfs(spec, &rootfs, stdio)?;
    if let Some(h) = spec.hostname() {
        ctx(nix::unistd::sethostname(h), || "sethostname".into())?;
    }
    let process = spec.process().as_ref().ok_or("spec has no process")?;
    set_rlimits(process)?;
    // Start gate: report readiness, block until the shim says start.
    ctx(to_parent.write_all(b"R"), || "sync write".into())?;
    let mut b = [0u8; 1];
    let mut gate_file = unsafe_file(gate);
    match gate_file.read(&mut b) {
        Ok(1) if b[0] == b'S' => {}
        _ => return Err("start gate closed".into()),
    }
    drop(gate_file);
    exec_process(process, &[])
}

pub(crate) fn setup_stdio(stdio: InitStdio) -> Result<(), String> {
    ctx(nix::unistd::setsid(), || "setsid".into())?;
    let (i, o, e) = match stdio {
        InitStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => (stdin, stdout, stderr),
        InitStdio::Tty(slave) => {
            // SAFETY: TIOCSCTTY on a pty slave we own; we just became session leader.
            if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
                return Err(format!("TIOCSCTTY: {}", std::io::Error::last_os_error()));
            }
            (slave, slave, slave)
        }
    };
    for (from, to) in [(i, 0), (o, 1), (e, 2)] {
        // SAFETY: plain dup2 of fds this child owns onto the standard slots.
        if unsafe { libc::dup2(from, to) } < 0 {
            return Err(format!("dup2: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn join_namespaces(spec: &Spec) -> Result<(), String> {
    for ns in namespaces(spec) {
        if let Some(p) = ns.path() {
            let f = ctx(std::fs::File::open(p), || {
                format!("open namespace {}", p.display())
            })?;
            let flag = match ns.typ() {
                LinuxNamespaceType::Network => nix::sched::CloneFlags::CLONE_NEWNET,
                LinuxNamespaceType::Ipc => nix::sched::CloneFlags::CLONE_NEWIPC,
                LinuxNamespaceType::Uts => nix::sched::CloneFlags::CLONE_NEWUTS,
                _ => {
                    return Err(format!(
                        "joining a {:?} namespace is not supported",
                        ns.typ()
                    ))
                }
            };
            ctx(nix::sched::setns(&f, flag), || {
                format!("setns {}", p.display())
            })?;
        }
    }
    Ok(())
}

/// Joins `dest` (absolute in the container) under `rootfs`, refusing `..` escapes.
fn in_rootfs(rootfs: &Path, dest: &Path) -> Result<PathBuf, String> {
    let mut p = rootfs.to_path_buf();
    for c in dest.components() {
        match c {
            Component::Normal(n) => p.push(n),
            Component::RootDir | Component::CurDir => {}
            _ => {
                return Err(format!(
                    "mount destination {} escapes the rootfs",
                    dest.display()
                ))
            }
        }
    }
    Ok(p)
}

fn parse_options(opts: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in opts {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => {}
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "strictatime" => flags |= MsFlags::MS_STRICTATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data.join(","))
}

fn setup_rootfs(spec: &Spec, rootfs: &Path, stdio: InitStdio) -> Result<(), String> {
    let none: Option<&str> = None;
    ctx(
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_SLAVE, none),
        || "make / rslave".into(),
    )?;
    ctx(
        mount(
            Some(rootfs),
            rootfs,
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        ),
        || "bind rootfs".into(),
    )?;
    for m in spec.mounts().iter().flatten() {
        let dest = in_rootfs(rootfs, m.destination())?;
        let (flags, data) = parse_options(m.options().as_deref().unwrap_or(&[]));
        let typ = m.typ().as_deref().unwrap_or("none");
        let is_bind = flags.contains(MsFlags::MS_BIND) || typ == "bind";
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        if is_bind && !source.is_dir() {
            if let Some(parent) = dest.parent() {
                ctx(std::fs::create_dir_all(parent), || {
                    format!("mkdir {}", parent.display())
                })?;
            }
            if !dest.exists() {
                ctx(std::fs::File::create(&dest), || {
                    format!("create {}", dest.display())
                })?;
            }
        } else {
            ctx(std::fs::create_dir_all(&dest), || {
                format!("mkdir {}", dest.display())
            })?;
        }
        let data_opt = (!data.is_empty()).then_some(data.as_str());
        if is_bind {
            let f = MsFlags::MS_BIND | (flags & MsFlags::MS_REC);
            ctx(mount(Some(&source), &dest, none, f, none), || {
                format!("bind {} on {}", source.display(), dest.display())
            })?;
            let rest = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
            if !rest.is_empty() {
                let f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rest;
                ctx(mount(none, &dest, none, f, none), || {
                    format!("remount {}", dest.display())
                })?;
            }
        } else {
            ctx(
                mount(Some(&source), &dest, Some(typ), flags, data_opt),
                || format!("mount {typ} on {}", dest.display()),
            )?;
        }
    }
    create_devices(rootfs, stdio)?;
    pivot(rootfs)?;
    let linux = spec.linux().as_ref();
    let masked = linux
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_else(|| MASKED_PATHS.iter().map(|s| s.to_string()).collect());
    for p in masked {
        mask(Path::new(&p))?;
    }
    for p in linux
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default()
    {
        readonly(Path::new(&p))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        let f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        ctx(mount(none, "/", none, f, none), || {
            "remount / read-only".into()
        })?;
    }
    Ok(())
}

fn create_devices(rootfs: &Path, stdio: InitStdio) -> Result<(), String> {
    let dev = rootfs.join("dev");
    let old = nix::sys::stat::umask(Mode::empty());
    for (path, _, major, minor, mode) in DEFAULT_DEVICES {
        let p = in_rootfs(rootfs, Path::new(path))?;
        let _ = std::fs::remove_file(&p);
        let m = Mode::from_bits_truncate(*mode);
        ctx(
            mknod(&p, SFlag::S_IFCHR, m, makedev(*major as u64, *minor as u64)),
            || format!("mknod {path}"),
        )?;
    }
    nix::sys::stat::umask(old);
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        let _ = std::os::unix::fs::symlink(target, dev.join(link));
    }
    if let InitStdio::Tty(slave) = stdio {
        let console = dev.join("console");
        ctx(std::fs::File::create(&console), || {
            "create /dev/console".into()
        })?;
        let src = format!("/proc/self/fd/{slave}");
        let none: Option<&str> = None;
        ctx(
            mount(Some(src.as_str()), &console, none, MsFlags::MS_BIND, none),
            || "bind /dev/console".into(),
        )?;
    }
    Ok(())
}

fn pivot(rootfs: &Path) -> Result<(), String> {
    ctx(nix::unistd::chdir(rootfs), || "chdir rootfs".into())?;
    ctx(nix::unistd::pivot_root(".", "."), || "pivot_root".into())?;
    ctx(umount2(".", MntFlags::MNT_DETACH), || {
        "detach old root".into()
    })?;
    ctx(nix::unistd::chdir("/"), || "chdir /".into())
}

fn mask(p: &Path) -> Result<(), String> {
    let none: Option<&str> = None;
    let r = if p.is_dir() {
        mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY, none)
    } else if p.exists() {
        mount(Some("/dev/null"), p, none, MsFlags::MS_BIND, none)
    } else {
        return Ok(());
    };
    ctx(r, || format!("mask {}", p.display()))
}

fn readonly(p: &Path) -> Result<(), String> {
    if !p.exists() {
        return Ok(());
    }
    let none: Option<&str> = None;
    ctx(
        mount(Some(p), p, none, MsFlags::MS_BIND | MsFlags::MS_REC, none),
        || format!("bind {}", p.display()),
    )?;
    let f = MsFlags::MS_BIND
        | MsFlags::MS_REMOUNT
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    ctx(mount(Some(p), p, none, f, none), || {
        format!("remount ro {}", p.display())
    })
}

fn set_rlimits(process: &Process) -> Result<(), String> {
    for r in process.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let res = match name.as_str() {
            "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
            "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
            "RLIMIT_CORE" => libc::RLIMIT_CORE,
            "RLIMIT_STACK" => libc::RLIMIT_STACK,
            "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
            "RLIMIT_AS" => libc::RLIMIT_AS,
            "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
            _ => continue,
        };
        // The kernel refuses NOFILE above fs.nr_open; clamp rather than fail the container.
        let cap = if res == libc::RLIMIT_NOFILE {
            std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(u64::MAX)
        } else {
            u64::MAX
        };
        let mut lim = libc::rlimit {
            rlim_cur: r.soft().min(cap),
            rlim_max: r.hard().min(cap),
        };
        // SAFETY: get/setrlimit with valid structs on this process.
        unsafe {
            if libc::setrlimit(res, &lim) < 0 {
                // Without CAP_SYS_RESOURCE the hard limit cannot be raised: keep the current one.
                let mut cur = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(res, &mut cur);
                lim.rlim_max = lim.rlim_max.min(cur.rlim_max);
                lim.rlim_cur = lim.rlim_cur.min(lim.rlim_max);
                if libc::setrlimit(res, &lim) < 0 {
                    return Err(format!(
                        "setrlimit {name}: {}",
                        std::io::Error::last_os_error()
                    ));
                }
            }
        }
    }
    Ok(())
}

const CAP_NAMES: &[&str] = &[
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

/// Bit mask of a capability set, by the kernel's numbering.
pub fn cap_mask<'a>(caps: impl IntoIterator<Item = &'a Capability>) -> u64 {
    caps.into_iter()
        .filter_map(|c| {
            let v = serde_json::to_value(c).ok()?;
            let name = v.as_str()?.strip_prefix("CAP_")?.to_string();
            CAP_NAMES.iter().position(|n| *n == name)
        })
        .fold(0u64, |m, i| m | (1 << i))
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Switches to the spec's user and capability sets; sets no_new_privs last.
pub fn apply_credentials(process: &Process) -> Result<(), String> {
    let caps = process.capabilities().as_ref();
    let set = |f: fn(
        &oci_spec::runtime::LinuxCapabilities,
    ) -> &Option<oci_spec::runtime::Capabilities>| {
        caps.and_then(|c| f(c).as_ref())
            .map(|s| cap_mask(s.iter()))
            .unwrap_or(0)
    };
    let bounding = set(|c| c.bounding());
    let last_cap: u64 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    // SAFETY: prctl calls with constant arguments on this process only.
    unsafe {
        for cap in 0..=last_cap {
            if bounding & (1 << cap) == 0 {
                libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0);
            }
        }
        libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
    }
    let user = process.user();
    let gids: Vec<nix::unistd::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    ctx(nix::unistd::setgroups(&gids), || "setgroups".into())?;
    let gid = nix::unistd::Gid::from_raw(user.gid());
    ctx(nix::unistd::setresgid(gid, gid, gid), || "setresgid".into())?;
    let uid = nix::unistd::Uid::from_raw(user.uid());
    ctx(nix::unistd::setresuid(uid, uid, uid), || "setresuid".into())?;
    let (eff, perm, inh) = (
        set(|c| c.effective()),
        set(|c| c.permitted()),
        set(|c| c.inheritable()),
    );
    let mut hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let data = [
        CapData {
            effective: eff as u32,
            permitted: perm as u32,
            inheritable: inh as u32,
        },
        CapData {
            effective: (eff >> 32) as u32,
            permitted: (perm >> 32) as u32,
            inheritable: (inh >> 32) as u32,
        },
    ];
    // SAFETY: capset v3 takes a header and two data structs, both valid for the call.
    if unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) } < 0 {
        return Err(format!("capset: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0);
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        if process.no_new_privileges() == Some(true)
            && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0
        {
            return Err(format!("no_new_privs: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// `execvpe` with PATH taken from the *container's* environment (libc's uses the caller's).
pub fn find_executable(argv0: &str, env: &[String]) -> Option<PathBuf> {
    if argv0.contains('/') {
        return Some(PathBuf::from(argv0));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    path.split(':').map(|d| Path::new(d).join(argv0)).find(|p| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

/// Credentials, cwd, exec. `extra_env` overrides the spec's environment.
pub(crate) fn exec_process(process: &Process, extra_env: &[String]) -> Result<Never, String> {
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    for kv in extra_env {
        let key = kv.split('=').next().unwrap_or("");
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    let args = process.args().clone().unwrap_or_default();
    let argv0 = args.first().ok_or("empty argv")?;
    let cwd = process.cwd();
    if !cwd.exists() {
        ctx(std::fs::create_dir_all(cwd), || {
            format!("mkdir cwd {}", cwd.display())
        })?;
    }
    apply_credentials(process)?;
    ctx(nix::unistd::chdir(cwd.as_path()), || {
        format!("chdir {}", cwd.display())
    })?;
    let exe = find_executable(argv0, &env)
        .ok_or_else(|| format!("executable {argv0:?} not found in $PATH"))?;
    let cargs: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let cenv: Vec<CString> = env
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let cexe = CString::new(exe.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    // Every fd the shim holds must vanish at exec (the sync pipe's EOF is the success signal).
    // SAFETY: close_range only sets FD_CLOEXEC flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    let e = nix::unistd::execve(&cexe, &cargs, &cenv).err();
    Err(format!(
        "exec {argv0:?}: {}",
        e.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Children of the shim start from a clean signal state: the shim blocks SIGCHLD and
/// ignores SIGPIPE/SIGHUP/SIGINT/SIGTERM, and both would survive exec.
pub fn reset_signals() {
    // SAFETY: resetting dispositions and the mask of this single-threaded child.
    unsafe {
        for s in [
            libc::SIGPIPE,
            libc::SIGHUP,
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGCHLD,
        ] {
            libc::signal(s, libc::SIG_DFL);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let (f, d) = parse_options(&[
            "nosuid".into(),
            "mode=755".into(),
            "ro".into(),
            "size=1k".into(),
        ]);
        assert!(f.contains(MsFlags::MS_NOSUID | MsFlags::MS_RDONLY));
        assert_eq!(d, "mode=755,size=1k");
    }

    #[test]
    fn destinations_cannot_climb_out_of_the_rootfs() {
        assert_eq!(
            in_rootfs(Path::new("/r"), Path::new("/etc/hosts")).unwrap(),
            Path::new("/r/etc/hosts")
        );
        assert!(in_rootfs(Path::new("/r"), Path::new("/../x")).is_err());
    }

    #[test]
    fn capability_masks_use_kernel_numbers() {
        assert_eq!(
            cap_mask(&[Capability::Chown, Capability::Kill]),
            1 | (1 << 5)
        );
        assert_eq!(cap_mask(&[Capability::AuditWrite]), 1 << 29);
    }

    #[test]
    fn executables_are_found_through_the_container_path() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert_eq!(find_executable("sh", &env), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_executable("/x/y", &env), Some(PathBuf::from("/x/y")));
        assert_eq!(find_executable("no-such-binary-here", &env), None);
    }
}
