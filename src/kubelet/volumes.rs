//! Pod volumes under `<root-dir>/<pod uid>/volumes/<plugin>/<name>`: emptyDir (disk, or
//! tmpfs for `medium: Memory` with its sizeLimit), hostPath (with upstream's type checks),
//! configMap, secret, downwardAPI, projected (configMap, secret, downwardAPI,
//! serviceAccountToken) and persistentVolumeClaim (`super::local_path`), with items, modes, optional sources, and the container side
//! (subPath, readOnly).
//!
//! Invariant: content volumes are written with upstream's atomic-writer layout: the files
//! live in a timestamped directory, `..data` points at it and every visible name is a
//! symlink through `..data`, so an update (a new directory, then one rename of the
//! `..data` link) is seen by the container all at once or not at all.

use super::api::PodApi;
use super::downward;
use crate::runtime::containers::Mount;
use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod};
use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

/// A prepared volume: where it is on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub host_path: PathBuf,
    /// Content volumes are always mounted read-only (upstream).
    pub read_only: bool,
}

/// The outcome of a volume pass.
#[derive(Debug, Default)]
pub struct Volumes {
    pub by_name: BTreeMap<String, Prepared>,
    /// When the earliest projected token must be refreshed.
    pub refresh_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Projected tokens by `<volume>/<path>`, with their refresh time: reused until then.
    pub tokens: BTreeMap<String, (String, chrono::DateTime<chrono::Utc>)>,
}

/// Where a pod's emptyDir volumes live, under its pod directory.
pub fn empty_dir_root(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes").join(plugin_dir("emptyDir"))
}

/// Where image volume `name` of a pod is mounted, under its pod directory.
pub fn image_volume_dir(pod_dir: &Path, name: &str) -> PathBuf {
    image_volume_root(pod_dir).join(name)
}

pub fn image_volume_root(pod_dir: &Path) -> PathBuf {
    pod_dir.join("volumes").join(plugin_dir("image"))
}

fn plugin_dir(kind: &str) -> &'static str {
    match kind {
        "image" => "kubernetes.io~image",
        "emptyDir" => "kubernetes.io~empty-dir",
        "configMap" => "kubernetes.io~configmap",
        "secret" => "kubernetes.io~secret",
        "downwardAPI" => "kubernetes.io~downward-api",
        _ => "kubernetes.io~projected",
    }
}

fn io(what: &str, p: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", p.display())
}

