//! The last steps before the container process runs: rlimits, user and capabilities,
//! working directory, exec. Shared by the container's init and by exec into a running
//! container (both are already inside the container's root here).
//!
//! Invariant: credentials change in the order the kernel needs (bounding set dropped while
//! still privileged, keepcaps across setuid, capability sets after the user switch,
//! no_new_privs last), and the working directory is resolved inside the root before the
//! user switch but entered after it, so permission checks apply to the container's user.

use super::error::{AtStep, InitError, Step};
use super::Never;
use crate::runtime::containers::in_root::{self, Kind};
use caps::{CapSet, CapsHashSet};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::{sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimitType, Process};
use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

pub fn set_rlimits(process: &Process) -> Result<(), InitError> {
    for r in process.rlimits().iter().flatten() {
        let res = resource(r.typ());
        // The kernel refuses NOFILE above fs.nr_open; clamp rather than fail the container.
        let cap = if res == Resource::RLIMIT_NOFILE {
            std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(u64::MAX)
        } else {
            u64::MAX
        };
        let (soft, hard) = (r.soft().min(cap), r.hard().min(cap));
        if setrlimit(res, soft, hard).is_err() {
            // Without CAP_SYS_RESOURCE the hard limit cannot be raised: keep the current one.
            let (_, cur_hard) = getrlimit(res).at(Step::Setrlimit)?;
            let hard = hard.min(cur_hard);
            setrlimit(res, soft.min(hard), hard)
                .on(Step::Setrlimit, Path::new(&format!("{res:?}")))?;
        }
    }
    Ok(())
}

/// The spec's capability names → the `caps` crate's (unknown names are skipped: a spec may
/// name a capability newer than this build).
fn cap_set(set: Option<&Capabilities>) -> CapsHashSet {
    set.into_iter()
        .flatten()
        .filter_map(|c| {
            let v = serde_json::to_value(c).ok()?;
            v.as_str()?.parse::<caps::Capability>().ok()
        })
        .collect()
}

/// A failed `caps` call: the crate reports text, the errno is still the thread's last one.
fn caps_err<T>(r: Result<T, caps::errors::CapsError>, step: Step) -> Result<T, InitError> {
    r.map_err(|_| nix::errno::Errno::last()).at(step)
}

