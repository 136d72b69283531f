//! `skiff images …`: pull, import, list and remove images of the local agent's store.
//!
//! Owns only argument parsing and output; every operation is the image store's
//! ([`crate::runtime::images::ImageStore`]), the same one the kubelet uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::runtime::images::{ImageStore, Platform, PullProgress, RegistriesConfig};

/// Default location of the registries file (k3s format).
pub const DEFAULT_REGISTRIES: &str = "/etc/skiff/registries.yaml";

/// `skiff images [--data-dir DIR] <command>`.
#[derive(Args, Debug, Clone)]
pub struct ImagesArgs {
    /// Data directory whose `agent/` holds the image store.
    #[arg(long, global = true, default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: ImagesCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum ImagesCommand {
    /// Pull an image from a registry (mirrors and credentials from registries.yaml).
    Pull {
        /// os/arch[/variant] to pull from a multi-platform image (default: this host's).
        #[arg(long)]
        platform: Option<String>,
        /// registries.yaml to use.
        #[arg(long, env = "SKIFF_REGISTRIES", default_value = DEFAULT_REGISTRIES)]
        registries: PathBuf,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Image reference, e.g. busybox:1.36.
        reference: String,
    },
    /// Import `docker save` or OCI-layout tarballs (.tar, .tar.gz, .tar.zst).
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List images.
    Ls {
        /// Print only references.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Remove images by reference or id, then free the content no image needs.
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
}

/// Runs an `images` subcommand against `<data_dir>/agent`.
pub async fn run(cmd: ImagesCommand, data_dir: &Path) -> anyhow::Result<()> {
    let agent_dir = data_dir.join("agent");
    let registries_path = match &cmd {
        ImagesCommand::Pull { registries, .. } => Some(registries.clone()),
        _ => None,
    };
    let registries = match &registries_path {
        Some(p) => RegistriesConfig::load(p)?,
        None => RegistriesConfig::default(),
    };
    let store = ImageStore::open(&agent_dir, registries)
        .with_context(|| format!("opening the image store in {}", agent_dir.display()))?;
    match cmd {
        ImagesCommand::Pull {
            platform,
            quiet,
            reference,
            ..
        } => {
            let platform = platform.as_deref().map(Platform::parse).transpose()?;
            let bar = (!quiet).then(|| Arc::new(Bar::new()));
            let progress = bar.clone().map(|b| b as Arc<dyn PullProgress>);
            let result = store.pull(&reference, platform.as_ref(), progress).await;
            if let Some(b) = &bar {
                b.bar.finish_and_clear();
            }
            let image = result?;
            println!("{} {}", image.reference, image.manifest_digest);
        }
        ImagesCommand::Import { files } => {
            for f in files {
                let images = store
                    .import(&f)
                    .await
                    .with_context(|| format!("importing {}", f.display()))?;
                for i in images {
                    println!("{} {}", i.reference, i.id);
                }
            }
        }
        ImagesCommand::Ls { quiet } => {
            let images = store.list()?;
            if quiet {
                for i in images {
                    println!("{}", i.reference);
                }
                return Ok(());
            }
            println!("{:<60} {:<14} {:>10}", "IMAGE", "IMAGE ID", "SIZE");
            for i in images {
                let id = i.id.trim_start_matches("sha256:");
                println!(
                    "{:<60} {:<14} {:>10}",
                    i.reference,
                    &id[..id.len().min(13)],
                    human_size(i.size)
                );
            }
        }
        ImagesCommand::Rm { references } => {
            let mut failed = Vec::new();
            for r in &references {
                match store.remove(r) {
                    Ok(()) => println!("Deleted: {r}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        failed.push(r.clone());
                    }
                }
            }
            // Keep every image still named; free what only removed ones used.
            let keep: Vec<String> = store.list()?.into_iter().map(|i| i.id).collect();
            store.gc(&keep)?;
            if !failed.is_empty() {
                anyhow::bail!("could not remove {}", failed.join(", "));
            }
        }
    }
    Ok(())
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

/// The pull progress bar (bytes of all layers together).
struct Bar {
    bar: ProgressBar,
}

impl Bar {
    fn new() -> Bar {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("the progress template is valid")
            .progress_chars("=> "),
        );
        Bar { bar }
    }
}

impl PullProgress for Bar {
    fn start(&self, total_bytes: u64, layers: usize, present_bytes: u64) {
        self.bar.set_length(total_bytes);
        self.bar.set_position(present_bytes);
        self.bar.set_message(format!("{layers} layers"));
    }
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
    fn layer_done(&self, digest: &str) {
        let short = digest.trim_start_matches("sha256:");
        self.bar
            .println(format!("  {} done", &short[..short.len().min(12)]));
    }
}
