//! Local OCI registries and test images for the image-store tests.
//!
//! Owns every `docker-registry` process it starts (and the token server of a token-auth
//! registry). Invariant: when a [`Registry`] is dropped (also while a test panics) its
//! process group is killed and reaped, its token server stopped, and its storage dir (with
//! its certificates and keys) removed. Images are built by hand from `/bin/busybox`
//! (Debian's busybox-static) as OCI layouts and pushed with `skopeo`; nothing is fetched
//! from outside the machine.

use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest as _, Sha256};

use super::token_server::{self, TokenServer};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// How clients must authenticate to a [`Registry`].
enum Auth {
    Anonymous,
    /// htpasswd basic auth.
    Basic,
    /// Docker token flow against a [`TokenServer`] that takes the same credentials.
    Token,
}

/// A `docker-registry` on 127.0.0.1: plain HTTP or TLS, anonymous, basic or token auth.
pub struct Registry {
    child: Option<Child>,
    pub port: u16,
    /// The credentials a client needs (basic and token auth).
    pub auth: Option<(String, String)>,
    tls: bool,
    token_server: Option<TokenServer>,
    // Dropped after the process is gone.
    dir: tempfile::TempDir,
}

fn require(tool: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/bin"] {
        let p = Path::new(dir).join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("{tool} not found; run scripts/install-test-deps.sh");
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("binding an ephemeral port")
        .port()
}

/// File names of the TLS material inside the registry's directory.
const CA_FILE: &str = "ca.crt";
const SERVER_CERT_FILE: &str = "server.crt";
const SERVER_KEY_FILE: &str = "server.key";

/// Writes a fresh test CA and a server certificate for 127.0.0.1 signed by it into `dir`.
fn write_tls_material(dir: &Path) {
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "skiff test registry CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-signing the CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().expect("a server key");
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server parameters");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "127.0.0.1");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &issuer)
        .expect("signing the server certificate");
    fs::write(dir.join(CA_FILE), ca_cert.pem()).expect("writing the CA");
    fs::write(dir.join(SERVER_CERT_FILE), cert.pem()).expect("writing the server cert");
    fs::write(dir.join(SERVER_KEY_FILE), key.serialize_pem()).expect("writing the server key");
}

impl Registry {
    /// Plain HTTP, anonymous.
    pub fn start() -> Registry {
        Registry::start_inner(Auth::Anonymous, None, false)
    }

    /// Plain HTTP, anonymous, listening on every local address, for agents in network
    /// namespaces that reach it through their veth's host end ([`Registry::port`]).
    pub fn start_for_netns() -> Registry {
        Registry::start_listening(Auth::Anonymous, None, false, Ipv4Addr::UNSPECIFIED)
    }

    /// [`Registry::start_for_netns`] serving the tools image as `library/busybox:TAG` for
    /// each of `tags`.
    pub fn busybox_for_netns(tags: &[&str]) -> Registry {
        let reg = Registry::start_for_netns();
        let layout = tempfile::tempdir().expect("layout dir");
        build_tools_layout(layout.path(), "t");
        for tag in tags {
            reg.push(layout.path(), "t", &format!("library/busybox:{tag}"));
        }
        reg
    }