/// Prepares every volume of `pod` (idempotent; refreshes content volumes). `in_memory`:
/// memory-backed volumes get their tmpfs (a simulated node, which runs no containers and
/// need not be root, keeps them on disk).
pub async fn setup(
    pod: &Pod,
    api: &dyn PodApi,
    pod_dir: &Path,
    fields: &downward::Fields,
    prev: Option<&Volumes>,
    in_memory: bool,
) -> Result<Volumes, String> {
    let mut out = Volumes::default();
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let (kind, files, read_only) = if let Some(ed) = &v.empty_dir {
            let dir = empty_dir_root(pod_dir).join(&v.name);
            std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
            if in_memory && ed.medium.as_deref() == Some("Memory") {
                mount_tmpfs(&dir, ed.size_limit.as_ref().map(|q| q.0.clone()), "1777")?;
            }
            out.by_name.insert(
                v.name.clone(),
                Prepared {
                    host_path: dir,
                    read_only: false,
                },
            );
            continue;
        } else if let Some(claim) = &v.persistent_volume_claim {
            let records = super::local_path::records_dir(pod_dir.parent().unwrap_or(pod_dir));
            let prepared = super::local_path::setup_claim(api, &ns, claim, &records).await?;
            out.by_name.insert(v.name.clone(), prepared);
            continue;
        } else if v.image.is_some() {
            // Mounted by the worker through the runtime before this pass.
            out.by_name.insert(
                v.name.clone(),
                Prepared {
                    host_path: image_volume_dir(pod_dir, &v.name),
                    read_only: true,
                },
            );
            continue;
        } else if let Some(hp) = &v.host_path {
            check_host_path(&hp.path, hp.type_.as_deref().unwrap_or(""))?;
            out.by_name.insert(
                v.name.clone(),
                Prepared {
                    host_path: PathBuf::from(&hp.path),
                    read_only: false,
                },
            );
            continue;
        } else if let Some(cm) = &v.config_map {
            let data = match api
                .config_map(&ns, &cm.name)
                .await
                .map_err(|e| e.to_string())?
            {
                Some(c) => {
                    let mut d: BTreeMap<String, Vec<u8>> = c
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect();
                    d.extend(
                        c.binary_data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0)),
                    );
                    d
                }
                None if cm.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("configmap \"{}\" not found", cm.name)),
            };
            let files = project(
                &data,
                cm.items.as_deref(),
                cm.default_mode.unwrap_or(0o644),
                cm.optional == Some(true),
                "configmap",
                &cm.name,
            )?;
            ("configMap", files, true)
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let data = match api.secret(&ns, &name).await.map_err(|e| e.to_string())? {
                Some(sec) => sec
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect(),
                None if s.optional == Some(true) => BTreeMap::new(),
                None => return Err(format!("secret \"{name}\" not found")),
            };
            let files = project(
                &data,
                s.items.as_deref(),
                s.default_mode.unwrap_or(0o644),
                s.optional == Some(true),
                "secret",
                &name,
            )?;
            ("secret", files, true)
        } else if let Some(d) = &v.downward_api {
            let mut files = BTreeMap::new();
            for item in d.items.iter().flatten() {
                let value = downward_item(
                    pod,
                    item.field_ref.as_ref().map(|f| f.field_path.as_str()),
                    item.resource_field_ref.as_ref(),
                    fields,
                )?;
                files.insert(
                    item.path.clone(),
                    (
                        value.into_bytes(),
                        item.mode.or(d.default_mode).unwrap_or(0o644),
                    ),
                );
            }
            ("downwardAPI", files, true)
        } else if let Some(p) = &v.projected {
            let mut files = BTreeMap::new();
            let default_mode = p.default_mode.unwrap_or(0o644);
            for src in p.sources.iter().flatten() {
                if let Some(cm) = &src.config_map {
                    let data = match api
                        .config_map(&ns, &cm.name)
                        .await
                        .map_err(|e| e.to_string())?
                    {
                        Some(c) => c
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes()))
                            .collect(),
                        None if cm.optional == Some(true) => BTreeMap::new(),
                        None => return Err(format!("configmap \"{}\" not found", cm.name)),
                    };
                    files.extend(project(
                        &data,
                        cm.items.as_deref(),
                        default_mode,
                        cm.optional == Some(true),
                        "configmap",
                        &cm.name,
                    )?);
                } else if let Some(s) = &src.secret {
                    let data = match api.secret(&ns, &s.name).await.map_err(|e| e.to_string())? {
                        Some(sec) => sec
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect(),
                        None if s.optional == Some(true) => BTreeMap::new(),
                        None => return Err(format!("secret \"{}\" not found", s.name)),
                    };
                    files.extend(project(
                        &data,
                        s.items.as_deref(),
                        default_mode,
                        s.optional == Some(true),
                        "secret",
                        &s.name,
                    )?);
                } else if let Some(d) = &src.downward_api {
                    for item in d.items.iter().flatten() {
                        let value = downward_item(
                            pod,
                            item.field_ref.as_ref().map(|f| f.field_path.as_str()),
                            item.resource_field_ref.as_ref(),
                            fields,
                        )?;
                        files.insert(
                            item.path.clone(),
                            (value.into_bytes(), item.mode.unwrap_or(default_mode)),
                        );
                    }
                } else if let Some(t) = &src.service_account_token {
                    let sa = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.service_account_name.clone())
                        .unwrap_or_else(|| "default".into());
                    let key = format!("{}/{}", v.name, t.path);
                    let now = chrono::Utc::now();
                    let cached = prev
                        .and_then(|p| p.tokens.get(&key))
                        .filter(|(_, at)| *at > now)
                        .cloned();
                    let (token, at) = match cached {
                        Some(c) => c,
                        None => {
                            let seconds = t.expiration_seconds.unwrap_or(3600);
                            let tok = api
                                .request_token(
                                    pod,
                                    &sa,
                                    t.audience.clone().filter(|a| !a.is_empty()),
                                    seconds,
                                )
                                .await
                                .map_err(|e| format!("failed to fetch token: {e}"))?;
                            // Refresh at 80% of the token's life, as upstream's token
                            // manager does.
                            (tok.token, now + (tok.expires - now) * 4 / 5)
                        }
                    };
                    out.refresh_at = Some(out.refresh_at.map_or(at, |r| r.min(at)));
                    out.tokens.insert(key, (token.clone(), at));
                    files.insert(
                        t.path.clone(),
                        (token.into_bytes(), default_mode.min(0o600)),
                    );
                }
            }
            ("projected", files, true)
        } else {
            // Volume types this node does not implement (persistent claims, CSI...).
            return Err(format!("volume \"{}\": unsupported volume type", v.name));
        };
        let dir = pod_dir.join("volumes").join(plugin_dir(kind)).join(&v.name);
        // Only a volume not written yet: a running container of a pod set up by an
        // earlier agent version binds the directory on disk, and would stop seeing
        // updates written into a tmpfs mounted over it.
        if in_memory && memory_backed(kind) && !dir.join("..data").exists() {
            std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
            mount_tmpfs(&dir, None, "0755")?;
        }
        write_atomic(&dir, &files)?;
        out.by_name.insert(
            v.name.clone(),
            Prepared {
                host_path: dir,
                read_only,
            },
        );
    }
    Ok(out)
}

