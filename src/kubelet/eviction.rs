//! Local-storage eviction of one pod (upstream's eviction manager, `localStorageEviction`):
//! an emptyDir volume whose usage exceeds its `sizeLimit` gets the pod evicted, its
//! containers killed at once, phase Failed with reason `Evicted`, upstream's message, a
//! `DisruptionTarget` condition and an `Evicted` Warning event.
//!
//! Usage is measured as `du` does (allocated blocks, hard links once, not crossing into
//! other filesystems), at most every [`CHECK_EVERY`], by the pod's own worker.
//!
//! Invariant: [`violation`] is a pure function of the pod and the measured usage; only the
//! measuring touches the disk.

use crate::api::quantity::Quantity;
use k8s_openapi::api::core::v1::Pod;
use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// Upstream's eviction manager looks every 10 s (`housekeeping-interval`).
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// The pod status reason and event reason of an eviction.
pub const REASON: &str = "Evicted";

/// The emptyDir volumes of `pod` that have a sizeLimit: name → limit in bytes (and as
/// written, for the message).
pub fn limited_empty_dirs(pod: &Pod) -> BTreeMap<String, (u64, String)> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            let q = v.empty_dir.as_ref()?.size_limit.as_ref()?;
            let bytes = Quantity::parse(&q.0).ok()?.value().max(0) as u64;
            Some((v.name.clone(), (bytes, q.0.clone())))
        })
        .collect()
}

/// Why the pod must be evicted, given each limited emptyDir's usage in bytes; `None` when
/// every volume is within its limit (or was not measured).
pub fn violation(pod: &Pod, usage: &BTreeMap<String, u64>) -> Option<String> {
    limited_empty_dirs(pod)
        .into_iter()
        .find(|(name, (limit, _))| usage.get(name).is_some_and(|u| u > limit))
        .map(|(name, (_, written))| {
            format!("Usage of EmptyDir volume {name:?} exceeds the limit {written:?}. ")
        })
}

/// Bytes allocated under `dir` (as `du -s`): each inode once, without crossing into other
/// filesystems. A missing directory is 0.
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![(dir.to_path_buf(), root)];
    while let Some((path, meta)) = stack.pop() {
        if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        total += meta.blocks() * 512;
        if !meta.is_dir() {
            continue;
        }
        for e in std::fs::read_dir(&path).into_iter().flatten().flatten() {
            if let Ok(m) = e.metadata() {
                if m.dev() == meta.dev() {
                    stack.push((e.path(), m));
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "c"}],
                "volumes": [
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}},
                    {"name": "free", "emptyDir": {}},
                    {"name": "cfg", "configMap": {"name": "x"}}
                ]
            }
        }))
        .unwrap()
    }

    #[test]
    fn only_empty_dirs_with_a_size_limit_are_watched() {
        let l = limited_empty_dirs(&pod());
        assert_eq!(
            l.into_iter().collect::<Vec<_>>(),
            vec![("scratch".to_string(), (1 << 20, "1Mi".to_string()))]
        );
    }

    #[test]
    fn usage_over_the_limit_evicts_with_upstreams_message() {
        let p = pod();
        let usage = |n: u64| BTreeMap::from([("scratch".to_string(), n), ("free".into(), 1 << 30)]);
        assert_eq!(violation(&p, &usage(1 << 20)), None, "at the limit is fine");
        assert_eq!(
            violation(&p, &usage((1 << 20) + 4096)).as_deref(),
            Some("Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". ")
        );
        assert_eq!(violation(&p, &BTreeMap::new()), None);
    }

    #[test]
    fn disk_usage_counts_allocated_blocks_and_hard_links_once() {
        let d = tempfile::tempdir().unwrap();
        let empty = disk_usage(d.path());
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/a"), vec![1u8; 256 * 1024]).unwrap();
        std::fs::hard_link(d.path().join("sub/a"), d.path().join("b")).unwrap();
        // A sparse file allocates (almost) nothing.
        let f = std::fs::File::create(d.path().join("sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        let used = disk_usage(d.path()) - empty;
        assert!(
            (256 * 1024..256 * 1024 + 64 * 1024).contains(&used),
            "{used}"
        );
        assert_eq!(disk_usage(&d.path().join("missing")), 0);
    }
}