/// Switches to the spec's user and capability sets; sets no_new_privs last.
pub fn apply_credentials(process: &Process) -> Result<(), InitError> {
    let c = process.capabilities().as_ref();
    let get =
        |f: fn(&LinuxCapabilities) -> &Option<Capabilities>| cap_set(c.and_then(|c| f(c).as_ref()));
    let bounding = get(LinuxCapabilities::bounding);
    for cap in caps_err(caps::read(None, CapSet::Bounding), Step::DropBoundingCaps)? {
        if !bounding.contains(&cap) {
            caps_err(
                caps::drop(None, CapSet::Bounding, cap),
                Step::DropBoundingCaps,
            )?;
        }
    }
    nix::sys::prctl::set_keepcaps(true).at(Step::KeepCaps)?;
    let user = process.user();
    let gids: Vec<nix::unistd::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    nix::unistd::setgroups(&gids).at(Step::Setgroups)?;
    let gid = nix::unistd::Gid::from_raw(user.gid());
    nix::unistd::setresgid(gid, gid, gid).at(Step::Setgid)?;
    let uid = nix::unistd::Uid::from_raw(user.uid());
    nix::unistd::setresuid(uid, uid, uid).at(Step::Setuid)?;
    // Inheritable first (it may only grow within the old permitted set), then effective
    // (must stay within permitted), then permitted, which may drop what was kept.
    for (set, f) in [
        (
            CapSet::Inheritable,
            LinuxCapabilities::inheritable as fn(&_) -> &_,
        ),
        (CapSet::Effective, LinuxCapabilities::effective),
        (CapSet::Permitted, LinuxCapabilities::permitted),
    ] {
        caps_err(caps::set(None, set, &get(f)), Step::SetCaps)?;
    }
    nix::sys::prctl::set_keepcaps(false).at(Step::KeepCaps)?;
    caps_err(caps::clear(None, CapSet::Ambient), Step::SetCaps)?;
    for cap in get(LinuxCapabilities::ambient) {
        caps_err(caps::raise(None, CapSet::Ambient, cap), Step::SetCaps)?;
    }
    if process.no_new_privileges() == Some(true) {
        nix::sys::prctl::set_no_new_privs().at(Step::NoNewPrivs)?;
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

fn cstrings(v: &[String]) -> Result<Vec<CString>, InitError> {
    v.iter()
        .map(|a| CString::new(a.as_str()).map_err(|_| InitError::NulByte))
        .collect()
}

/// Credentials, cwd, exec. `extra_env` overrides the spec's environment.
pub(crate) fn exec_process(process: &Process, extra_env: &[String]) -> Result<Never, InitError> {
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    for kv in extra_env {
        let key = kv.split('=').next().unwrap_or("");
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    let args = process.args().clone().unwrap_or_default();
    let argv0 = args.first().ok_or(InitError::Spec("process.args"))?;
    let cwd = process.cwd();
    // Resolved (and created) inside the root while still privileged; entered afterwards.
    let root = in_root::open_root(Path::new("/")).on(Step::WorkingDir, Path::new("/"))?;
    let cwd_fd = in_root::ensure(root.as_fd(), cwd, Kind::Dir).on(Step::WorkingDir, cwd)?;
    drop(root);
    apply_credentials(process)?;
    nix::unistd::fchdir(cwd_fd.as_fd()).on(Step::WorkingDir, cwd)?;
    drop(cwd_fd);
    let exe =
        find_executable(argv0, &env).ok_or_else(|| InitError::ExecutableNotFound(argv0.clone()))?;
    let cargs = cstrings(&args)?;
    let cenv = cstrings(&env)?;
    let cexe = CString::new(exe.as_os_str().as_encoded_bytes()).map_err(|_| InitError::NulByte)?;
    // Every fd the shim holds must vanish at exec (the sync pipe's EOF is the success signal).
    // SAFETY: close_range only sets FD_CLOEXEC flags; nix has no wrapper for it.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            3u32,
            u32::MAX,
            nix::libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    let errno = match nix::unistd::execve(&cexe, &cargs, &cenv) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(errno).on(Step::Exec, Path::new(argv0))
}

/// Children of the shim start from a clean signal state: the shim blocks SIGCHLD and
/// ignores SIGPIPE/SIGHUP/SIGINT/SIGTERM, and both would survive exec.
pub fn reset_signals() {
    for s in [
        Signal::SIGPIPE,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGCHLD,
    ] {
        // SAFETY: SIG_DFL installs no handler, so no Rust code runs in signal context.
        let _ = unsafe { nix::sys::signal::signal(s, SigHandler::SigDfl) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::Capability;

    #[test]
    fn spec_capabilities_map_to_kernel_capabilities() {
        let set: Capabilities = [Capability::Chown, Capability::Kill, Capability::AuditWrite]
            .into_iter()
            .collect();
        let mapped = cap_set(Some(&set));
        let mut idx: Vec<u8> = mapped.iter().map(|c| c.index()).collect();
        idx.sort();
        assert_eq!(idx, [0, 5, 29]);
        assert!(cap_set(None).is_empty());
    }

    #[test]
    fn executables_are_found_through_the_container_path() {
        let env = vec!["PATH=/nonexistent:/bin".to_string()];
        assert_eq!(find_executable("sh", &env), Some(PathBuf::from("/bin/sh")));
        assert_eq!(find_executable("/x/y", &env), Some(PathBuf::from("/x/y")));
        assert_eq!(find_executable("no-such-binary-here", &env), None);
    }

    #[test]
    fn every_spec_rlimit_has_a_kernel_resource() {
        assert_eq!(
            resource(PosixRlimitType::RlimitNofile),
            Resource::RLIMIT_NOFILE
        );
        assert_eq!(
            resource(PosixRlimitType::RlimitRttime),
            Resource::RLIMIT_RTTIME
        );
    }
}
