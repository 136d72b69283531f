//! [`Cri`] over the embedded runtime (`crate::runtime`): the product's implementation.
//!
//! Invariant: a thin translation: no state here beyond the runtime handle, so every answer
//! is the runtime's (and a restarted kubelet sees what the previous one left).

use super::cri::{Credentials, Cri, CriError, ExecOutput, FsStats, ImageInfo, StoredImage};
use crate::runtime::containers::facade::{ExecIo, Runtime, RuntimeError};
use crate::runtime::containers::{
    ContainerConfig, ContainerState, ExecConfig, ExitStatus, Resources,
};
use crate::runtime::images::{normalize_reference, Image, ImageError};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

pub struct RuntimeCri {
    runtime: Arc<Runtime>,
    /// Image volumes mounted, by target, with their image id (in use for image GC).
    image_volumes: parking_lot::Mutex<std::collections::HashMap<std::path::PathBuf, String>>,
}

impl RuntimeCri {
    pub fn new(runtime: Arc<Runtime>) -> RuntimeCri {
        RuntimeCri {
            runtime,
            image_volumes: Default::default(),
        }
    }
}

fn err(e: RuntimeError) -> CriError {
    match e {
        RuntimeError::NotFound(id) => CriError::NotFound(id),
        RuntimeError::ImageNotFound(i) => CriError::ImageNotFound(i),
        e => CriError::Runtime(e.to_string()),
    }
}

fn image_info(image: &Image) -> ImageInfo {
    let name = normalize_reference(&image.reference)
        .map(|r| r.name())
        .unwrap_or_else(|_| image.reference.clone());
    ImageInfo {
        reference: image.reference.clone(),
        image_ref: format!("{name}@{}", image.manifest_digest),
        user: image
            .config
            .config()
            .as_ref()
            .and_then(|c| c.user().clone())
            .filter(|u| !u.is_empty()),
    }
}

impl Cri for RuntimeCri {
    fn binds_host_paths(&self) -> bool {
        true
    }

