//! `persistentVolumeClaim` volumes (claim → bound volume → host path) and the node's side
//! of the local-path provisioner: the directory of a `rancher.io/local-path` volume is made
//! here when a pod first mounts it, and removed here when the volume is deleted.
//!
//! Ownership of a directory is kept in two places that survive restarts: a record file
//! `<agent-dir>/local-path/<volume>` holding the directory's path, and the
//! `skiff.io/local-path-directory` finalizer on the volume, added right after the directory
//! is made. [`run`] looks at each record every few seconds; once its volume is being deleted
//! it removes the directory, then the finalizer, then the record. A volume never mounted
//! here has neither, so its deletion waits for nothing.
//!
//! Invariant: the finalizer comes off only after the directory is gone, so while a volume
//! object exists its data may too, never the other way round.

use super::api::PodApi;
use super::volumes::Prepared;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaimVolumeSource};
use kube::api::{Api, Patch, PatchParams};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const DIRECTORY_FINALIZER: &str = "skiff.io/local-path-directory";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const LOCAL_PATH: &str = "rancher.io/local-path";
/// How often the records are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// `<agent-dir>/local-path`, beside the pods' root directory.
pub fn records_dir(root_dir: &Path) -> PathBuf {
    root_dir.with_file_name("local-path")
}

fn is_local_path(pv: &PersistentVolume) -> bool {
    pv.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PROVISIONED_BY))
        .is_some_and(|p| p == LOCAL_PATH)
}

fn has_finalizer(pv: &PersistentVolume) -> bool {
    pv.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == DIRECTORY_FINALIZER)
}

/// Resolves the claim to the host directory of its bound volume; a local-path volume's
/// directory is created (mode 0777, as rancher's helper does) and recorded.
pub async fn setup_claim(
    api: &dyn PodApi,
    ns: &str,
    source: &PersistentVolumeClaimVolumeSource,
    records: &Path,
) -> Result<Prepared, String> {
    let name = &source.claim_name;
    let claim = api
        .claim(ns, name)
        .await?
        .ok_or_else(|| format!("persistentvolumeclaim \"{name}\" not found"))?;
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if volume_name.is_empty() || phase != "Bound" {
        return Err(format!(
            "PVC {ns}/{name} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName \
             ({volume_name:?})"
        ));
    }
    let pv = api
        .volume(&volume_name)
        .await?
        .ok_or_else(|| format!("persistentvolume \"{volume_name}\" not found"))?;
    let spec = pv.spec.as_ref();
    let path = if let Some(hp) = spec.and_then(|s| s.host_path.as_ref()) {
        super::volumes::check_host_path(&hp.path, hp.type_.as_deref().unwrap_or(""))?;
        PathBuf::from(&hp.path)
    } else if let Some(l) = spec.and_then(|s| s.local.as_ref()) {
        let p = PathBuf::from(&l.path);
        if !p.exists() {
            return Err(format!("path {:?} does not exist", l.path));
        }
        p
    } else {
        return Err(format!(
            "volume {volume_name:?} has no hostPath or local source, the only kinds this node mounts"
        ));
    };
    if is_local_path(&pv) {
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777));
        std::fs::create_dir_all(records)
            .map_err(|e| format!("creating {}: {e}", records.display()))?;
        let record = records.join(&volume_name);
        if !record.exists() {
            std::fs::write(&record, path.to_string_lossy().as_bytes())
                .map_err(|e| format!("writing {}: {e}", record.display()))?;
        }
        if !has_finalizer(&pv) {
            api.hold_volume(&pv).await?;
        }
    }
    Ok(Prepared {
        host_path: path,
        read_only: source.read_only == Some(true),
    })
}

/// Removes the directories of deleted local-path volumes this node made, until `shutdown`.
pub async fn run(client: kube::Client, records: PathBuf, shutdown: CancellationToken) {
    let api: Api<PersistentVolume> = Api::all(client);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(CHECK_EVERY) => {}
        }
        let Ok(rd) = std::fs::read_dir(&records) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Err(error) = reclaim(&api, &e.path(), &name).await {
                tracing::warn!(volume = %name, %error, "removing a local-path directory");
            }
        }
    }
}

