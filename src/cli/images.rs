//! `skiff images …`: pull, import, list and remove images of the local agent's store.
//!
//! Owns only argument parsing and output; every operation is the image store's
//! ([`crate::runtime::images::ImageStore`]), the same one the kubelet uses.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};

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
                b.finish_and_clear();
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

/// The pull progress line on stderr (bytes of all layers together), redrawn at most ten
/// times a second and only on a terminal: piped output gets just the result line.
struct Bar {
    tty: bool,
    state: std::sync::Mutex<BarState>,
}

#[derive(Default)]
struct BarState {
    layers: usize,
    total: u64,
    done: u64,
    /// Bytes already stored when the pull started (not part of the rate).
    present: u64,
    started: Option<std::time::Instant>,
    drawn: Option<std::time::Instant>,
}

const BAR_WIDTH: usize = 30;

impl BarState {
    fn line(&self) -> String {
        let filled = (self.done.min(self.total) as u128 * BAR_WIDTH as u128)
            .checked_div(self.total as u128)
            .unwrap_or(0) as usize;
        let mut bar = "=".repeat(filled);
        if filled < BAR_WIDTH {
            bar.push('>');
            bar.push_str(&" ".repeat(BAR_WIDTH - filled - 1));
        }
        let secs = self.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let rate = if secs > 0.0 {
            (self.done.saturating_sub(self.present)) as f64 / secs
        } else {
            0.0
        };
        format!(
            "{} layers [{bar}] {}/{} {}/s",
            self.layers,
            human_size(self.done),
            human_size(self.total),
            human_size(rate as u64)
        )
    }
}

impl Bar {
    fn new() -> Bar {
        use std::io::IsTerminal;
        Bar {
            tty: std::io::stderr().is_terminal(),
            state: Default::default(),
        }
    }

    /// Redraws the line (always when `force`, else at most every 100 ms), with `above`
    /// printed on its own line first.
    fn draw(&self, force: bool, above: Option<String>) {
        if !self.tty {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let due = st
            .drawn
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(100));
        if !(force || due) {
            return;
        }
        st.drawn = Some(std::time::Instant::now());
        let mut out = String::from("\r\x1b[2K");
        if let Some(a) = above {
            out.push_str(&a);
            out.push('\n');
        }
        out.push_str(&st.line());
        eprint!("{out}");
    }

    fn finish_and_clear(&self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}

impl PullProgress for Bar {
    fn start(&self, total_bytes: u64, layers: usize, present_bytes: u64) {
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            *st = BarState {
                layers,
                total: total_bytes,
                done: present_bytes,
                present: present_bytes,
                started: Some(std::time::Instant::now()),
                drawn: None,
            };
        }
        self.draw(true, None);
    }
    fn advance(&self, bytes: u64) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).done += bytes;
        self.draw(false, None);
    }
    fn layer_done(&self, digest: &str) {
        let short = digest.trim_start_matches("sha256:");
        self.draw(
            true,
            Some(format!("  {} done", &short[..short.len().min(12)])),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_fills_in_proportion_and_names_sizes() {
        let st = BarState {
            layers: 3,
            total: 2_000_000,
            done: 1_000_000,
            ..Default::default()
        };
        let line = st.line();
        assert!(
            line.starts_with(&format!(
                "3 layers [{}>{}] 1.0MB/2.0MB ",
                "=".repeat(15),
                " ".repeat(14)
            )),
            "{line}"
        );
        let full = BarState {
            done: 2_000_000,
            ..st
        };
        assert!(full.line().contains(&format!("[{}]", "=".repeat(30))));
        // An empty image (nothing to fetch) draws an empty bar, not a division by zero.
        assert!(BarState::default().line().starts_with("0 layers [>"));
    }
}
