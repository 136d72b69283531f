//! End-to-end tests of the image store: `skiff images …` against local `docker-registry`
//! instances, airgap imports, and an overlay rootfs built from the pulled layers.
//!
//! Needs root and `scripts/install-test-deps.sh`. Every registry, mount and temp dir
//! is removed by a guard, also when a test fails.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::registry::{self, Registry, TestImage};

/// A data dir plus a registries.yaml for one test.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::Builder::new()
                .prefix("skiff-images-")
                .tempdir()
                .expect("a temp dir"),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn agent_dir(&self) -> PathBuf {
        self.data_dir().join("agent")
    }

    fn registries(&self) -> PathBuf {
        self.dir.path().join("registries.yaml")
    }

    fn write_registries(&self, yaml: &str) {
        fs::write(self.registries(), yaml).expect("writing registries.yaml");
    }

    /// `skiff images --data-dir D <args>` (pull gets `--registries` and `--quiet` added).
    fn images(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(common::skiff_binary());
        cmd.arg("images").arg("--data-dir").arg(self.data_dir());
        cmd.args(args);
        if args.first() == Some(&"pull") {
            cmd.arg("--registries")
                .arg(self.registries())
                .arg("--quiet");
        }
        cmd.env("NO_PROXY", "*")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY");
        cmd.output().expect("running skiff images")
    }

    #[track_caller]
    fn images_ok(&self, args: &[&str]) -> String {
        let out = self.images(args);
        assert!(
            out.status.success(),
            "skiff images {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn blob_count(&self) -> usize {
        count(&self.agent_dir().join("content/blobs/sha256"))
    }

    fn ingest_count(&self) -> usize {
        count(&self.agent_dir().join("content/ingest"))
    }
}