fn downward_item(
    pod: &Pod,
    field: Option<&str>,
    res: Option<&k8s_openapi::api::core::v1::ResourceFieldSelector>,
    f: &downward::Fields,
) -> Result<String, String> {
    if let Some(path) = field {
        return downward::field(pod, path, f);
    }
    if let Some(r) = res {
        let cname = r.container_name.clone().unwrap_or_default();
        let c = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .find(|c| c.name == cname)
            .ok_or_else(|| format!("container {cname} not found"))?;
        return downward::resource(pod, c, r, f);
    }
    Ok(String::new())
}

/// Key → (bytes, mode) after `items` selection.
fn project(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
    optional: bool,
    kind: &str,
    name: &str,
) -> Result<BTreeMap<String, (Vec<u8>, i32)>, String> {
    let mut out = BTreeMap::new();
    match items {
        None | Some([]) => {
            for (k, v) in data {
                out.insert(k.clone(), (v.clone(), mode));
            }
        }
        Some(items) => {
            for it in items {
                match data.get(&it.key) {
                    Some(v) => {
                        out.insert(it.path.clone(), (v.clone(), it.mode.unwrap_or(mode)));
                    }
                    None if optional => {}
                    None => {
                        let what = if kind == "configmap" {
                            "configmap references non-existent config key"
                        } else {
                            "references non-existent secret key"
                        };
                        return Err(format!("{what}: {} ({kind} {name})", it.key));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Upstream's atomic writer: see the module docs. Writes nothing when the content is
/// unchanged (a resync must not make the container see a new `..data`).
pub fn write_atomic(dir: &Path, files: &BTreeMap<String, (Vec<u8>, i32)>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let data = dir.join("..data");
    if let Ok(cur) = std::fs::read_link(&data) {
        if same_content(&dir.join(cur), files) {
            return Ok(());
        }
    }
    for p in files.keys() {
        if p.starts_with('/') || p.split('/').any(|c| c == "..") || p.starts_with("..") {
            return Err(format!(
                "invalid path {p:?}: must be relative and may not contain '..'"
            ));
        }
    }
    let ts = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let new = dir.join(&ts);
    std::fs::create_dir(&new).map_err(|e| io("creating", &new, e))?;
    let _ = std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o755));
    for (p, (bytes, mode)) in files {
        let f = new.join(p);
        if let Some(parent) = f.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
        }
        std::fs::write(&f, bytes).map_err(|e| io("writing", &f, e))?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(*mode as u32 & 0o7777))
            .map_err(|e| io("chmod", &f, e))?;
    }
    let old = std::fs::read_link(&data).ok();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(&ts, &tmp).map_err(|e| io("linking", &tmp, e))?;
    std::fs::rename(&tmp, &data).map_err(|e| io("swapping", &data, e))?;
    // Top-level names point through ..data; names no longer present go.
    let tops: std::collections::BTreeSet<&str> =
        files.keys().filter_map(|p| p.split('/').next()).collect();
    for t in &tops {
        let l = dir.join(t);
        if std::fs::symlink_metadata(&l).is_err() {
            symlink(Path::new("..data").join(t), &l).map_err(|e| io("linking", &l, e))?;
        }
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with("..") && !tops.contains(n.as_str()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old {
        if old != Path::new(&ts) {
            let _ = std::fs::remove_dir_all(dir.join(old));
        }
    }
    Ok(())
}

fn same_content(cur: &Path, files: &BTreeMap<String, (Vec<u8>, i32)>) -> bool {
    let mut n = 0;
    fn count(p: &Path, n: &mut usize) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    count(&e.path(), n);
                } else {
                    *n += 1;
                }
            }
        }
    }
    count(cur, &mut n);
    n == files.len()
        && files.iter().all(|(p, (bytes, mode))| {
            let f = cur.join(p);
            std::fs::read(&f).is_ok_and(|b| b == *bytes)
                && std::fs::metadata(&f)
                    .is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode as u32 & 0o7777)
        })
}

