//! `skiff ctr` end to end through the real binary (root only): run, limits, OOM, stop,
//! exec, CRI logs, re-adoption after SIGKILL of the caller, external runc, clean removal.
//!
//! Each test has its own data dir; a guard force-removes its containers and asserts that
//! no cgroup, mount or process is left, also when the test fails (see `ctr/`). Built by a
//! user other than root, the tests are ignored (cfg `skiff_unprivileged`, set by build.rs).

mod ctr;

use ctr::{alive, assert_clean, Env, IMAGE};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn run_prints_output_and_exits_with_the_container_code() {
    let mut e = Env::new();
    let out = e.run(
        "c1",
        &[
            "-e",
            "A=b",
            "-w",
            "/tmp",
            IMAGE,
            "sh",
            "-c",
            "echo $A; pwd; hostname; echo err >&2; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b\n/tmp\nc1\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let log = std::fs::read_to_string(e.data().join("agent/containers/c1/container.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4);
    let parts: Vec<&str> = lines[0].splitn(4, ' ').collect();
    assert!(
        parts[0].ends_with('Z') && parts[0].len() == 30,
        "timestamp {}",
        parts[0]
    );
    assert_eq!(&parts[1..], ["stdout", "F", "b"]);
    assert!(log.contains(" stderr F err\n"));
    assert_eq!(e.ok(&["logs", "c1"]), "b\n/tmp\nc1\n");
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn user_and_read_only_rootfs_are_applied() {
    let mut e = Env::new();
    let out = e.run(
        "u1",
        &[
            "--user",
            "1000:2000",
            "--read-only",
            IMAGE,
            "sh",
            "-c",
            "id -u; id -g; touch /x || echo ro",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1000\n2000\nro\n");
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn memory_limit_kills_with_oom_and_limits_show_in_cgroup_files() {
    let mut e = Env::new();
    let out = e.run(
        "m1",
        &[
            "-d",
            "--memory",
            "16Mi",
            "--cpus",
            "0.5",
            "--pids",
            "20",
            IMAGE,
            "sh",
            "-c",
            "sleep 1; x=$(head -c 100m /dev/zero | tr '\\0' a)",
        ],
    );
    assert!(out.status.success());
    let cg =
        |h: &str, f: &str| PathBuf::from(format!("/sys/fs/cgroup/{h}/{}/m1/{f}", e.cgroup_parent));
    let v1 = cg("cpu", "cpu.cfs_quota_us");
    if v1.exists() {
        assert_eq!(std::fs::read_to_string(&v1).unwrap().trim(), "50000");
        assert_eq!(
            std::fs::read_to_string(cg("pids", "pids.max"))
                .unwrap()
                .trim(),
            "20"
        );
    } else {
        assert_eq!(
            std::fs::read_to_string(format!("/sys/fs/cgroup/{}/m1/cpu.max", e.cgroup_parent))
                .unwrap()
                .trim(),
            "50000 100000"
        );
    }
    let s = e.wait_stopped("m1", Duration::from_secs(20));
    assert_eq!(s["exit_code"], 137);
    assert_eq!(s["oom_killed"], true);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn pids_limit_stops_forks() {
    let mut e = Env::new();
    let out = e.run(
        "p1",
        &[
            "--pids",
            "4",
            IMAGE,
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do sleep 3 & done 2>/dev/null; wait",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("fork") || !out.status.success(), "{stderr}");
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn stop_sends_term_then_kills_after_the_grace_period() {
    let mut e = Env::new();
    // pid 1 without a TERM handler ignores SIGTERM: only the SIGKILL ends it.
    e.run("s1", &["-d", IMAGE, "sleep", "100"]);
    let t = Instant::now();
    e.ok(&["stop", "-t", "1", "s1"]);
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert_eq!(e.state("s1")["exit_code"], 137);
    // with a handler, TERM is enough
    e.run(
        "s2",
        &[
            "-d",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 42' TERM; while true; do sleep 0.1; done",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    e.ok(&["stop", "-t", "10", "s2"]);
    assert_eq!(e.state("s2")["exit_code"], 42);
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn exec_runs_in_the_container_with_and_without_tty() {
    let mut e = Env::new();
    e.run(
        "x1",
        &["-d", IMAGE, "sh", "-c", "echo marker > /tmp/m; sleep 100"],
    );
    std::thread::sleep(Duration::from_millis(200));
    let out = e
        .ctr()
        .args(["exec", "x1", "sh", "-c", "cat /tmp/m; hostname; exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "marker\nx1\n");
    let out = e
        .ctr()
        .args([
            "exec",
            "-t",
            "x1",
            "sh",
            "-c",
            "test -t 0 && echo isatty; exit 4",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).contains("isatty"));
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn an_exec_past_its_timeout_is_killed_and_reported() {
    let mut e = Env::new();
    e.run("t1", &["-d", IMAGE, "sleep", "100"]);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let out = e
        .ctr()
        .args([
            "exec",
            "--timeout",
            "1s",
            "t1",
            "sh",
            "-c",
            "echo $$ > /tmp/pid; exec sleep 60",
        ])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("timed out after 1s"),
        "{out:?}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // The exec'd process is gone: only the container's own process is left in it.
    let ps = e.ok(&["exec", "t1", "sh", "-c", "ps -o pid,args"]);
    assert!(!ps.contains("sleep 60"), "{ps}");
    let quick = e
        .ctr()
        .args(["exec", "--timeout", "5s", "t1", "sh", "-c", "exit 3"])
        .output()
        .unwrap();
    assert_eq!(quick.status.code(), Some(3), "{quick:?}");
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn a_tty_container_starts_with_its_terminal_as_stdio_and_dev_console() {
    let mut e = Env::new();
    e.run(
        "t1",
        &[
            "-d",
            "-t",
            IMAGE,
            "sh",
            "-c",
            "test -t 0 && test -t 1 && echo isatty > /tmp/t; sleep 100",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = e
        .ctr()
        .args([
            "exec",
            "t1",
            "sh",
            "-c",
            "cat /tmp/t; test -c /dev/console && echo console",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "isatty\nconsole\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn shim_survives_sigkill_of_the_caller_and_the_exit_is_not_lost() {
    let mut e = Env::new();
    e.ids.push("r1".into());
    let mut child = e
        .ctr()
        .args([
            "run",
            "--name",
            "r1",
            IMAGE,
            "sh",
            "-c",
            "sleep 2; echo late; exit 5",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the caller once the container runs (not after a fixed delay: a loaded machine
    // may take longer to get there).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !e.ok(&["ps"]).contains("running") {
        assert!(std::time::Instant::now() < deadline, "r1 never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(e.ok(&["ps"]).contains("running"));
    let s = e.wait_stopped("r1", Duration::from_secs(10));
    assert_eq!(s["exit_code"], 5);
    assert!(e.ok(&["logs", "r1"]).contains("late"));
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn external_runc_runs_the_same_bundle() {
    assert!(
        Command::new("runc").arg("--version").output().is_ok(),
        "needs runc on PATH (scripts/install-test-deps.sh installs it)"
    );
    let mut e = Env::new();
    let out = e.run(
        "rc1",
        &[
            "--runtime",
            "runc",
            IMAGE,
            "sh",
            "-c",
            "echo via-runc; exit 6",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "via-runc\n");
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn rm_leaves_no_processes_cgroups_or_mounts() {
    let mut e = Env::new();
    e.run("d1", &["-d", IMAGE, "sleep", "100"]);
    let shim_pid: i32 = std::fs::read_to_string(e.data().join("agent/containers/d1/shim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = e.state("d1")["pid"].as_i64().unwrap() as i32;
    e.ok(&["rm", "-f", "d1"]);
    assert_clean(e.data(), &e.cgroup_parent, "d1");
    for p in [shim_pid, pid] {
        assert!(!alive(p), "process {p} still alive");
    }
}

/// Removing a container reclaims the page cache charged to its (v1) memory cgroup: charged
/// pages would keep the removed cgroup in the kernel, dying, slowing every cgroup after it.
/// Seen from the test's parent cgroup, whose usage counts its dying children's charges.
#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn rm_reclaims_the_page_cache_charged_to_the_containers_memory_cgroup() {
    let mut e = Env::new();
    let parent = PathBuf::from(format!("/sys/fs/cgroup/memory/{}", e.cgroup_parent));
    // Into a host directory: the file, and so its cached pages, outlive the container.
    let host = tempfile::tempdir().unwrap();
    let volume = format!("{}:/out", host.path().display());
    let out = e.run(
        "pc",
        &[
            "-d",
            "-v",
            &volume,
            IMAGE,
            "sh",
            "-c",
            "head -c 16777216 /dev/zero > /out/big; sync; touch /out/written; sleep 100",
        ],
    );
    assert!(out.status.success());
    if !parent.join("memory.usage_in_bytes").exists() {
        eprintln!("no v1 memory hierarchy here: the v2 kernel handles dying cgroups itself");
        return;
    }
    let usage = || -> u64 {
        std::fs::read_to_string(parent.join("memory.usage_in_bytes"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !host.path().join("written").exists() {
        assert!(
            Instant::now() < deadline,
            "the container never wrote its file"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(usage() >= 16 << 20, "usage {} before rm", usage());
    e.ok(&["rm", "-f", "pc"]);
    assert!(usage() < 4 << 20, "usage {} after rm", usage());
}