fn count(dir: &Path) -> usize {
    fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A registry with the test busybox image pushed as `repo:tag`.
fn registry_with_busybox(reg: &Registry, repo_tag: &str) -> (tempfile::TempDir, TestImage) {
    let layout = tempfile::tempdir().expect("layout dir");
    let image = registry::build_busybox_layout(layout.path(), "t");
    reg.push(layout.path(), "t", repo_tag);
    (layout, image)
}

#[test]
fn pull_by_tag_and_by_digest_then_ls_and_rm() {
    let reg = Registry::start();
    let (_layout, image) = registry_with_busybox(&reg, "test/busybox:1");
    let env = Env::new();
    let tagged = format!("{}/test/busybox:1", reg.host());
    let out = env.images_ok(&["pull", &tagged]);
    assert!(out.contains(&image.manifest_digest), "{out}");
    let by_digest = format!("{}/test/busybox@{}", reg.host(), image.index_digest);
    let out = env.images_ok(&["pull", &by_digest]);
    assert!(out.contains(&image.manifest_digest), "{out}");

    let ls = env.images_ok(&["ls", "-q"]);
    assert!(ls.lines().any(|l| l == tagged), "{ls}");
    assert!(ls.lines().any(|l| l == by_digest), "{ls}");
    assert_eq!(
        env.blob_count(),
        4,
        "index resolved: manifest, config, 2 layers"
    );

    env.images_ok(&["rm", &tagged]);
    assert_eq!(env.blob_count(), 4, "still used by the digest reference");
    env.images_ok(&["rm", &by_digest]);
    assert_eq!(env.images_ok(&["ls", "-q"]).trim(), "");
    assert_eq!(env.blob_count(), 0, "rm frees unreferenced content");
    let out = env.images(&["rm", &tagged]);
    assert!(!out.status.success());
}

#[test]
fn pull_picks_the_requested_platform_from_an_index() {
    let reg = Registry::start();
    let (_layout, image) = registry_with_busybox(&reg, "multi:1");
    let env = Env::new();
    let r = format!("{}/multi:1", reg.host());
    let other = if std::env::consts::ARCH == "aarch64" {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    let out = env.images_ok(&["pull", "--platform", other, &r]);
    assert!(
        !out.contains(&image.manifest_digest),
        "got the host manifest: {out}"
    );
    let out = env.images(&["pull", "--platform", "linux/s390x", &r]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("linux/s390x"), "{}", stderr(&out));
}

#[test]
fn pull_through_a_docker_io_mirror_in_registries_yaml() {
    let reg = Registry::start();
    let (_layout, image) = registry_with_busybox(&reg, "library/busybox:1.36");
    let env = Env::new();
    env.write_registries(&format!(
        "mirrors:\n  docker.io:\n    endpoint:\n      - \"http://{}\"\n",
        reg.host()
    ));
    let out = env.images_ok(&["pull", "busybox:1.36"]);
    assert!(out.contains("docker.io/library/busybox:1.36"), "{out}");
    assert!(out.contains(&image.manifest_digest), "{out}");
}

#[test]
fn pull_with_basic_auth_and_a_wrong_password_fails_cleanly() {
    let reg = Registry::start_with_auth("alice", "s3cret");
    let (_layout, _image) = registry_with_busybox(&reg, "private/busybox:1");
    let env = Env::new();
    let r = format!("{}/private/busybox:1", reg.host());

    let out = env.images(&["pull", &r]);
    assert!(!out.status.success(), "anonymous pull must fail");

    env.write_registries(&format!(
        "configs:\n  \"{}\":\n    auth:\n      username: alice\n      password: wrong\n",
        reg.host()
    ));
    let out = env.images(&["pull", &r]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&reg.host()), "error names the registry: {err}");
    assert!(
        err.to_lowercase().contains("credentials") || err.contains("401"),
        "{err}"
    );
    assert_eq!(env.blob_count(), 0, "nothing stored");
    assert_eq!(env.ingest_count(), 0, "nothing half-written");
    assert_eq!(env.images_ok(&["ls", "-q"]).trim(), "");

    env.write_registries(&format!(
        "configs:\n  \"{}\":\n    auth:\n      username: alice\n      password: s3cret\n",
        reg.host()
    ));
    env.images_ok(&["pull", &r]);
}

#[test]
fn corrupted_layer_in_the_registry_is_rejected_without_poisoning_the_store() {
    let reg = Registry::start();
    let (layout, image) = registry_with_busybox(&reg, "bad/busybox:1");
    // Flip bytes of the largest blob (the busybox layer) inside the registry's storage.
    let blobs = reg.storage().join("docker/registry/v2/blobs/sha256");
    let mut biggest: Option<(u64, PathBuf)> = None;
    for prefix in fs::read_dir(&blobs).expect("registry blobs").flatten() {
        for blob in fs::read_dir(prefix.path()).expect("blob dir").flatten() {
            let data = blob.path().join("data");
            let len = fs::metadata(&data).map(|m| m.len()).unwrap_or(0);
            if biggest.as_ref().is_none_or(|(l, _)| len > *l) {
                biggest = Some((len, data));
            }
        }
    }
    let (_, data) = biggest.expect("the registry holds blobs");
    let mut bytes = fs::read(&data).expect("reading the blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).expect("corrupting the blob");

    let env = Env::new();
    let r = format!("{}/bad/busybox:1", reg.host());
    let out = env.images(&["pull", &r]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("digest") || err.contains("mismatch"), "{err}");
    // Other layers may keep a resumable partial download; the bad one keeps nothing.
    let bad_hex = data
        .parent()
        .and_then(|p| p.file_name())
        .expect("blob dir name")
        .to_string_lossy()
        .into_owned();
    let ingest = env.agent_dir().join("content/ingest");
    assert!(
        !ingest.join(format!("{bad_hex}.partial")).exists(),
        "bad data kept"
    );
    assert!(!env
        .agent_dir()
        .join("content/blobs/sha256")
        .join(&bad_hex)
        .exists());
    assert_eq!(env.images_ok(&["ls", "-q"]).trim(), "");

    // Repair the registry: the next pull succeeds (the store was not poisoned).
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).expect("repairing the blob");
    let out = env.images_ok(&["pull", &r]);
    assert!(out.contains(&image.manifest_digest));
    drop(layout);
}

/// The busybox test image as a `docker save` archive (named `example.com/saved:v1`) and as
/// an OCI-layout tarball (`docker.io/library/busybox:1.36`), both uncompressed.
struct Tarballs {
    layout: tempfile::TempDir,
    files: tempfile::TempDir,
    image: registry::TestImage,
    docker_tar: std::path::PathBuf,
    oci_tar: std::path::PathBuf,
}

fn tarballs() -> Tarballs {
    let layout = tempfile::tempdir().expect("layout dir");
    let image =
        registry::build_busybox_layout_gzip(layout.path(), "docker.io/library/busybox:1.36");
    let files = tempfile::tempdir().expect("files dir");
    let docker_tar = files.path().join("docker.tar");
    registry::docker_archive(
        layout.path(),
        "docker.io/library/busybox:1.36",
        &docker_tar,
        "example.com/saved:v1",
    );
    let oci_tar = files.path().join("oci.tar");
    registry::tar_layout(layout.path(), &oci_tar, false);
    Tarballs {
        layout,
        files,
        image,
        docker_tar,
        oci_tar,
    }
}

#[test]
fn import_docker_save_and_oci_layout_tarballs() {
    let Tarballs {
        layout,
        files,
        image,
        docker_tar,
        oci_tar,
    } = tarballs();
    let oci_tgz = files.path().join("oci.tar.gz");
    registry::tar_layout(layout.path(), &oci_tgz, true);

    let env = Env::new();
    let out = env.images_ok(&["import", docker_tar.to_str().unwrap()]);
    assert!(out.contains("example.com/saved:v1"), "{out}");
    assert!(out.contains(&image.config_digest), "same image id: {out}");
    for t in [&oci_tar, &oci_tgz] {
        let out = env.images_ok(&["import", t.to_str().unwrap()]);
        assert!(out.contains("docker.io/library/busybox:1.36"), "{out}");
        assert!(out.contains(&image.config_digest), "{out}");
    }
    let ls = env.images_ok(&["ls"]);
    assert!(
        ls.contains("example.com/saved:v1") && ls.contains("busybox:1.36"),
        "{ls}"
    );

    // The airgap drop dir is imported by the agent through import_dir.
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let env2 = Env::new();
    let store = skiff::runtime::images::ImageStore::open(
        &env2.agent_dir(),
        skiff::runtime::images::RegistriesConfig::default(),
    )
    .expect("opening a store");
    fs::copy(&oci_tgz, env2.agent_dir().join("images/busybox.tar.gz")).expect("copy");
    let imported = rt
        .block_on(store.import_dir(&env2.agent_dir().join("images")))
        .expect("import_dir");
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0].id, image.config_digest);
}