pub fn check_host_path(path: &str, type_: &str) -> Result<(), String> {
    let p = Path::new(path);
    let md = std::fs::metadata(p);
    use std::os::unix::fs::FileTypeExt;
    let bad = |what: &str| {
        Err(format!(
            "hostPath type check failed: {path} is not a {what}"
        ))
    };
    match type_ {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if md.is_err() {
                std::fs::create_dir_all(p).map_err(|e| io("creating", p, e))?;
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
                return Ok(());
            }
            if md.map(|m| m.is_dir()).unwrap_or(false) {
                Ok(())
            } else {
                bad("directory")
            }
        }
        "FileOrCreate" => {
            if md.is_err() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| io("creating", p, e))?;
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644));
                return Ok(());
            }
            if md.map(|m| m.is_file()).unwrap_or(false) {
                Ok(())
            } else {
                bad("file")
            }
        }
        "Directory" => match md {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => bad("directory"),
            Err(_) => Err(format!(
                "hostPath type check failed: {path} is not a directory"
            )),
        },
        "File" => match md {
            Ok(m) if m.is_file() => Ok(()),
            _ => bad("file"),
        },
        "Socket" => match md {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => bad("socket file"),
        },
        "CharDevice" => match md {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => bad("character device"),
        },
        "BlockDevice" => match md {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => bad("block device"),
        },
        other => Err(format!("hostPath type check failed: unknown type {other}")),
    }
}

/// Whether a content volume of `kind` lives on its own tmpfs, as upstream's secret and
/// projected volumes do: secrets and tokens never reach the node's disk. It also spares
/// the disk the inodes of the `kube-api-access` volume every pod has (ext4 inode
/// allocation was a tenth of a 100-pod burst's CPU here).
fn memory_backed(kind: &str) -> bool {
    MEMORY_BACKED.contains(&kind)
}

const MEMORY_BACKED: [&str; 2] = ["secret", "projected"];

