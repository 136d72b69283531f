//! `skiff ctr` end to end through the real binary (root only): run, limits, OOM, stop,
//! exec, CRI logs, re-adoption after SIGKILL of the caller, external runc, clean removal.
//!
//! Each test has its own data dir; a guard force-removes its containers and asserts that
//! no cgroup, mount or process is left, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const IMAGE: &str = "busybox";

fn root() -> bool {
    nix::unistd::Uid::effective().is_root() && Path::new("/usr/bin/busybox").exists()
}

struct Env {
    dir: tempfile::TempDir,
    ids: Vec<String>,
    /// Private parent cgroup (SKIFF_CGROUP_PARENT) so the guard can remove it.
    cgroup_parent: String,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let cgroup_parent = format!(
            "skiff-test-{}",
            dir.path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("x")
                .trim_start_matches('.')
        );
        let env = Env {
            dir,
            ids: Vec::new(),
            cgroup_parent,
        };
        env.import_busybox();
        env
    }

    fn data(&self) -> &Path {
        self.dir.path()
    }

    /// A one-layer docker-save archive of busybox-static, imported with `skiff images import`
    /// (skipped when SKIFF_TEST_STUB_IMAGES is set: the scratch build has a stub store).
    fn import_busybox(&self) {
        if std::env::var_os("SKIFF_TEST_STUB_IMAGES").is_some() {
            return;
        }
        let work = self.data().join("img");
        let rootfs = work.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        for d in ["etc", "tmp", "proc", "sys", "dev"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/usr/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        for app in [
            "sh", "true", "echo", "cat", "sleep", "id", "pwd", "touch", "dd", "head", "tr",
            "hostname", "test", "ls",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(app)).unwrap();
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        let sh = format!(
            r#"set -e; cd {w}; tar -C rootfs -cf layer.tar .;
            diff=$(sha256sum layer.tar | cut -d' ' -f1);
            printf '{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["sha256:%s"]}}}}' $diff > config.json;
            cfg=$(sha256sum config.json | cut -d' ' -f1); mv config.json $cfg.json;
            printf '[{{"Config":"%s.json","RepoTags":["busybox:latest"],"Layers":["layer.tar"]}}]' $cfg > manifest.json;
            tar -cf image.tar manifest.json $cfg.json layer.tar"#,
            w = work.display()
        );
        let st = Command::new("sh").arg("-c").arg(sh).status().unwrap();
        assert!(st.success());
        let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["images", "import", "--data-dir"])
            .arg(self.data())
            .arg(work.join("image.tar"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skiff"));
        c.args(["ctr", "--data-dir"]).arg(self.data());
        c.env("SKIFF_CGROUP_PARENT", &self.cgroup_parent);
        c
    }

    fn run(&mut self, id: &str, args: &[&str]) -> Output {
        self.ids.push(id.to_string());
        self.ctr()
            .args(["run", "--name", id])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr().args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn state(&self, id: &str) -> serde_json::Value {
        let p = self
            .data()
            .join("agent/containers")
            .join(id)
            .join("state.json");
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    fn wait_stopped(&self, id: &str, timeout: Duration) -> serde_json::Value {
        let t = Instant::now();
        loop {
            let s = self.state(id);
            if s["status"] == "stopped" || t.elapsed() > timeout {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn cgroup_dirs(parent: &str, id: &str) -> Vec<PathBuf> {
    ["cpu", "memory", "pids", "unified", "cpuacct", "devices"]
        .iter()
        .map(|h| {
            PathBuf::from("/sys/fs/cgroup")
                .join(h)
                .join(parent)
                .join(id)
        })
        .collect()
}

/// Live and not a zombie (a daemonized shim is reaped by init, not by us).
fn alive(pid: i32) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return false,
            Ok(s)
                if s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with(['Z', 'X'])) =>
            {
                return false
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    true
}

fn assert_clean(data: &Path, parent: &str, id: &str) {
    for d in cgroup_dirs(parent, id) {
        assert!(!d.exists(), "leftover cgroup {}", d.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&data.display().to_string()),
        "leftover mount under {}",
        data.display()
    );
    assert!(
        !data.join("agent/containers").join(id).exists(),
        "leftover dir for {id}"
    );
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.ctr().args(["rm", "-f", id]).output();
        }
        // The private parent cgroups must be empty now: removing them proves it.
        let mut left = Vec::new();
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = h.path().join(&self.cgroup_parent);
            if p.is_dir() && std::fs::remove_dir(&p).is_err() {
                left.push(p);
            }
        }
        if !std::thread::panicking() {
            for id in &self.ids {
                assert_clean(self.dir.path(), &self.cgroup_parent, id);
            }
            assert!(left.is_empty(), "cgroups left behind: {left:?}");
        }
    }
}

#[test]
fn run_prints_output_and_exits_with_the_container_code() {
    if !root() {
        return;
    }
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
fn user_and_read_only_rootfs_are_applied() {
    if !root() {
        return;
    }
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
fn memory_limit_kills_with_oom_and_limits_show_in_cgroup_files() {
    if !root() {
        return;
    }
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
fn pids_limit_stops_forks() {
    if !root() {
        return;
    }
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
fn stop_sends_term_then_kills_after_the_grace_period() {
    if !root() {
        return;
    }
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
fn exec_runs_in_the_container_with_and_without_tty() {
    if !root() {
        return;
    }
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
fn shim_survives_sigkill_of_the_caller_and_the_exit_is_not_lost() {
    if !root() {
        return;
    }
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
fn external_runc_runs_the_same_bundle() {
    if !root() || Command::new("runc").arg("--version").output().is_err() {
        return;
    }
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
fn rm_leaves_no_processes_cgroups_or_mounts() {
    if !root() {
        return;
    }
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