/// The busybox image pushed to `reg`, and the reference to pull it by.
fn pushed_busybox(reg: &Registry, repo_tag: &str) -> (tempfile::TempDir, TestImage, String) {
    let (layout, image) = registry_with_busybox(reg, repo_tag);
    (layout, image, format!("{}/{repo_tag}", reg.host()))
}

/// Asserts a failed pull left no blob, no partial download and no image name behind.
#[track_caller]
fn assert_nothing_stored(env: &Env) {
    assert_eq!(env.blob_count(), 0, "nothing stored");
    assert_eq!(env.ingest_count(), 0, "nothing half-written");
    assert_eq!(env.images_ok(&["ls", "-q"]).trim(), "");
}

#[test]
fn pull_from_a_tls_registry_trusts_the_ca_file_given_in_registries_yaml() {
    let reg = Registry::start_tls();
    let (_layout, image, r) = pushed_busybox(&reg, "tls/busybox:1");
    let env = Env::new();
    // No scheme anywhere: the tls section alone must make skiff speak HTTPS to loopback.
    env.write_registries(&format!(
        "configs:\n  \"{}\":\n    tls:\n      ca_file: {}\n",
        reg.host(),
        reg.ca_file().display()
    ));
    let out = env.images_ok(&["pull", &r]);
    assert!(out.contains(&image.manifest_digest), "{out}");
    assert_eq!(env.blob_count(), 4, "manifest, config, 2 layers");
}

#[test]
fn pull_from_a_tls_registry_without_its_ca_fails_with_a_certificate_message() {
    let reg = Registry::start_tls();
    let (_layout, _image, r) = pushed_busybox(&reg, "tls/busybox:1");
    let env = Env::new();
    env.write_registries(&format!(
        "mirrors:\n  \"{host}\":\n    endpoint:\n      - \"https://{host}\"\n",
        host = reg.host()
    ));
    let out = env.images(&["pull", &r]);
    assert!(!out.status.success(), "an unknown CA must not be trusted");
    let err = stderr(&out);
    assert!(err.contains(&reg.host()), "error names the registry: {err}");
    assert!(
        err.contains("certificate is not trusted") && err.contains("unknown certificate authority"),
        "error says what is wrong with the certificate: {err}"
    );
    assert!(
        err.contains("tls.ca_file"),
        "error says how to fix it: {err}"
    );
    assert!(
        !err.contains("error sending request"),
        "no raw HTTP client chain: {err}"
    );
    assert_nothing_stored(&env);
}

#[test]
fn pull_from_a_tls_registry_with_insecure_skip_verify_needs_no_ca() {
    let reg = Registry::start_tls();
    let (_layout, image, r) = pushed_busybox(&reg, "tls/busybox:1");
    let env = Env::new();
    env.write_registries(&format!(
        "configs:\n  \"{}\":\n    tls:\n      insecure_skip_verify: true\n",
        reg.host()
    ));
    let out = env.images_ok(&["pull", &r]);
    assert!(out.contains(&image.manifest_digest), "{out}");
}

