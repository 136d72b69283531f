//! `skiff ctr`: a ctr/nerdctl-like debugging front end over `runtime::Runtime`.

use crate::runtime::containers::facade::{ExecIo, Runtime, RuntimeOptions};
use crate::runtime::containers::shim::protocol as proto;
use crate::runtime::containers::{
    ContainerConfig, ExecConfig, Mount, Network, Resources, RuntimeKind, Status, User,
};
use anyhow::{bail, Context};
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `skiff ctr [--data-dir D] <command>`.
#[derive(Debug, clap::Args)]
pub struct CtrArgs {
    #[arg(long, env = "SKIFF_DATA_DIR", default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: CtrCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum CtrCommand {
    /// Create and start a container (foreground unless -d).
    Run(Box<RunArgs>),
    /// List containers.
    Ps,
    /// Print a container's log.
    Logs {
        #[arg(short, long)]
        follow: bool,
        id: String,
    },
    /// Run a command in a running container.
    Exec {
        #[arg(short = 't', long)]
        tty: bool,
        #[arg(short, long)]
        interactive: bool,
        /// Kill the command once it has run this long (e.g. `5s`; pipes only, as crictl).
        #[arg(long, value_parser = super::token::parse_duration)]
        timeout: Option<Duration>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Stop signal, then SIGKILL after the grace period.
    Stop {
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        id: String,
    },
    Kill {
        #[arg(short, long, default_value = "SIGKILL")]
        signal: String,
        id: String,
    },
    Rm {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[arg(long)]
    pub rm: bool,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(short, long)]
    pub detach: bool,
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// e.g. 64Mi, 1G, 500000
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long)]
    pub cpus: Option<f64>,
    #[arg(long)]
    pub pids: Option<i64>,
    /// host, none, or a netns path
    #[arg(long, default_value = "none")]
    pub net: String,
    #[arg(long)]
    pub read_only: bool,
    /// HOST_PATH:CONTAINER_PATH[:ro], a bind mount (repeatable)
    #[arg(short, long = "volume")]
    pub volumes: Vec<String>,
    /// UID[:GID]
    #[arg(short, long)]
    pub user: Option<String>,
    #[arg(short, long)]
    pub workdir: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// embedded, or an OCI runtime binary such as runc
    #[arg(long, default_value = "embedded")]
    pub runtime: String,
    pub image: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// `64Mi`, `1G`, `512k`, `1000` → bytes.
pub fn parse_bytes(s: &str) -> anyhow::Result<i64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" => 1024.0 * 1024.0 * 1024.0,
        _ => bail!("bad size unit in {s:?}"),
    };
    Ok((n * mult) as i64)
}

/// `HOST:CONTAINER[:ro]` → a bind mount.
fn parse_volume(s: &str) -> anyhow::Result<Mount> {
    let (spec, read_only) = match s.strip_suffix(":ro") {
        Some(rest) => (rest, true),
        None => (s.strip_suffix(":rw").unwrap_or(s), false),
    };
    let (source, destination) = spec
        .split_once(':')
        .with_context(|| format!("--volume wants HOST_PATH:CONTAINER_PATH[:ro], got {s:?}"))?;
    if !source.starts_with('/') || !destination.starts_with('/') {
        bail!("--volume paths must be absolute, got {s:?}");
    }
    Ok(Mount::Bind {
        source: PathBuf::from(source),
        destination: destination.to_string(),
        read_only,
    })
}

fn parse_user(s: &str) -> anyhow::Result<User> {
    let (u, g) = s.split_once(':').unwrap_or((s, ""));
    let uid = u
        .parse()
        .with_context(|| format!("--user wants numeric UID[:GID], got {s:?}"))?;
    let gid = if g.is_empty() {
        uid
    } else {
        g.parse().context("bad GID")?
    };
    Ok(User {
        uid,
        gid,
        additional_gids: vec![],
    })
}

