//! Entry point: hidden re-exec entries first (they must run before any thread starts), then
//! the clap commands.

use clap::Parser;
use skiff::cli::{Cli, Command};
use std::io::IsTerminal;
use std::process::ExitCode;

/// mimalloc rather than the C library's malloc: under `bench.sh scale` glibc's malloc and
/// free were ~40% of the server's CPU (serde_json values and informer objects are many small
/// short-lived allocations), and the static build's musl malloc is slower than glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The shim must start before anything else (single-threaded, no tokio, no clap).
    if let Some(code) = skiff::runtime::containers::shim::maybe_run_shim() {
        return code;
    }
    let args = match skiff::config::args_with_config_file(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    // rustls-platform-verifier logs every rejected certificate at ERROR; the pull error
    // already says what is wrong and what to change, so it stays quiet unless asked for.
    let log = if cli.log.contains("rustls_platform_verifier") {
        cli.log.clone()
    } else {
        format!("{},rustls_platform_verifier=off", cli.log)
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only where a person reads them: a log file or journald gets plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
    };
    // One-shot commands start faster without worker threads (`ctr run` is benchmarked
    // against runc); their blocking work still goes to the blocking pool.
    let local_runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
    };
    let result = match cli.command {
        Command::Server(args) => runtime().and_then(|rt| rt.block_on(skiff::server::run(args))),
        Command::Agent(args) => {
            runtime().and_then(|rt| rt.block_on(skiff::agent::run_command(args)))
        }
        Command::SimNodes(args) => {
            runtime().and_then(|rt| rt.block_on(skiff::simnodes::run_command(args)))
        }
        Command::Token(args) => {
            local_runtime().and_then(|rt| rt.block_on(skiff::cli::token::run(args)))
        }
        Command::Images(args) => local_runtime()
            .and_then(|rt| rt.block_on(skiff::cli::images::run(args.command, &args.data_dir))),
        Command::Ctr(args) => {
            return match local_runtime()
                .and_then(|rt| rt.block_on(skiff::cli::ctr::run(args.command, &args.data_dir)))
            {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