#[test]
fn pull_refuses_client_certificates_before_contacting_the_registry() {
    // A listener that only counts connections stands in for the registry.
    let listener =
        std::net::TcpListener::bind(("127.0.0.1", 0)).expect("binding a loopback listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let host = format!(
        "127.0.0.1:{}",
        listener.local_addr().expect("address").port()
    );
    let env = Env::new();
    env.write_registries(&format!(
        "configs:\n  \"{host}\":\n    tls:\n      cert_file: /etc/skiff/client.crt\n      key_file: /etc/skiff/client.key\n"
    ));
    let out = env.images(&["pull", &format!("{host}/app:1")]);
    assert!(
        !out.status.success(),
        "a client certificate must not be ignored"
    );
    let err = stderr(&out);
    assert!(
        err.contains("client certificates for registries are not supported"),
        "{err}"
    );
    assert!(err.contains(&host), "error names the registry: {err}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the registry was contacted"
    );
    assert_nothing_stored(&env);
}

#[test]
fn pull_from_a_token_auth_registry_uses_a_bearer_token_for_the_configured_password() {
    let reg = Registry::start_with_token_auth("alice", "s3cret");
    let (_layout, image, r) = pushed_busybox(&reg, "private/busybox:1");
    let pushed = reg.token_server().issued();
    assert!(pushed > 0, "skopeo pushed with a token");

    let env = Env::new();
    let out = env.images(&["pull", &r]);
    assert!(!out.status.success(), "anonymous pull must fail");
    let err = stderr(&out);
    assert!(err.contains("authentication required"), "{err}");
    assert!(
        err.contains(&format!("configs.\"{}\".auth", reg.host())),
        "{err}"
    );

    env.write_registries(&format!(
        "configs:\n  \"{}\":\n    auth:\n      username: alice\n      password: s3cret\n",
        reg.host()
    ));
    let out = env.images_ok(&["pull", &r]);
    assert!(out.contains(&image.manifest_digest), "{out}");
    assert!(
        reg.token_server().issued() > pushed,
        "the pull fetched a token from the realm"
    );
}

#[test]
fn pull_from_a_token_auth_registry_with_a_wrong_password_fails_cleanly() {
    let reg = Registry::start_with_token_auth("alice", "s3cret");
    let (_layout, _image, r) = pushed_busybox(&reg, "private/busybox:1");
    let env = Env::new();
    env.write_registries(&format!(
        "configs:\n  \"{}\":\n    auth:\n      username: alice\n      password: wrong\n",
        reg.host()
    ));
    let refused = reg.token_server().refused();
    let out = env.images(&["pull", &r]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&reg.host()), "error names the registry: {err}");
    assert!(err.contains("rejected the credentials"), "{err}");
    assert!(
        err.contains("invalid username or password"),
        "error carries the token server's reason: {err}"
    );
    assert!(
        reg.token_server().refused() > refused,
        "the realm was asked"
    );
    assert_nothing_stored(&env);
}

/// Compresses `src` into `dst` with gzip or zstd.
fn compress(src: &Path, dst: &Path, zstd: bool) {
    let data = fs::read(src).expect("reading the archive");
    let out = if zstd {
        zstd::encode_all(&data[..], 3).expect("zstd")
    } else {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).expect("gzip");
        gz.finish().expect("gzip")
    };
    fs::write(dst, out).expect("writing the compressed archive");
}

#[test]
fn import_gzip_and_zstd_compressed_docker_save_and_oci_layout_tarballs() {
    let Tarballs {
        layout: _,
        files,
        image,
        docker_tar,
        oci_tar,
    } = tarballs();

    for (src, name) in [
        (&docker_tar, "example.com/saved:v1"),
        (&oci_tar, "docker.io/library/busybox:1.36"),
    ] {
        for (ext, zstd) in [("tar.gz", false), ("tar.zst", true)] {
            let packed = files.path().join(format!(
                "{}.{ext}",
                src.file_stem().expect("a file name").to_string_lossy()
            ));
            compress(src, &packed, zstd);
            // A fresh store each time: every blob must come out of this archive.
            let env = Env::new();
            let out = env.images_ok(&["import", packed.to_str().expect("UTF-8 path")]);
            assert!(out.contains(name), "{}: {out}", packed.display());
            assert!(
                out.contains(&image.config_digest),
                "{}: same image id: {out}",
                packed.display()
            );
            let ls = env.images_ok(&["ls", "-q"]);
            assert!(ls.lines().any(|l| l == name), "{}: {ls}", packed.display());
            assert_eq!(env.ingest_count(), 0, "nothing half-written");
        }
    }
}