/// `mode` of the tmpfs root: content volumes keep the 0755 their directory had on disk
/// (only the kubelet writes them; 1777 would let any host user plant files in them).
fn mount_tmpfs(dir: &Path, size: Option<String>, mode: &str) -> Result<(), String> {
    if is_mountpoint(dir) {
        return Ok(());
    }
    let bytes = size
        .and_then(|s| crate::api::quantity::Quantity::parse(&s).ok())
        .map(|q| q.value());
    let opts = match bytes {
        Some(b) => format!("mode={mode},size={b}"),
        None => format!("mode={mode}"),
    };
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| format!("mounting tmpfs on {}: {e}", dir.display()))
}

pub(crate) fn is_mountpoint(dir: &Path) -> bool {
    crate::runtime::snapshots::overlay::is_mounted(dir)
}

/// Unmounts what [`setup`] mounted (and any image volume still mounted) and the pinned
/// sub paths, and removes the pod's volume directories. A pin that stays mounted keeps the
/// pod directory in place: removing it would delete the volume's files through the pin.
pub fn teardown(pod_dir: &Path) {
    let in_memory = MEMORY_BACKED.map(|k| pod_dir.join("volumes").join(plugin_dir(k)));
    for root in [empty_dir_root(pod_dir), image_volume_root(pod_dir)]
        .into_iter()
        .chain(in_memory)
    {
        if let Ok(rd) = std::fs::read_dir(&root) {
            for e in rd.flatten() {
                if is_mountpoint(&e.path()) {
                    let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
                }
            }
        }
    }
    if !unpin_sub_paths(pod_dir) {
        tracing::warn!(pod_dir = %pod_dir.display(), "a pinned sub path stays mounted; the pod directory is kept");
        return;
    }
    let _ = std::fs::remove_dir_all(pod_dir);
}

/// Where a container's sub paths are pinned (upstream's layout):
/// `volume-subpaths/<volume>/<container>/<index of the mount>`.
fn sub_path_pin(pod_dir: &Path, volume: &str, container: &str, index: usize) -> PathBuf {
    pod_dir
        .join("volume-subpaths")
        .join(volume)
        .join(container)
        .join(index.to_string())
}

/// Unmounts every pinned sub path of the pod; says whether none is left mounted.
pub fn unpin_sub_paths(pod_dir: &Path) -> bool {
    let mut clear = true;
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    for volume in dirs(&pod_dir.join("volume-subpaths")) {
        for container in dirs(&volume) {
            for pin in dirs(&container) {
                if is_mountpoint(&pin) {
                    let _ = nix::mount::umount2(&pin, nix::mount::MntFlags::MNT_DETACH);
                    clear &= !is_mountpoint(&pin);
                }
            }
        }
    }
    clear
}

/// Pins `resolved` (a sub path [`resolve_sub_path`] checked inside the volume at `root`)
/// at `pin`, a kubelet-owned path outside every volume that the container's mount then
/// binds: the components are opened again one at a time without following symlinks and
/// the final descriptor is bind-mounted, so a container that swaps a checked directory
/// for a symlink after the check (to `/`, say) gets the directory checked or an error,
/// never the symlink's target (upstream's safe subpath preparation).
fn pin_sub_path(root: &Path, resolved: &Path, pin: &Path) -> Result<(), String> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{fstat, Mode, SFlag};
    use std::os::fd::AsRawFd;
    let root = std::fs::canonicalize(root).map_err(|e| io("resolving", root, e))?;
    let rel = resolved
        .strip_prefix(&root)
        .map_err(|_| format!("subpath {resolved:?} not within volume path {root:?}"))?;
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut fd = nix::fcntl::open(&root, flags | OFlag::O_DIRECTORY, Mode::empty())
        .map_err(|e| format!("opening {}: {e}", root.display()))?;
    for part in rel.components() {
        let next = openat(&fd, part.as_os_str(), flags, Mode::empty())
            .map_err(|e| format!("opening {}: {e}", resolved.display()))?;
        let kind = SFlag::from_bits_truncate(fstat(&next).map_err(|e| e.to_string())?.st_mode);
        if kind & SFlag::S_IFMT == SFlag::S_IFLNK {
            return Err(format!(
                "subpath {} changed into a symlink while it was prepared",
                resolved.display()
            ));
        }
        fd = next;
    }
    let is_dir = SFlag::from_bits_truncate(fstat(&fd).map_err(|e| e.to_string())?.st_mode)
        & SFlag::S_IFMT
        == SFlag::S_IFDIR;
    if is_mountpoint(pin) {
        let _ = nix::mount::umount2(pin, nix::mount::MntFlags::MNT_DETACH);
    }
    if is_dir {
        std::fs::create_dir_all(pin).map_err(|e| io("creating", pin, e))?;
    } else {
        if let Some(parent) = pin.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(pin)
            .map_err(|e| io("creating", pin, e))?;
    }
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    nix::mount::mount(
        Some(source.as_str()),
        pin,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("pinning {} at {}: {e}", resolved.display(), pin.display()))
}