    fn image_status(&self, image: &str) -> BoxFuture<'_, Result<Option<ImageInfo>, CriError>> {
        let r = self
            .runtime
            .images()
            .get(image)
            .map(|i| i.as_ref().map(image_info))
            .map_err(|e| CriError::Runtime(e.to_string()));
        async move { r }.boxed()
    }

    fn pull_image(
        &self,
        image: &str,
        credentials: Option<Credentials>,
    ) -> BoxFuture<'_, Result<ImageInfo, CriError>> {
        let image = image.to_owned();
        async move {
            match self
                .runtime
                .images()
                .pull_with_credentials(&image, credentials)
                .await
            {
                Ok(i) => Ok(image_info(&i)),
                Err(ImageError::NotFound { .. }) => Err(CriError::Pull(format!(
                    "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": not found"
                ))),
                Err(e) => Err(CriError::Pull(format!(
                    "failed to pull and unpack image \"{image}\": {e}"
                ))),
            }
        }
        .boxed()
    }

    fn ensure_pod_cgroup(
        &self,
        path: &str,
        resources: Resources,
    ) -> BoxFuture<'_, Result<(), CriError>> {
        let path = path.to_owned();
        async move {
            self.runtime
                .ensure_cgroup(&path, &resources)
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn update_container_resources(
        &self,
        cgroup_parent: Option<&str>,
        id: &str,
        resources: Resources,
    ) -> BoxFuture<'_, Result<(), CriError>> {
        let (parent, id) = (cgroup_parent.map(str::to_owned), id.to_owned());
        async move {
            self.runtime
                .update_resources(parent.as_deref(), &id, &resources)
                .await
                .map_err(err)
        }
        .boxed()
    }

    fn mount_image(
        &self,
        image: &str,
        target: &std::path::Path,
    ) -> BoxFuture<'_, Result<(), CriError>> {
        let (image, target) = (image.to_owned(), target.to_owned());
        async move {
            let id = self
                .runtime
                .mount_image(&image, &target)
                .await
                .map_err(err)?;
            self.image_volumes.lock().insert(target, id);
            Ok(())
        }
        .boxed()
    }

    fn unmount_image(&self, target: &std::path::Path) -> BoxFuture<'_, Result<(), CriError>> {
        let target = target.to_owned();
        async move {
            self.runtime.unmount_image(&target).await.map_err(err)?;
            self.image_volumes.lock().remove(&target);
            Ok(())
        }
        .boxed()
    }

    fn writable_layer_usage(&self, id: &str) -> BoxFuture<'_, Result<u64, CriError>> {
        let upper = self.runtime.container_dir(id).join("upper");
        async move {
            tokio::task::spawn_blocking(move || crate::kubelet::eviction::disk_usage(&upper))
                .await
                .map_err(|e| CriError::Runtime(e.to_string()))
        }
        .boxed()
    }

    fn remove_pod_cgroup(&self, path: &str) -> BoxFuture<'_, Result<(), CriError>> {
        let path = path.to_owned();
        async move { self.runtime.remove_cgroup(&path).await.map_err(err) }.boxed()
    }

    fn create_container(&self, config: ContainerConfig) -> BoxFuture<'_, Result<String, CriError>> {
        async move { self.runtime.create(config).await.map_err(err) }.boxed()
    }

    fn start_container(&self, id: &str) -> BoxFuture<'_, Result<(), CriError>> {
        let id = id.to_owned();
        async move { self.runtime.start(&id).await.map_err(err) }.boxed()
    }

    fn stop_container(
        &self,
        id: &str,
        grace: Duration,
    ) -> BoxFuture<'_, Result<ExitStatus, CriError>> {
        let id = id.to_owned();
        async move { self.runtime.stop(&id, grace).await.map_err(err) }.boxed()
    }

    fn kill_container(&self, id: &str, signal: i32) -> BoxFuture<'_, Result<(), CriError>> {
        let id = id.to_owned();
        async move { self.runtime.kill(&id, signal).await.map_err(err) }.boxed()
    }

    fn remove_container(&self, id: &str) -> BoxFuture<'_, Result<(), CriError>> {
        let id = id.to_owned();
        async move {
            match self.runtime.remove(&id, true).await {
                Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
                Err(e) => Err(err(e)),
            }
        }
        .boxed()
    }

    fn container_status(
        &self,
        id: &str,
    ) -> BoxFuture<'_, Result<Option<ContainerState>, CriError>> {
        let id = id.to_owned();
        async move {
            match self.runtime.state(&id).await {
                Ok(s) => Ok(Some(s)),
                Err(RuntimeError::NotFound(_)) => Ok(None),
                Err(e) => Err(err(e)),
            }
        }
        .boxed()
    }

    fn list_containers_labelled<'a>(
        &'a self,
        wanted: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Vec<ContainerState>, CriError>> {
        async move { self.runtime.list_labelled(wanted).await.map_err(err) }.boxed()
    }

    fn list_images(&self) -> BoxFuture<'_, Result<Vec<StoredImage>, CriError>> {
        async move {
            let containers = self.runtime.list().await.map_err(err)?;
            let store = self.runtime.images().clone();
            let mounted: Vec<String> = self.image_volumes.lock().values().cloned().collect();
            tokio::task::spawn_blocking(move || {
                let runtime_err = |e: ImageError| CriError::Runtime(e.to_string());
                // Exited containers count too, as upstream: they may be restarted. So do
                // images mounted as volumes.
                let mut used: std::collections::HashSet<String> = mounted.into_iter().collect();
                for c in &containers {
                    if let Some(i) = store.get(&c.image).map_err(runtime_err)? {
                        used.insert(i.id);
                    }
                }
                // One entry per image id, however many references name it.
                let mut by_id: std::collections::BTreeMap<String, StoredImage> = Default::default();
                for i in store.list().map_err(runtime_err)? {
                    by_id.entry(i.id.clone()).or_insert_with(|| StoredImage {
                        in_use: used.contains(&i.id),
                        id: i.id,
                        size: i.size,
                    });
                }
                Ok(by_id.into_values().collect())
            })
            .await
            .map_err(|e| CriError::Runtime(e.to_string()))?
        }
        .boxed()
    }

    fn image_fs_info(&self) -> BoxFuture<'_, Result<FsStats, CriError>> {
        let dir = self.runtime.images().agent_dir().to_owned();
        async move {
            let (capacity, available) =
                tokio::task::spawn_blocking(move || super::host::fs_size(&dir))
                    .await
                    .map_err(|e| CriError::Runtime(e.to_string()))?;
            Ok(FsStats {
                capacity,
                available,
            })
        }
        .boxed()
    }

    fn remove_images(&self, ids: Vec<String>) -> BoxFuture<'_, Result<u64, CriError>> {
        let store = self.runtime.images().clone();
        async move {
            tokio::task::spawn_blocking(move || store.remove_ids(&ids))
                .await
                .map_err(|e| CriError::Runtime(e.to_string()))?
                .map(|report| report.freed_bytes)
                .map_err(|e| CriError::Runtime(e.to_string()))
        }
        .boxed()
    }

    fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<ExecOutput, CriError>> {
        let id = id.to_owned();
        async move {
            let (r, w) = nix::unistd::pipe().map_err(|e| CriError::Runtime(e.to_string()))?;
            let w2 = w
                .try_clone()
                .map_err(|e| CriError::Runtime(e.to_string()))?;
            // Probe output is capped as upstream's (10 KiB) so a chatty probe cannot grow us.
            let reader = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                let _ = std::fs::File::from(r).take(10 * 1024).read_to_end(&mut out);
                out
            });
            let io = ExecIo::Pipes {
                stdin: None,
                stdout: w,
                stderr: w2,
            };
            let config = ExecConfig {
                args: cmd,
                ..Default::default()
            };
            // On a timeout the process is killed; the output reader is left to end when
            // whatever still holds the pipe (a child of the process) exits.
            let status = match self
                .runtime
                .exec_with_timeout(&id, config, io, Some(timeout))
                .await
            {
                Err(RuntimeError::ExecTimeout(_)) => return Err(CriError::Timeout(timeout)),
                r => r.map_err(err)?,
            };
            let output = reader.await.unwrap_or_default();
            Ok(ExecOutput {
                code: status.code,
                output,
            })
        }
        .boxed()
    }

    fn wait_container(&self, id: &str) -> BoxFuture<'_, Result<ExitStatus, CriError>> {
        let id = id.to_owned();
        async move { self.runtime.wait(&id).await.map_err(err) }.boxed()
    }
}
