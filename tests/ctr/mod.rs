//! Harness of the `skiff ctr` end-to-end tests (root only): a private data dir with
//! busybox imported, images built here from tar layers (so tests can build hostile ones),
//! and a guard that force-removes the test's containers and asserts that no cgroup, mount,
//! directory or process is left, also when the test fails.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const IMAGE: &str = "busybox";

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The busybox image's only layer: Debian's busybox-static and a few applet links.
pub fn busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read("/usr/bin/busybox")
        .expect("these tests need /usr/bin/busybox (Debian's busybox-static)");
    let mut b = LayerBuilder::new();
    for d in ["bin/", "etc/", "tmp/", "proc/", "sys/", "dev/"] {
        b.dir(d);
    }
    b.file("bin/busybox", &busybox, 0o755);
    for app in [
        "sh", "true", "echo", "cat", "sleep", "id", "pwd", "touch", "dd", "head", "tr", "hostname",
        "test", "ls",
    ] {
        b.symlink(&format!("bin/{app}"), "busybox");
    }
    b.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
    b.finish()
}

/// A layer tar written entry by entry, including entries `tar::Builder` refuses to write
/// (names with `..`, hard links to absolute paths): what a hostile image would carry.
pub struct LayerBuilder(Vec<u8>);

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder(Vec::new())
    }

    fn entry(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
    ) {
        let mut h = tar::Header::new_old();
        {
            let bytes = h.as_old_mut();
            assert!(name.len() <= bytes.name.len(), "name too long: {name}");
            bytes.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                assert!(l.len() <= bytes.linkname.len(), "link too long: {l}");
                bytes.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name, tar::EntryType::Directory, None, b"", 0o755);
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        self.entry(name, tar::EntryType::Regular, None, data, mode);
        self
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, tar::EntryType::Symlink, Some(target), b"", 0o777);
        self
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(name, tar::EntryType::Link, Some(target), b"", 0o644);
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.0);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}

/// A `docker save` archive of `layers` tagged `name:latest`.
pub fn docker_archive(name: &str, layers: &[Vec<u8>]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha256_hex(l)))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let config_name = format!("{}.json", sha256_hex(config.as_bytes()));
    let layer_names: Vec<String> = (0..layers.len()).map(|i| format!("layer{i}.tar")).collect();
    let manifest = serde_json::json!([{
        "Config": config_name, "RepoTags": [format!("{name}:latest")], "Layers": layer_names,
    }])
    .to_string();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).expect("archive entry");
    };
    add("manifest.json", manifest.as_bytes());
    add(&config_name, config.as_bytes());
    for (n, l) in layer_names.iter().zip(layers) {
        add(n, l);
    }
    b.into_inner().expect("archive bytes")
}

pub struct Env {
    dir: tempfile::TempDir,
    pub ids: Vec<String>,
    /// Private parent cgroup (SKIFF_CGROUP_PARENT) so the guard can remove it.
    pub cgroup_parent: String,
}

impl Env {
    pub fn new() -> Env {
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

    pub fn data(&self) -> &Path {
        self.dir.path()
    }

    /// Imports busybox as `busybox:latest` (skipped when SKIFF_TEST_STUB_IMAGES is set: the
    /// scratch build has a stub store).
    fn import_busybox(&self) {
        if std::env::var_os("SKIFF_TEST_STUB_IMAGES").is_some() {
            return;
        }
        let out = self.import("busybox", &[busybox_layer()]);
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes a docker-save archive of `layers` (plain tars, bottom first) tagged
    /// `name:latest` and runs `skiff images import` on it.
    pub fn import(&self, name: &str, layers: &[Vec<u8>]) -> Output {
        let path = self.data().join(format!("{name}.tar"));
        std::fs::write(&path, docker_archive(name, layers)).expect("writing the archive");
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["images", "import", "--data-dir"])
            .arg(self.data())
            .arg(&path)
            .output()
            .expect("running skiff images import")
    }

    pub fn ctr(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_skiff"));
        c.args(["ctr", "--data-dir"]).arg(self.data());
        c.env("SKIFF_CGROUP_PARENT", &self.cgroup_parent);
        c
    }

    pub fn run(&mut self, id: &str, args: &[&str]) -> Output {
        self.ids.push(id.to_string());
        self.ctr()
            .args(["run", "--name", id])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr().args(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn state(&self, id: &str) -> serde_json::Value {
        let p = self
            .data()
            .join("agent/containers")
            .join(id)
            .join("state.json");
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    }

    pub fn wait_stopped(&self, id: &str, timeout: Duration) -> serde_json::Value {
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

pub fn cgroup_dirs(parent: &str, id: &str) -> Vec<PathBuf> {
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
pub fn alive(pid: i32) -> bool {
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

pub fn assert_clean(data: &Path, parent: &str, id: &str) {
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