/// `sub_path` inside the volume at `root`, created as directories where missing. A symlink
/// on the way (one a container planted in an emptyDir, or one an image volume ships) may
/// only lead somewhere inside the volume, as upstream's subpath checks: otherwise the
/// container would get a host directory. (A container racing to swap a checked directory
/// for a symlink before the bind is [`pin_sub_path`]'s business.)
fn resolve_sub_path(root: &Path, sub_path: &str) -> Result<PathBuf, String> {
    let root = std::fs::canonicalize(root).map_err(|e| io("resolving", root, e))?;
    let mut at = root.clone();
    let parts: Vec<&str> = sub_path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    for (i, part) in parts.iter().enumerate() {
        let next = at.join(part);
        match std::fs::symlink_metadata(&next) {
            Ok(_) => {
                let resolved =
                    std::fs::canonicalize(&next).map_err(|e| io("resolving", &next, e))?;
                if !resolved.starts_with(&root) {
                    return Err(format!(
                        "subpath {:?} not within volume path {:?}",
                        resolved.display().to_string(),
                        root.display().to_string()
                    ));
                }
                at = resolved;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // What is missing has no links: create it below the checked directory.
                let rest: PathBuf = parts[i..].iter().collect();
                let full = at.join(rest);
                std::fs::create_dir_all(&full).map_err(|e| io("creating", &full, e))?;
                return Ok(full);
            }
            Err(e) => return Err(io("reading", &next, e)),
        }
    }
    Ok(at)
}

