//! Node agent wiring. For now the agent only makes the node's images ready: every tarball in
//! `<data-dir>/agent/images/` is imported at start (the k3s airgap drop directory). The
//! kubelet, pod networking, service proxy and DNS plug in here next.

use std::path::Path;

use crate::runtime::images::{ImageStore, RegistriesConfig};

/// Directory under the agent dir whose tarballs are imported at every agent start.
pub const AIRGAP_IMAGES_DIR: &str = "images";

/// Imports the airgap tarballs. A broken tarball is logged and skipped (see
/// [`ImageStore::import_dir`]); only a store that cannot be opened is an error.
pub async fn import_airgap_images(agent_dir: &Path) -> anyhow::Result<usize> {
    // Importing needs no registry settings; pulls read registries.yaml themselves.
    let store = ImageStore::open(agent_dir, RegistriesConfig::default())?;
    let dir = agent_dir.join(AIRGAP_IMAGES_DIR);
    let images = store.import_dir(&dir).await?;
    for image in &images {
        tracing::info!(image = %image.reference, "imported airgap image");
    }
    Ok(images.len())
}