    /// Plain HTTP, htpasswd basic auth.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::start_inner(Auth::Basic, Some((user, password)), false)
    }

    /// HTTPS with a server certificate for 127.0.0.1 from a fresh test CA
    /// ([`Registry::ca_file`]), anonymous.
    pub fn start_tls() -> Registry {
        Registry::start_inner(Auth::Anonymous, None, true)
    }

    /// Plain HTTP with Docker token auth: the registry sends clients to a [`TokenServer`]
    /// that hands out tokens for `user`/`password`.
    pub fn start_with_token_auth(user: &str, password: &str) -> Registry {
        Registry::start_inner(Auth::Token, Some((user, password)), false)
    }

    fn start_inner(kind: Auth, creds: Option<(&str, &str)>, tls: bool) -> Registry {
        Registry::start_listening(kind, creds, tls, Ipv4Addr::LOCALHOST)
    }

    fn start_listening(
        kind: Auth,
        creds: Option<(&str, &str)>,
        tls: bool,
        listen: Ipv4Addr,
    ) -> Registry {
        let bin = require("docker-registry");
        let mut dir = tempfile::Builder::new()
            .prefix("skiff-registry-")
            .tempdir()
            .expect("a temp dir for the registry");
        let auth = creds.map(|(u, p)| (u.to_string(), p.to_string()));
        let mut token_server = None;
        let mut auth_yaml = String::new();
        match (&kind, &auth) {
            (Auth::Anonymous, _) => {}
            (Auth::Basic, Some((user, password))) => {
                let out = Command::new(require("htpasswd"))
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("running htpasswd");
                assert!(out.status.success(), "htpasswd failed");
                let htpasswd = dir.path().join("htpasswd");
                fs::write(&htpasswd, &out.stdout).expect("writing htpasswd");
                auth_yaml = format!(
                    "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                    htpasswd.display()
                );
            }
            (Auth::Token, Some((user, password))) => {
                let server = TokenServer::start(user, password);
                let bundle = dir.path().join("token-signer.crt");
                fs::write(&bundle, server.cert_pem()).expect("writing the token signer cert");
                auth_yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    server.realm(),
                    token_server::SERVICE,
                    token_server::ISSUER,
                    bundle.display()
                );
                token_server = Some(server);
            }
            (_, None) => unreachable!("basic and token auth are started with credentials"),
        }
        let mut tls_yaml = String::new();
        if tls {
            write_tls_material(dir.path());
            tls_yaml = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join(SERVER_CERT_FILE).display(),
                dir.path().join(SERVER_KEY_FILE).display()
            );
        }
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {listen}:{port}\n{tls_yaml}{auth_yaml}",
                    dir.path().join("storage").display()
                ),
            )
            .expect("writing the registry config");
            let log = fs::File::create(dir.path().join("registry.log")).expect("registry log");
            let mut cmd = Command::new(&bin);
            cmd.arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().expect("log handle")))
                .stderr(Stdio::from(log))
                .process_group(0);
            super::process::die_with_parent(&mut cmd);
            let child = cmd.spawn().expect("starting docker-registry");
            let mut reg = Registry {
                child: Some(child),
                port,
                auth: auth.clone(),
                tls,
                token_server: None,
                dir,
            };
            if reg.wait_ready() {
                reg.token_server = token_server;
                return reg;
            }
            last = fs::read_to_string(reg.dir.path().join("registry.log")).unwrap_or_default();
            reg.kill();
            dir = std::mem::replace(
                &mut reg.dir,
                tempfile::tempdir().expect("placeholder temp dir"),
            );
        }
        panic!("docker-registry did not start: {last}");
    }

    /// The PEM of the CA that signed a TLS registry's certificate.
    #[track_caller]
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.tls, "only a TLS registry has a CA");
        self.dir.path().join(CA_FILE)
    }

    /// The token server of a token-auth registry.
    #[track_caller]
    pub fn token_server(&self) -> &TokenServer {
        self.token_server
            .as_ref()
            .expect("only a token-auth registry has a token server")
    }

    fn wait_ready(&mut self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(_)) = c.try_wait() {
                    return false;
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes an OCI layout (`dir:tag`) to `repo:tag` here with skopeo (`--all` keeps
    /// every platform of an index).
    pub fn push(&self, layout: &Path, tag: &str, repo_tag: &str) {
        let mut cmd = Command::new(require("skopeo"));
        // Without verification skopeo speaks HTTPS (trusting any certificate) and falls
        // back to plain HTTP, so one flag serves every registry kind here.
        cmd.args(["copy", "--all", "--quiet", "--dest-tls-verify=false"]);
        if let Some((u, p)) = &self.auth {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()));
        let out = cmd.output().expect("running skopeo");
        assert!(
            out.status.success(),
            "skopeo push failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The registry's storage dir (tests corrupt blobs in it).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
            eprintln!(
                "----- docker-registry log (port {}) -----\n{}\n----- end of registry log -----",
                self.port,
                super::tail(&log, 40)
            );
        }
    }
}

pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// What [`build_busybox_layout`] made.
pub struct TestImage {
    /// Digest of the platform (amd64 or host) manifest.
    pub manifest_digest: String,
    /// Digest of the two-platform index.
    pub index_digest: String,
    pub config_digest: String,
}

/// One tar layer entry.
enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

fn layer(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match e {
            Entry::File(name, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, *data).expect("tar entry");
            }
            Entry::Dir(name) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, name, &[][..]).expect("tar entry");
            }
            Entry::Symlink(name, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, name, target).expect("tar entry");
            }
        }
    }
    b.into_inner().expect("tar bytes")
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Builds an OCI layout at `dir` tagged `tag`: an index with two platforms (the host's and
/// a fake other one) over a two-layer busybox image. Layer 1 (gzip) has busybox, `/etc/motd`
/// and `/etc/keep`; layer 2 (zstd) whites out `/etc/motd` and adds `/etc/added`.
pub fn build_busybox_layout(dir: &Path, tag: &str) -> TestImage {
    busybox_layout(dir, tag, true)
}

/// Like [`build_busybox_layout`] with both layers gzip (docker archives cannot hold zstd).
pub fn build_busybox_layout_gzip(dir: &Path, tag: &str) -> TestImage {
    busybox_layout(dir, tag, false)
}

fn busybox_layout(dir: &Path, tag: &str, zstd_top: bool) -> TestImage {
    let busybox = fs::read(require("busybox")).expect("reading busybox-static");
    let l1 = layer(&[
        Entry::Dir("bin/"),
        Entry::File("bin/busybox", &busybox, 0o755),
        Entry::Symlink("bin/sh", "busybox"),
        Entry::Symlink("bin/cat", "busybox"),
        Entry::Symlink("bin/ls", "busybox"),
        Entry::Symlink("bin/echo", "busybox"),
        Entry::Dir("etc/"),
        Entry::File("etc/motd", b"you should not see me\n", 0o644),
        Entry::File("etc/keep", b"kept\n", 0o644),
    ]);
    let l2 = layer(&[
        Entry::Dir("etc/"),
        Entry::File("etc/.wh.motd", b"", 0o644),
        Entry::File("etc/added", b"added\n", 0o644),
    ]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&l1).expect("gzip");
    let l1_blob = gz.finish().expect("gzip");
    let (l2_blob, l2_kind) = if zstd_top {
        (zstd::encode_all(&l2[..], 3).expect("zstd"), "zstd")
    } else {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&l2).expect("gzip");
        (gz.finish().expect("gzip"), "gzip")
    };
    write_layout(dir, tag, &[(l1, l1_blob, "gzip"), (l2, l2_blob, l2_kind)])
}

/// One uncompressed layer with busybox and the applets e2e tests call by path (kubectl cp
/// runs `tar` itself, without a shell): httpd for port-forward, `/www/index.html` to serve.
pub fn tools_layer() -> Vec<u8> {
    let busybox = fs::read(require("busybox")).expect("reading busybox-static");
    let mut entries = Vec::new();
    for d in ["bin/", "etc/", "tmp/", "proc/", "sys/", "dev/", "www/"] {
        entries.push(Entry::Dir(d));
    }
    entries.push(Entry::File("bin/busybox", &busybox, 0o755));
    let links: Vec<String> = [
        "sh", "true", "echo", "cat", "sleep", "id", "ls", "tar", "httpd", "wc", "head", "seq",
        "printf", "hostname", "mkdir", "rm", "test", "dd", "wget",
    ]
    .iter()
    .map(|app| format!("bin/{app}"))
    .collect();
    for l in &links {
        entries.push(Entry::Symlink(l, "busybox"));
    }
    entries.push(Entry::File(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n",
        0o644,
    ));
    entries.push(Entry::File(
        "www/index.html",
        b"hello from the pod\n",
        0o644,
    ));
    layer(&entries)
}