fn signal_number(s: &str) -> anyhow::Result<i32> {
    if let Ok(n) = s.parse() {
        return Ok(n);
    }
    let name = if s.starts_with("SIG") {
        s.to_string()
    } else {
        format!("SIG{s}")
    };
    Ok(name
        .parse::<nix::sys::signal::Signal>()
        .with_context(|| format!("unknown signal {s}"))? as i32)
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

pub async fn run(cmd: CtrCommand, data_dir: &Path) -> anyhow::Result<ExitCode> {
    let rt = Runtime::open(
        &data_dir.join("agent"),
        RuntimeOptions {
            pull_missing: true,
            ..Default::default()
        },
    )?;
    match cmd {
        CtrCommand::Run(a) => run_container(&rt, *a).await,
        CtrCommand::Ps => {
            println!(
                "{:<20} {:<28} {:<9} {:>6} {:>6}  CREATED",
                "ID", "IMAGE", "STATUS", "PID", "EXIT"
            );
            for s in rt.list().await? {
                let status = format!("{:?}", s.status).to_lowercase();
                let exit = s.exit_code.map(|c| c.to_string()).unwrap_or_default();
                let exit = if s.oom_killed {
                    format!("{exit}(oom)")
                } else {
                    exit
                };
                println!(
                    "{:<20} {:<28} {:<9} {:>6} {:>6}  {}",
                    s.id, s.image, status, s.pid, exit, s.created_at
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CtrCommand::Logs { follow, id } => {
            let st = rt.state(&id).await?;
            follow_log(&rt, &id, &st.log_path, follow).await?;
            Ok(ExitCode::SUCCESS)
        }
        CtrCommand::Exec {
            tty,
            interactive,
            timeout,
            id,
            cmd,
        } => exec(&rt, &id, cmd, tty, interactive, timeout).await,
        CtrCommand::Stop { time, id } => {
            let st = rt.stop(&id, Duration::from_secs(time)).await?;
            println!("{id} exited with {}", st.code);
            Ok(ExitCode::SUCCESS)
        }
        CtrCommand::Kill { signal, id } => {
            rt.kill(&id, signal_number(&signal)?).await?;
            Ok(ExitCode::SUCCESS)
        }
        CtrCommand::Rm { force, id } => {
            rt.remove(&id, force).await?;
            println!("{id}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn generated_id() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:012x}",
        (n ^ ((std::process::id() as u128) << 40)) & 0xffff_ffff_ffff
    )
}

async fn run_container(rt: &Runtime, a: RunArgs) -> anyhow::Result<ExitCode> {
    let mut resources = Resources::default();
    if let Some(m) = &a.memory {
        resources.memory_limit_bytes = Some(parse_bytes(m)?);
    }
    if let Some(c) = a.cpus {
        resources.cpu_period_us = Some(100_000);
        resources.cpu_quota_us = Some((c * 100_000.0) as i64);
    }
    resources.pids_limit = a.pids;
    let env = a
        .env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .unwrap_or((kv.clone(), String::new()))
        })
        .collect();
    let id = a.name.clone().unwrap_or_else(generated_id);
    let cfg = ContainerConfig {
        id: id.clone(),
        image: a.image.clone(),
        args: (!a.cmd.is_empty()).then(|| a.cmd.clone()),
        command: None,
        env,
        working_dir: a.workdir.clone(),
        user: a.user.as_deref().map(parse_user).transpose()?,
        tty: a.tty,
        stdin: a.interactive,
        read_only_rootfs: a.read_only,
        mounts: a
            .volumes
            .iter()
            .map(|v| parse_volume(v))
            .collect::<anyhow::Result<_>>()?,
        resources,
        network: match a.net.as_str() {
            "host" => Network::Host,
            "none" => Network::None,
            p => Network::Join(PathBuf::from(p)),
        },
        runtime: match a.runtime.as_str() {
            "embedded" => RuntimeKind::Embedded,
            other => RuntimeKind::External(other.to_string()),
        },
        ..Default::default()
    };
    rt.create(cfg).await?;
    if a.detach {
        rt.start(&id).await?;
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let stream = rt.attach(&id).await?;
    if let Err(e) = rt.start(&id).await {
        if a.rm {
            let _ = rt.remove(&id, true).await;
        }
        return Err(e.into());
    }
    let _raw = if a.tty { RawTerminal::enter() } else { None };
    if a.tty {
        if let Some((rows, cols)) = terminal_size() {
            let _ = rt.resize(&id, rows, cols).await;
        }
    }
    if a.interactive {
        let mut w = stream.try_clone()?;
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut stdin = std::io::stdin();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = proto::write_frame(&mut w, proto::KIND_STDIN_CLOSE, &[]);
                        break;
                    }
                    Ok(n) => {
                        if proto::write_frame(&mut w, proto::KIND_STDIN, &buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    let code = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<i32>> {
        let mut s = stream;
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        while let Some((kind, data)) = proto::read_frame(&mut s)? {
            match kind {
                proto::KIND_STDOUT => {
                    out.write_all(&data)?;
                    out.flush()?;
                }
                proto::KIND_STDERR => {
                    err.write_all(&data)?;
                }
                proto::KIND_EXIT => {
                    let st: crate::runtime::containers::ExitStatus = serde_json::from_slice(&data)?;
                    return Ok(Some(st.code));
                }
                _ => {}
            }
        }
        Ok(None)
    })
    .await??;
    drop(_raw);
    let code = match code {
        Some(c) => c,
        None => rt.wait(&id).await?.code,
    };
    if a.rm {
        rt.remove(&id, true).await?;
    }
    Ok(exit(code))
}

async fn follow_log(rt: &Runtime, id: &str, path: &Path, follow: bool) -> anyhow::Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut r = std::io::BufReader::new(f);
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line)?;
        if n > 0 && line.ends_with('\n') {
            print_cri_line(&line);
            continue;
        }
        if !follow {
            return Ok(());
        }
        if n > 0 {
            // Incomplete line being written: re-read it whole next time.
            r.seek_relative(-(n as i64))?;
        }
        if matches!(
            rt.state(id).await.map(|s| s.status),
            Ok(Status::Stopped | Status::Unknown) | Err(_)
        ) {
            // Exited: print what remains and stop.
            let mut rest = String::new();
            r.read_to_string(&mut rest)?;
            rest.lines().for_each(|l| print_cri_line(&format!("{l}\n")));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_cri_line(line: &str) {
    let mut parts = line.trim_end_matches('\n').splitn(4, ' ');
    let (_ts, stream, tag, content) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next().unwrap_or(""),
    );
    let nl = if tag == Some("P") { "" } else { "\n" };
    if stream == Some("stderr") {
        eprint!("{content}{nl}");
    } else {
        print!("{content}{nl}");
        let _ = std::io::stdout().flush();
    }
}

async fn exec(
    rt: &Runtime,
    id: &str,
    args: Vec<String>,
    tty: bool,
    interactive: bool,
    timeout: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    if tty && timeout.is_some() {
        anyhow::bail!("--timeout works without a terminal only (drop -t)");
    }
    let cfg = ExecConfig {
        args,
        tty,
        ..Default::default()
    };
    if !tty {
        let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned();
        let stdin: Option<OwnedFd> = if interactive {
            Some(dup(std::io::stdin().as_fd())?)
        } else {
            None
        };
        let io = ExecIo::Pipes {
            stdin,
            stdout: dup(std::io::stdout().as_fd())?,
            stderr: dup(std::io::stderr().as_fd())?,
        };
        return Ok(exit(rt.exec_with_timeout(id, cfg, io, timeout).await?.code));
    }
    let pty = nix::pty::openpty(None, None)?;
    if let Some((rows, cols)) = terminal_size() {
        let ws = nix::libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ with a valid winsize on our own pty.
        unsafe { nix::libc::ioctl(pty.master.as_raw_fd(), nix::libc::TIOCSWINSZ, &ws) };
    }
    let raw = RawTerminal::enter();
    let mut master_r = std::fs::File::from(pty.master);
    let mut master_w = master_r.try_clone()?;
    let out = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut stdout = std::io::stdout();
        while let Ok(n) = master_r.read(&mut buf) {
            if n == 0
                || stdout
                    .write_all(&buf[..n])
                    .and_then(|_| stdout.flush())
                    .is_err()
            {
                break;
            }
        }
    });
    if interactive {
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut stdin = std::io::stdin();
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || master_w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
    }
    let status = rt.exec(id, cfg, ExecIo::Tty(pty.slave)).await?;
    // The slave is closed everywhere now: the reader sees EIO after draining.
    let _ = tokio::task::spawn_blocking(move || out.join()).await;
    drop(raw);
    Ok(exit(status.code))
}

fn terminal_size() -> Option<(u16, u16)> {
    let mut ws: nix::libc::winsize = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes into a valid winsize.
    let r = unsafe { nix::libc::ioctl(0, nix::libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// Puts the caller's terminal in raw mode for the guard's lifetime (no-op if not a tty).
struct RawTerminal(nix::sys::termios::Termios);

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let orig = tcgetattr(&stdin).ok()?;
        let mut raw = orig.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal(orig))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.0,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_bytes("64Mi").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_bytes("512").unwrap(), 512);
        assert!(parse_bytes("12parsecs").is_err());
    }

    #[test]
    fn users_and_signals_parse() {
        assert_eq!(
            parse_user("1000:50").unwrap(),
            User {
                uid: 1000,
                gid: 50,
                additional_gids: vec![]
            }
        );
        assert_eq!(parse_user("7").unwrap().gid, 7);
        assert!(parse_user("bob").is_err());
        assert_eq!(signal_number("TERM").unwrap(), 15);
        assert_eq!(signal_number("SIGKILL").unwrap(), 9);
        assert_eq!(signal_number("3").unwrap(), 3);
    }
}