/// Unmounts and removes a container rootfs when dropped.
struct RootfsGuard<'a> {
    snapshotter: &'a skiff::runtime::snapshots::Snapshotter,
    id: &'a str,
}

impl Drop for RootfsGuard<'_> {
    fn drop(&mut self) {
        let _ = self.snapshotter.remove_rootfs(self.id);
    }
}

#[test]
#[cfg_attr(
    skiff_unprivileged,
    ignore = "needs root: unpacks with chown and device nodes, mounts overlayfs"
)]
fn whiteout_hides_the_lower_file_in_the_mounted_rootfs() {
    use skiff::runtime::images::{ImageStore, RegistriesConfig};
    use skiff::runtime::snapshots::Snapshotter;

    let reg = Registry::start();
    let (_layout, _image) = registry_with_busybox(&reg, "wh/busybox:1");
    let env = Env::new();
    let r = format!("{}/wh/busybox:1", reg.host());
    env.images_ok(&["pull", &r]);

    let store = ImageStore::open(&env.agent_dir(), RegistriesConfig::default()).expect("store");
    let image = store.get(&r).expect("get").expect("the pulled image");
    let snapshotter = Snapshotter::new(&env.agent_dir());
    let layers = snapshotter
        .ensure_unpacked(&store, &image)
        .expect("unpacking");
    assert_eq!(layers.len(), 2);
    // The lower layer still has the file; the upper one has its overlay whiteout.
    assert!(layers[1].join("etc/motd").is_file());
    let guard = RootfsGuard {
        snapshotter: &snapshotter,
        id: "c1",
    };
    let rootfs = snapshotter.mount_rootfs(guard.id, &layers).expect("mount");
    assert!(
        !rootfs.join("etc/motd").exists(),
        "whiteout hides /etc/motd"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/keep")).unwrap(),
        "kept\n"
    );
    assert_eq!(
        fs::read_to_string(rootfs.join("etc/added")).unwrap(),
        "added\n"
    );
    let out = Command::new("chroot")
        .arg(&rootfs)
        .args(["/bin/cat", "/etc/keep"])
        .output()
        .expect("chroot");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\n");
    // Writes go to the upper dir, never into the shared layer.
    fs::write(rootfs.join("etc/keep"), "changed").expect("write in rootfs");
    assert_eq!(
        fs::read_to_string(layers[1].join("etc/keep")).unwrap(),
        "kept\n"
    );

    // A single-layer view mounts too, and unpacking again is a no-op.
    let again = snapshotter.ensure_unpacked(&store, &image).expect("again");
    assert_eq!(again, layers);
    let single = RootfsGuard {
        snapshotter: &snapshotter,
        id: "c2",
    };
    let root2 = snapshotter
        .mount_rootfs(single.id, &layers[1..])
        .expect("single-layer mount");
    assert!(root2.join("etc/motd").is_file());

    drop(single);
    drop(guard);
    assert!(!rootfs.exists(), "rootfs removed");
    assert!(!env.agent_dir().join("containers/c1/upper").exists());
    // gc with the image unused deletes its content and snapshots.
    let report = store.gc(&[]).expect("gc");
    assert_eq!(report.removed_images, vec![r.clone()]);
    assert!(report.freed_bytes > 0);
    assert!(!layers[0].exists());
}

/// Benchmark, not a check: `cargo test --release --test runtime_images -- --ignored
/// pull_speed --nocapture` prints `name value unit` lines for scripts/bench.sh.
#[test]
#[ignore]
fn pull_speed_of_a_50mb_image_vs_skopeo() {
    let reg = Registry::start();
    let layout = tempfile::tempdir().expect("layout dir");
    registry::build_big_layout(layout.path(), "big", 50);
    reg.push(layout.path(), "big", "bench/big:1");
    let r = format!("{}/bench/big:1", reg.host());

    let env = Env::new();
    let start = std::time::Instant::now();
    env.images_ok(&["pull", &r]);
    let skiff_s = start.elapsed().as_secs_f64();

    let dest = tempfile::tempdir().expect("skopeo dest");
    let start = std::time::Instant::now();
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{r}"))
        .arg(format!("dir:{}", dest.path().join("img").display()))
        .status()
        .expect("skopeo");
    let skopeo_s = start.elapsed().as_secs_f64();
    assert!(status.success());
    println!("pull_50mb_s {skiff_s:.3} s");
    println!("skopeo_50mb_s {skopeo_s:.3} s");
    println!("pull_vs_skopeo_ratio {:.2} ratio", skiff_s / skopeo_s);
}