/// An OCI layout at `dir` tagged `tag` of the single [`tools_layer`] (gzip).
pub fn build_tools_layout(dir: &Path, tag: &str) -> TestImage {
    let l = tools_layer();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&l).expect("gzip");
    let blob = gz.finish().expect("gzip");
    write_layout(dir, tag, &[(l, blob, "gzip")])
}

/// Builds a single-platform OCI layout of about `mb` megabytes of incompressible data in
/// 5 gzip layers (for pull speed measurements).
pub fn build_big_layout(dir: &Path, tag: &str, mb: usize) -> TestImage {
    let mut layers = Vec::new();
    let per = mb * 1024 * 1024 / 5;
    let mut seed = 0x9e3779b97f4a7c15u64;
    for i in 0..5 {
        let mut data = vec![0u8; per];
        for chunk in data.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let bytes = seed.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        let name = format!("data/{i}.bin");
        let tar = layer(&[Entry::Dir("data/"), Entry::File(&name, &data, 0o644)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
        gz.write_all(&tar).expect("gzip");
        let blob = gz.finish().expect("gzip");
        layers.push((tar, blob, "gzip"));
    }
    write_layout(dir, tag, &layers)
}

fn write_layout(dir: &Path, tag: &str, layers: &[(Vec<u8>, Vec<u8>, &str)]) -> TestImage {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("layout dir");
    let put = |data: &[u8]| -> String {
        let d = digest(data);
        fs::write(blobs.join(&d[7..]), data).expect("writing a blob");
        d
    };
    let diff_ids: Vec<String> = layers.iter().map(|(tar, _, _)| digest(tar)).collect();
    let layer_descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|(_, blob, comp)| {
            serde_json::json!({
                "mediaType": format!("application/vnd.oci.image.layer.v1.tar+{comp}"),
                "digest": put(blob),
                "size": blob.len(),
            })
        })
        .collect();
    let mut manifests = Vec::new();
    let mut first = None;
    for arch in [
        host_arch(),
        if host_arch() == "arm64" {
            "amd64"
        } else {
            "arm64"
        },
    ] {
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        })
        .to_string();
        let config_digest = put(config.as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": config.len()},
            "layers": layer_descs,
        })
        .to_string();
        let md = put(manifest.as_bytes());
        manifests.push(serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": md, "size": manifest.len(),
            "platform": {"os": "linux", "architecture": arch},
        }));
        first.get_or_insert((md, config_digest));
    }
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests,
    })
    .to_string();
    let index_digest = put(index.as_bytes());
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": OCI_INDEX, "digest": index_digest, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(dir.join("index.json"), top.to_string()).expect("index.json");
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
    let (manifest_digest, config_digest) = first.expect("two platforms were written");
    TestImage {
        manifest_digest,
        index_digest,
        config_digest,
    }
}

/// Writes the layout directory `dir` as a tarball (gzip-compressed when `gzip`).
pub fn tar_layout(dir: &Path, out: &Path, gzip: bool) {
    let file = fs::File::create(out).expect("creating the tarball");
    let writer: Box<dyn std::io::Write> = if gzip {
        Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ))
    } else {
        Box::new(file)
    };
    let mut b = tar::Builder::new(writer);
    b.append_dir_all(".", dir).expect("archiving the layout");
    b.into_inner()
        .expect("finishing the tarball")
        .flush()
        .expect("flushing the tarball");
}

/// `skopeo copy oci:DIR:TAG docker-archive:OUT:NAME` (a `docker save` archive; skopeo picks
/// the host platform from the index).
pub fn docker_archive(layout: &Path, tag: &str, out: &Path, name: &str) {
    let out_arg = format!("docker-archive:{}:{name}", out.display());
    let out = Command::new(require("skopeo"))
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(out_arg)
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo docker-archive export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
