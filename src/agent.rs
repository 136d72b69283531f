//! Node agent wiring: [`run`] is the one entry point, used by `skiff agent` and by
//! `skiff server` for its own node (as k3s's server runs its agent code against itself).
//!
//! Today the agent makes the node's images ready: every tarball in `<data-dir>/agent/images/`
//! is imported at start (the k3s airgap drop directory). The kubelet, pod networking,
//! service proxy and DNS plug in here next (the node-agent issue).

use crate::runtime::images::{ImageStore, RegistriesConfig};
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

/// Directory under the agent dir whose tarballs are imported at every agent start.
pub const AIRGAP_IMAGES_DIR: &str = "images";

/// Where the agent finds its control plane.
#[derive(Debug, Clone)]
pub enum ControlPlane {
    /// The `skiff server` in this process.
    Local,
    /// A remote server joined with a token.
    Remote { url: String, token: String },
}

/// Everything an agent is built from.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// `<data-dir>/agent`: images, snapshots, containers, node credentials.
    pub agent_dir: PathBuf,
    pub control_plane: ControlPlane,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("opening the image store in {dir}: {source}")]
    ImageStore {
        dir: PathBuf,
        source: crate::runtime::images::ImageError,
    },
}

/// Runs the node agent until `shutdown`.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    if let ControlPlane::Remote { url, .. } = &config.control_plane {
        tracing::warn!(
            server = %url,
            "joining a remote server is not part of this build yet; the agent only imports airgap images"
        );
    } else {
        tracing::warn!(
            "the kubelet is not part of this build yet; the agent only imports airgap images"
        );
    }
    // In the background of the agent's own start: a large airgap bundle must not delay it.
    let dir = config.agent_dir.clone();
    let import = async move {
        match import_airgap_images(&dir).await {
            Ok(n) => tracing::debug!(images = n, "airgap import done"),
            // A broken store is logged, not fatal: the node can still pull images.
            Err(e) => tracing::warn!(error = %e, "importing airgap images failed"),
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = import => shutdown.cancelled().await,
    }
    Ok(())
}

/// `skiff agent`: runs the agent until SIGTERM/SIGINT.
pub async fn run_command(args: crate::cli::AgentArgs) -> anyhow::Result<()> {
    crate::pki::parse_join_token(&args.token).map_err(|e| anyhow::anyhow!("--token: {e}"))?;
    let config = AgentConfig {
        agent_dir: args.data_dir.join("agent"),
        control_plane: ControlPlane::Remote {
            url: args.server,
            token: args.token,
        },
    };
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(run(config, shutdown.clone()));
    crate::server::wait_for_signal().await;
    shutdown.cancel();
    agent.await??;
    Ok(())
}

/// Imports the airgap tarballs. A broken tarball is logged and skipped (see
/// [`ImageStore::import_dir`]); only a store that cannot be opened is an error.
pub async fn import_airgap_images(agent_dir: &Path) -> Result<usize, AgentError> {
    // Importing needs no registry settings; pulls read registries.yaml themselves.
    let store = ImageStore::open(agent_dir, RegistriesConfig::default()).map_err(|source| {
        AgentError::ImageStore {
            dir: agent_dir.to_owned(),
            source,
        }
    })?;
    let dir = agent_dir.join(AIRGAP_IMAGES_DIR);
    let images = store
        .import_dir(&dir)
        .await
        .map_err(|source| AgentError::ImageStore {
            dir: dir.clone(),
            source,
        })?;
    for image in &images {
        tracing::info!(image = %image.reference, "imported airgap image");
    }
    Ok(images.len())
}