/// The container's mounts for its `volumeMounts`; `env` (the container's environment)
/// expands `subPathExpr` as upstream does (`$(VAR)`). With `pin_in` (the pod directory of
/// a node whose runtime binds host paths), each sub path is pinned there once checked
/// ([`pin_sub_path`]) and the container binds the pin.
pub fn mounts(
    c: &Container,
    vols: &Volumes,
    env: &[(String, String)],
    pin_in: Option<&Path>,
) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for (index, m) in c.volume_mounts.iter().flatten().enumerate() {
        let v = vols
            .by_name
            .get(&m.name)
            .ok_or_else(|| format!("volume {:?} not found", m.name))?;
        let mut source = v.host_path.clone();
        let expanded = m
            .sub_path_expr
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|e| {
                super::env::expand(e, |n| {
                    env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
                })
            });
        if let Some(sp) = expanded
            .as_deref()
            .or(m.sub_path.as_deref())
            .filter(|s| !s.is_empty())
        {
            // Upstream's kubelet messages (the API server checks subPath itself; an
            // expanded subPathExpr is only known here).
            if sp.starts_with('/') {
                return Err(format!("failed to prepare subPath for volumeMount {:?} of container {:?}: error SubPath `{sp}` must not be an absolute path", m.name, c.name));
            }
            if sp.split('/').any(|c| c == "..") {
                return Err(format!("failed to prepare subPath for volumeMount {:?} of container {:?}: error SubPath `{sp}` must not contain '..'", m.name, c.name));
            }
            let failed = |e: String| {
                format!(
                    "failed to prepare subPath for volumeMount {:?} of container {:?}: {e}",
                    m.name, c.name
                )
            };
            let resolved = resolve_sub_path(&source, sp).map_err(failed)?;
            source = match pin_in {
                Some(pod_dir) => {
                    let pin = sub_path_pin(pod_dir, &m.name, &c.name, index);
                    pin_sub_path(&source, &resolved, &pin).map_err(failed)?;
                    pin
                }
                None => resolved,
            };
        }
        out.push(Mount::Bind {
            source,
            destination: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false) || v.read_only,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sub_path_through_a_symlink_may_not_leave_the_volume() {
        let d = tempfile::tempdir().unwrap();
        let vol = d.path().join("vol");
        std::fs::create_dir_all(vol.join("data")).unwrap();
        std::os::unix::fs::symlink("/", vol.join("evil")).unwrap();
        std::os::unix::fs::symlink("data", vol.join("inside")).unwrap();
        let err = resolve_sub_path(&vol, "evil").unwrap_err();
        assert!(
            err.starts_with("subpath \"/\" not within volume path"),
            "{err}"
        );
        assert!(resolve_sub_path(&vol, "evil/etc").is_err());
        let canon = std::fs::canonicalize(&vol).unwrap();
        assert_eq!(
            resolve_sub_path(&vol, "inside").unwrap(),
            canon.join("data")
        );
        assert_eq!(
            resolve_sub_path(&vol, "inside/new/deeper").unwrap(),
            canon.join("data/new/deeper")
        );
        assert!(canon.join("data/new/deeper").is_dir());
        assert!(!std::path::Path::new("/new").exists());
    }

    /// The race a pin closes: a container swaps a directory that passed the check for a
    /// symlink to `/` before its sibling container starts. The pin holds the directory
    /// checked; pinning after the swap is refused; teardown unpins without deleting the
    /// volume's files through the pin.
    #[test]
    #[cfg_attr(skiff_unprivileged, ignore = "needs root: bind mounts")]
    fn a_pinned_sub_path_holds_the_checked_directory_when_it_is_swapped_for_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let vol = d.path().join("vol");
        let pod_dir = d.path().join("pod");
        // Unpins on a failure too, before the temp dir goes.
        struct Unpin(PathBuf);
        impl Drop for Unpin {
            fn drop(&mut self) {
                unpin_sub_paths(&self.0);
            }
        }
        let _unpin = Unpin(pod_dir.clone());
        std::fs::create_dir_all(vol.join("data")).unwrap();
        std::fs::write(vol.join("data/marker"), "checked").unwrap();
        std::fs::write(vol.join("file"), "a file").unwrap();
        let checked = resolve_sub_path(&vol, "data").unwrap();
        let pin = sub_path_pin(&pod_dir, "vol", "app", 0);
        pin_sub_path(&vol, &checked, &pin).unwrap();
        // The swap, after the check and the pin.
        std::fs::rename(vol.join("data"), vol.join("moved")).unwrap();
        std::os::unix::fs::symlink("/", vol.join("data")).unwrap();
        assert_eq!(
            std::fs::read_to_string(pin.join("marker")).unwrap(),
            "checked"
        );
        assert!(
            !pin.join("etc").exists(),
            "the host's root is not behind the pin"
        );
        // A swap between the check and the pin: refused.
        let err =
            pin_sub_path(&vol, &checked, &sub_path_pin(&pod_dir, "vol", "app", 1)).unwrap_err();
        assert!(err.contains("changed into a symlink"), "{err}");
        // A file is pinned as a file.
        let file = resolve_sub_path(&vol, "file").unwrap();
        let file_pin = sub_path_pin(&pod_dir, "vol", "app", 2);
        pin_sub_path(&vol, &file, &file_pin).unwrap();
        assert_eq!(std::fs::read_to_string(&file_pin).unwrap(), "a file");
        teardown(&pod_dir);
        assert!(!pod_dir.exists());
        assert_eq!(
            std::fs::read_to_string(vol.join("moved/marker")).unwrap(),
            "checked",
            "the volume's files outlive the pod's pins"
        );
        assert_eq!(std::fs::read_to_string(vol.join("file")).unwrap(), "a file");
    }

    #[test]
    fn sub_path_expr_expands_the_container_env_and_refuses_escapes() {
        let d = tempfile::tempdir().unwrap();
        let vols = Volumes {
            by_name: [(
                "work".to_owned(),
                Prepared {
                    host_path: d.path().to_path_buf(),
                    read_only: false,
                },
            )]
            .into(),
            refresh_at: None,
            tokens: Default::default(),
        };
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c",
            "volumeMounts": [{"name": "work", "mountPath": "/m", "subPathExpr": "$(DIR)/x"}]}))
        .unwrap();
        let env = |v: &str| vec![("DIR".to_owned(), v.to_owned())];
        let m = mounts(&c, &vols, &env("pod-a"), None).unwrap();
        let Mount::Bind { source, .. } = &m[0] else {
            panic!("{m:?}")
        };
        assert_eq!(source, &d.path().join("pod-a/x"));
        assert!(source.is_dir(), "made on the host");
        let up = mounts(&c, &vols, &env(".."), None).unwrap_err();
        assert!(
            up.ends_with("error SubPath `../x` must not contain '..'"),
            "{up}"
        );
        let abs = mounts(&c, &vols, &env("/tmp"), None).unwrap_err();
        assert!(
            abs.ends_with("error SubPath `/tmp/x` must not be an absolute path"),
            "{abs}"
        );
    }

    fn files(kv: &[(&str, &str)]) -> BTreeMap<String, (Vec<u8>, i32)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), (v.as_bytes().to_vec(), 0o644)))
            .collect()
    }

    #[test]
    fn atomic_writer_swaps_data_link_and_keeps_names_pointing_through_it() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("cfg");
        write_atomic(&dir, &files(&[("a", "1"), ("sub/b", "2")])).unwrap();
        let first = std::fs::read_link(dir.join("..data")).unwrap();
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        // Unchanged content: no new generation.
        write_atomic(&dir, &files(&[("a", "1"), ("sub/b", "2")])).unwrap();
        assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), first);
        // An update swaps ..data, drops removed names and the old generation.
        write_atomic(&dir, &files(&[("a", "3")])).unwrap();
        let second = std::fs::read_link(dir.join("..data")).unwrap();
        assert_ne!(first, second);
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(first).exists());
    }

    #[test]
    fn items_select_keys_and_missing_keys_fail_unless_optional() {
        let data: BTreeMap<String, Vec<u8>> = [("k".to_string(), b"v".to_vec())].into();
        let items = vec![KeyToPath {
            key: "k".into(),
            path: "dir/file".into(),
            mode: Some(0o400),
        }];
        let out = project(&data, Some(&items), 0o644, false, "configmap", "cfg").unwrap();
        assert_eq!(out["dir/file"], (b"v".to_vec(), 0o400));
        let missing = vec![KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            mode: None,
        }];
        let e = project(&data, Some(&missing), 0o644, false, "configmap", "cfg").unwrap_err();
        assert_eq!(
            e,
            "configmap references non-existent config key: nope (configmap cfg)"
        );
        assert!(
            project(&data, Some(&missing), 0o644, true, "configmap", "cfg")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn host_path_types_are_checked_and_or_create_creates() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "x").unwrap();
        assert!(check_host_path(f.to_str().unwrap(), "File").is_ok());
        assert!(check_host_path(f.to_str().unwrap(), "Directory").is_err());
        let nd = d.path().join("new/dir");
        check_host_path(nd.to_str().unwrap(), "DirectoryOrCreate").unwrap();
        assert!(nd.is_dir());
        assert!(check_host_path(d.path().join("missing").to_str().unwrap(), "Socket").is_err());
    }
}
