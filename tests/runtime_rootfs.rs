//! Hostile images through the real binary (root only): symlinks in an image must not let
//! the runtime mount, create or write anything on the host, and layers with escaping
//! entries are refused. Each test builds its image here (busybox plus one hostile layer),
//! keeps a canary file and directory on the host, and checks that the canary's hash and
//! the directory's listing are unchanged whatever the container did.
//!
//! Built by a user other than root, the tests are ignored (cfg `skiff_unprivileged`).

mod ctr;

use ctr::{busybox_layer, sha256_hex, Env, LayerBuilder};
use std::path::{Path, PathBuf};

/// A host file and directory that no container of the test may change.
struct Canary {
    dir: PathBuf,
    file: PathBuf,
    hash: String,
    listing: Vec<String>,
}

impl Canary {
    fn new(env: &Env) -> Canary {
        let dir = env.data().join("canary");
        std::fs::create_dir_all(&dir).expect("canary dir");
        let file = dir.join("canary");
        std::fs::write(&file, "host canary: must not change\n").expect("canary file");
        let hash = hash_file(&file);
        let listing = listing(&dir);
        Canary {
            dir,
            file,
            hash,
            listing,
        }
    }

    fn assert_untouched(&self) {
        assert_eq!(hash_file(&self.file), self.hash, "host canary file changed");
        assert_eq!(
            listing(&self.dir),
            self.listing,
            "entries appeared in the host canary dir"
        );
    }
}

fn hash_file(p: &Path) -> String {
    sha256_hex(&std::fs::read(p).expect("reading a canary"))
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("listing a canary dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    v.sort();
    v
}

/// A relative path that climbs to `/` from any depth up to 12 (the data dirs here are
/// shallower; old tar headers hold 100 bytes) and then names `host_path`:
/// followed on the host it reaches `host_path` itself.
fn climbing_to(host_path: &Path) -> String {
    format!(
        "{}{}",
        "../".repeat(12),
        host_path.display().to_string().trim_start_matches('/')
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn symlinked_mount_targets_are_mounted_inside_the_container() {
    let mut e = Env::new();
    let canary = Canary::new(&e);
    let evil = LayerBuilder::new()
        .dir("etc/")
        // An existing host file and a host path that does not exist yet.
        .symlink("etc/hosts", &climbing_to(&canary.file))
        .symlink("etc/resolv.conf", &climbing_to(&canary.dir.join("created")))
        // /dev itself points at the host directory: the tmpfs and devices follow it inside.
        .symlink("dev", &canary.dir.display().to_string())
        .finish();
    let out = e.import("evil-links", &[busybox_layer(), evil]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    let hosts = e.data().join("hosts");
    let resolv = e.data().join("resolv");
    std::fs::write(&hosts, "10.0.0.1 from-the-volume\n").unwrap();
    std::fs::write(&resolv, "nameserver 10.0.0.2\n").unwrap();
    let out = e.run(
        "l1",
        &[
            "-v",
            &format!("{}:/etc/hosts", hosts.display()),
            "-v",
            &format!("{}:/etc/resolv.conf", resolv.display()),
            "evil-links",
            "sh",
            "-c",
            "cat /etc/hosts /etc/resolv.conf && echo x > /dev/null && echo ok",
        ],
    );
    assert_eq!(
        text(&out.stdout),
        "10.0.0.1 from-the-volume\nnameserver 10.0.0.2\nok\n",
        "stderr: {}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
    canary.assert_untouched();
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn a_volume_onto_a_symlink_to_slash_is_refused_with_a_clear_error() {
    let mut e = Env::new();
    let canary = Canary::new(&e);
    let evil = LayerBuilder::new()
        .symlink("data", "/")
        .symlink("up", "../../../..")
        .finish();
    let out = e.import("evil-root", &[busybox_layer(), evil]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    let vol = e.data().join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    for (id, target) in [("r1", "/data"), ("r2", "/up")] {
        let out = e.run(
            id,
            &[
                "-v",
                &format!("{}:{target}", vol.display()),
                "evil-root",
                "true",
            ],
        );
        assert!(!out.status.success(), "{target}: the container ran");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "mount destination {target} resolves to the container's root"
            )),
            "{target}: {err}"
        );
    }
    assert_eq!(listing(&vol), Vec::<String>::new());
    canary.assert_untouched();
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn a_volume_onto_an_absolute_symlink_lands_in_the_volume() {
    let mut e = Env::new();
    let canary = Canary::new(&e);
    let evil = LayerBuilder::new()
        .symlink("vol", &canary.dir.display().to_string())
        .finish();
    let out = e.import("evil-abs", &[busybox_layer(), evil]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    let vol = e.data().join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    let out = e.run(
        "a1",
        &[
            "-v",
            &format!("{}:/vol", vol.display()),
            "-w",
            "/vol",
            "evil-abs",
            "sh",
            "-c",
            "echo written > /vol/x && echo written-too > canary",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(vol.join("x")).unwrap(), "written\n");
    assert_eq!(
        std::fs::read_to_string(vol.join("canary")).unwrap(),
        "written-too\n"
    );
    canary.assert_untouched();
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn a_layer_with_dot_dot_names_is_refused_and_writes_nothing_outside() {
    let mut e = Env::new();
    let canary = Canary::new(&e);
    let evil = LayerBuilder::new()
        .file(&climbing_to(&canary.file), b"overwritten\n", 0o644)
        .file(&climbing_to(&canary.dir.join("new")), b"new\n", 0o644)
        .finish();
    let out = e.import("evil-dotdot", &[busybox_layer(), evil]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    let out = e.run("d1", &["evil-dotdot", "true"]);
    assert!(!out.status.success(), "the container ran");
    let err = text(&out.stderr);
    assert!(
        err.contains("refusing layer entry") && err.contains("leaves the layer"),
        "{err}"
    );
    canary.assert_untouched();
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: namespaces, mounts and cgroups"
)]
fn a_hard_link_to_etc_shadow_is_refused() {
    let mut e = Env::new();
    let canary = Canary::new(&e);
    let shadow = Path::new("/etc/shadow");
    let before = std::fs::metadata(shadow).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.nlink()
    });
    let shadow_hash = shadow.exists().then(|| hash_file(shadow));
    for (name, target) in [
        ("evil-shadow", "/etc/shadow".to_string()),
        ("evil-shadow-rel", climbing_to(shadow)),
        ("evil-canary", climbing_to(&canary.file)),
    ] {
        let evil = LayerBuilder::new()
            .dir("etc/")
            .hardlink("etc/stolen", &target)
            .finish();
        let out = e.import(name, &[busybox_layer(), evil]);
        assert!(out.status.success(), "import: {}", text(&out.stderr));
        let out = e.run(&format!("{name}-c"), &[name, "cat", "/etc/stolen"]);
        assert!(!out.status.success(), "{name}: the container ran");
        let err = text(&out.stderr);
        assert!(
            err.contains("hard link target") && err.contains("leaves the layer"),
            "{name}: {err}"
        );
    }
    // A new hard link would have raised the link count of the host file.
    let after = std::fs::metadata(shadow).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.nlink()
    });
    assert_eq!(before.ok(), after.ok());
    assert_eq!(shadow_hash, shadow.exists().then(|| hash_file(shadow)));
    canary.assert_untouched();
}