/// One record: nothing while its volume lives; directory, finalizer and record once it is
/// being deleted (or already gone).
async fn reclaim(api: &Api<PersistentVolume>, record: &Path, name: &str) -> Result<(), String> {
    let pv = match api.get(name).await {
        Ok(pv) if pv.metadata.deletion_timestamp.is_none() => return Ok(()),
        Ok(pv) => Some(pv),
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => return Err(e.to_string()),
    };
    let dir = std::fs::read_to_string(record).map_err(|e| e.to_string())?;
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => tracing::info!(
            volume = name,
            dir,
            "removed a local-path volume's directory"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("removing {dir}: {e}")),
    }
    if let Some(pv) = pv.filter(has_finalizer) {
        let keep: Vec<&String> = pv
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != DIRECTORY_FINALIZER)
            .collect();
        let patch = serde_json::json!({"metadata": {
            "resourceVersion": pv.metadata.resource_version, "finalizers": keep}});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    std::fs::remove_file(record).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::api::Token;
    use crate::kubelet::env::{EnvError, Objects};
    use futures::future::BoxFuture;
    use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, PodStatus, Secret};
    use parking_lot::Mutex;
    use serde_json::json;

    /// One claim and one volume; records which volumes were held.
    struct Api {
        claim: PersistentVolumeClaim,
        volume: PersistentVolume,
        held: Mutex<Vec<String>>,
    }

    impl Objects for Api {
        fn config_map<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<ConfigMap>, EnvError>> {
            Box::pin(async { Ok(None) })
        }
        fn secret<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<Secret>, EnvError>> {
            Box::pin(async { Ok(None) })
        }
    }

    impl PodApi for Api {
        fn patch_status<'a>(
            &'a self,
            _: &'a Pod,
            _: &'a PodStatus,
        ) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
        fn delete_pod<'a>(&'a self, _: &'a Pod) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async { Ok(()) })
        }
        fn request_token<'a>(
            &'a self,
            _: &'a Pod,
            _: &'a str,
            _: Option<String>,
            _: i64,
        ) -> BoxFuture<'a, Result<Token, String>> {
            Box::pin(async { Err("no tokens here".into()) })
        }
        fn claim<'a>(
            &'a self,
            _: &'a str,
            name: &'a str,
        ) -> BoxFuture<'a, Result<Option<PersistentVolumeClaim>, String>> {
            let c = (self.claim.metadata.name.as_deref() == Some(name)).then(|| self.claim.clone());
            Box::pin(async move { Ok(c) })
        }
        fn volume<'a>(
            &'a self,
            name: &'a str,
        ) -> BoxFuture<'a, Result<Option<PersistentVolume>, String>> {
            let v =
                (self.volume.metadata.name.as_deref() == Some(name)).then(|| self.volume.clone());
            Box::pin(async move { Ok(v) })
        }
        fn hold_volume<'a>(
            &'a self,
            pv: &'a PersistentVolume,
        ) -> BoxFuture<'a, Result<(), String>> {
            self.held
                .lock()
                .push(pv.metadata.name.clone().unwrap_or_default());
            Box::pin(async { Ok(()) })
        }
    }

    fn api(phase: &str, volume_name: &str, dir: &Path) -> Api {
        Api {
            claim: serde_json::from_value(json!({
                "metadata": {"name": "data", "namespace": "app"},
                "spec": {"volumeName": volume_name}, "status": {"phase": phase}}))
            .unwrap(),
            volume: serde_json::from_value(json!({
                "metadata": {"name": "pvc-1", "annotations": {PROVISIONED_BY: LOCAL_PATH}},
                "spec": {"hostPath": {"path": dir.to_string_lossy(), "type": "DirectoryOrCreate"}}}))
            .unwrap(),
            held: Mutex::new(Vec::new()),
        }
    }

    fn source(read_only: bool) -> PersistentVolumeClaimVolumeSource {
        PersistentVolumeClaimVolumeSource {
            claim_name: "data".into(),
            read_only: Some(read_only),
        }
    }

    #[tokio::test]
    async fn an_unbound_claim_is_not_mounted_and_says_why() {
        let tmp = tempfile::tempdir().unwrap();
        let a = api("Pending", "", &tmp.path().join("v"));
        let err = setup_claim(&a, "app", &source(false), &tmp.path().join("records"))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "PVC app/data has non-bound phase (\"Pending\") or empty pvc.Spec.VolumeName (\"\")"
        );
        let missing = PersistentVolumeClaimVolumeSource {
            claim_name: "other".into(),
            read_only: None,
        };
        let err = setup_claim(&a, "app", &missing, tmp.path())
            .await
            .unwrap_err();
        assert_eq!(err, "persistentvolumeclaim \"other\" not found");
    }

    #[tokio::test]
    async fn a_local_path_volume_gets_its_directory_a_record_and_the_nodes_finalizer() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("storage/pvc-1_app_data");
        let records = tmp.path().join("records");
        let a = api("Bound", "pvc-1", &dir);
        let p = setup_claim(&a, "app", &source(true), &records)
            .await
            .unwrap();
        assert_eq!(p.host_path, dir);
        assert!(p.read_only, "the claim's readOnly is honoured");
        assert!(dir.is_dir());
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o777
        );
        assert_eq!(
            std::fs::read_to_string(records.join("pvc-1")).unwrap(),
            dir.to_string_lossy()
        );
        assert_eq!(*a.held.lock(), vec!["pvc-1".to_string()]);
    }
}
