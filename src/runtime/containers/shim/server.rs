//! The shim daemon's body: container creation and the poll loop.

use super::logs::{CriLog, Stream};
use super::protocol::{self as proto, Request, Response};
use super::{write_line, ShimConfig, ShimError, SHIM_CONFIG, SHIM_PID};
use crate::runtime::containers::cgroups::{CgroupSet, Hierarchies};
use crate::runtime::containers::init::{self, InitStdio};
use crate::runtime::containers::spec::STOP_SIGNAL_ANNOTATION;
use crate::runtime::containers::state::{self, ContainerState, Event, Status};
use crate::runtime::containers::{exec, ExecConfig, ExitStatus};
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn setup<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> Result<T, ShimError> {
    r.map_err(|e| ShimError::Setup(format!("{what}: {e}")))
}

pub(super) fn run(dir: &Path) -> Result<(), ShimError> {
    let dir = dir.canonicalize()?;
    daemonize()?;
    // stdout is the caller's pipe until we answer; stderr goes to shim.log from now on.
    let mut ready = File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("shim.log"))?;
    let null = File::open("/dev/null")?;
    setup(nix::unistd::dup2_stdin(&null), "dup2 stdin")?;
    setup(nix::unistd::dup2_stdout(&null), "dup2 stdout")?;
    setup(nix::unistd::dup2_stderr(&log), "dup2 stderr")?;
    drop((log, null));
    match Shim::create(&dir) {
        Ok(mut shim) => {
            write_line(&mut ready, &format!("ok {}\n", std::process::id()));
            drop(ready);
            super::trim::drop_clean_file_pages();
            shim.serve()
        }
        Err(e) => {
            write_line(&mut ready, &format!("error {e}\n"));
            Err(e)
        }
    }
}

fn daemonize() -> Result<(), ShimError> {
    use nix::unistd::{fork, ForkResult};
    for i in 0..2 {
        // SAFETY: the shim is single-threaded (dispatched before anything spawns threads).
        match setup(unsafe { fork() }, "fork")? {
            // SAFETY: the intermediate exits without running destructors of shared state.
            ForkResult::Parent { .. } => unsafe { libc::_exit(0) },
            ForkResult::Child => {
                if i == 0 {
                    setup(nix::unistd::setsid(), "setsid")?;
                }
            }
        }
    }
    Ok(())
}

struct Output {
    fd: File,
    stream: Stream,
}

struct Shim {
    dir: PathBuf,
    cfg: ShimConfig,
    spec: Spec,
    state: ContainerState,
    cgroups: CgroupSet,
    log: CriLog<File>,
    outputs: Vec<Output>,
    stdin: Option<File>,
    master: Option<File>,
    gate: Option<File>,
    ready: Option<File>,
    listener: UnixListener,
    sigfd: SignalFd,
    attachers: Vec<UnixStream>,
    waiters: Vec<UnixStream>,
    execs: HashMap<i32, UnixStream>,
    kill_at: Option<Instant>,
    exit: Option<ExitStatus>,
    shutdown: bool,
}

fn pipe() -> Result<(File, File), ShimError> {
    let (r, w) = setup(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC), "pipe")?;
    Ok((File::from(r), File::from(w)))
}

impl Shim {
    fn create(dir: &Path) -> Result<Shim, ShimError> {
        let cfg: ShimConfig = setup(
            serde_json::from_slice(&std::fs::read(dir.join(SHIM_CONFIG))?),
            "shim.json",
        )?;
        let spec: Spec = setup(
            serde_json::from_slice(&std::fs::read(dir.join("config.json"))?),
            "config.json",
        )?;
        setup(
            nix::sys::prctl::set_child_subreaper(true),
            "child subreaper",
        )?;
        for s in [
            Signal::SIGPIPE,
            Signal::SIGHUP,
            Signal::SIGINT,
            Signal::SIGTERM,
        ] {
            // SAFETY: SIG_IGN installs no handler, so no Rust code runs in signal context.
            setup(
                unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigIgn) },
                "ignore signals",
            )?;
        }
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        setup(mask.thread_block(), "block SIGCHLD")?;
        let sigfd = setup(
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC),
            "signalfd",
        )?;

        let rel = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .unwrap_or_else(|| PathBuf::from(format!("/skiff/{}", cfg.id)));
        let hierarchies = cfg
            .cgroup_hierarchies
            .clone()
            .unwrap_or_else(Hierarchies::detect);
        let cgroups = CgroupSet::plan(&hierarchies, &rel.to_string_lossy());
        let mut state = ContainerState {
            id: cfg.id.clone(),
            status: Status::Created,
            pid: 0,
            shim_pid: std::process::id() as i32,
            exit_code: None,
            oom_killed: false,
            created_at: state::now_rfc3339(),
            started_at: None,
            finished_at: None,
            error: None,
            image: cfg.image.clone(),
            log_path: cfg.log_path.clone(),
            runtime: cfg
                .external_runtime
                .clone()
                .unwrap_or_else(|| "embedded".into()),
            labels: cfg.labels.clone(),
        };
        let log = setup(CriLog::open(&cfg.log_path), "open log")?;

        // Container stdio: a pty, or pipes (stdin only when asked for).
        let (child_stdio, outputs, stdin, master, keep): (
            InitStdio,
            Vec<Output>,
            Option<File>,
            Option<File>,
            Vec<OwnedFd>,
        ) = if cfg.tty {
            let pty = setup(nix::pty::openpty(None, None), "openpty")?;
            let master = File::from(pty.master);
            setup(
                nix::fcntl::fcntl(
                    &master,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                ),
                "cloexec",
            )?;
            let out = Output {
                fd: setup(master.try_clone(), "dup master")?,
                stream: Stream::Stdout,
            };
            (
                InitStdio::Tty(pty.slave.as_raw_fd()),
                vec![out],
                None,
                Some(master),
                vec![pty.slave],
            )
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let (in_r, in_w) = if cfg.stdin {
                let (r, w) = pipe()?;
                (r, Some(w))
            } else {
                (File::open("/dev/null")?, None)
            };
            let stdio = InitStdio::Pipes {
                stdin: in_r.as_raw_fd(),
                stdout: out_w.as_raw_fd(),
                stderr: err_w.as_raw_fd(),
            };
            let outputs = vec![
                Output {
                    fd: out_r,
                    stream: Stream::Stdout,
                },
                Output {
                    fd: err_r,
                    stream: Stream::Stderr,
                },
            ];
            (
                stdio,
                outputs,
                in_w,
                None,
                vec![in_r.into(), out_w.into(), err_w.into()],
            )
        };

        let (gate, ready, pid) = match &cfg.external_runtime {
            None => {
                setup(
                    cgroups.create(spec.linux().as_ref().and_then(|l| l.resources().as_ref())),
                    "cgroups",
                )?;
                let (gate, ready, pid) = spawn_embedded(&spec, dir, child_stdio, &cgroups)?;
                (Some(gate), Some(ready), pid)
            }
            Some(bin) => (
                None,
                None,
                crate::runtime::containers::external::create(bin, &cfg, dir, child_stdio)?,
            ),
        };
        drop(keep);
        state.transition(Event::Created { pid });
        let sock = dir.join(proto::SOCKET);
        let _ = std::fs::remove_file(&sock);
        let listener = proto::at_socket_path(dir, |p| UnixListener::bind(p))?;
        listener.set_nonblocking(true)?;
        std::fs::write(dir.join(SHIM_PID), std::process::id().to_string())?;
        state::write_atomic(dir, &state)?;
        for o in &outputs {
            set_nonblocking(o.fd.as_fd());
        }
        Ok(Shim {
            dir: dir.to_path_buf(),
            cfg,
            spec,
            state,
            cgroups,
            log,
            outputs,
            stdin,
            master,
            gate,
            ready,
            listener,
            sigfd,
            attachers: Vec::new(),
            waiters: Vec::new(),
            execs: HashMap::new(),
            kill_at: None,
            exit: None,
            shutdown: false,
        })
    }

    fn persist(&self) {
        if let Err(e) = state::write_atomic(&self.dir, &self.state) {
            eprintln!("shim: writing state: {e}");
        }
    }

    fn serve(&mut self) -> Result<(), ShimError> {
        let mut buf = vec![0u8; 32 * 1024];
        while !self.shutdown {
            let n_out = self.outputs.len();
            let timeout = self
                .kill_at
                .map(|t| {
                    PollTimeout::try_from(t.saturating_duration_since(Instant::now()))
                        .unwrap_or(PollTimeout::MAX)
                })
                .unwrap_or(PollTimeout::NONE);
            // Which descriptors are readable, in the order listener, signalfd, outputs,
            // attachers (the poll set borrows them, so it ends before any handling).
            let revents: Vec<bool> = {
                let mut pfds: Vec<PollFd<'_>> = [self.listener.as_fd(), self.sigfd.as_fd()]
                    .into_iter()
                    .chain(self.outputs.iter().map(|o| o.fd.as_fd()))
                    .chain(self.attachers.iter().map(|a| a.as_fd()))
                    .map(|fd| PollFd::new(fd, PollFlags::POLLIN))
                    .collect();
                match poll(&mut pfds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(std::io::Error::from(e).into()),
                }
                pfds.iter()
                    .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                    .collect()
            };
            if let Some(t) = self.kill_at {
                if Instant::now() >= t {
                    self.kill_at = None;
                    self.signal(libc::SIGKILL);
                }
            }
            let ready = |i: usize| revents[i];
            let mut closed_outputs = Vec::new();
            for i in 0..n_out {
                if ready(2 + i) && !self.pump(i, &mut buf) {
                    closed_outputs.push(i);
                }
            }
            let mut dropped = Vec::new();
            for i in 0..self.attachers.len().min(revents.len() - 2 - n_out) {
                if ready(2 + n_out + i) && !self.attach_input(i) {
                    dropped.push(i);
                }
            }
            for i in dropped.into_iter().rev() {
                self.attachers.remove(i);
            }
            for i in closed_outputs.into_iter().rev() {
                self.outputs.remove(i);
            }
            if ready(1) {
                while let Ok(Some(_)) = self.sigfd.read_signal() {}
                self.reap();
            }
            if ready(0) {
                while let Ok((conn, _)) = self.listener.accept() {
                    self.handle(conn);
                }
            }
        }
        let _ = std::fs::remove_file(self.dir.join(proto::SOCKET));
        Ok(())
    }

    /// Moves one chunk of container output to the log and attached clients; false at EOF.
    fn pump(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let stream = self.outputs[i].stream;
        match self.outputs[i].fd.read(buf) {
            Ok(0) => false,
            Ok(n) => {
                self.emit(stream, n, buf);
                true
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted =>
            {
                true
            }
            // EIO: pty slave closed.
            Err(_) => false,
        }
    }

    fn emit(&mut self, stream: Stream, n: usize, buf: &[u8]) {
        if let Err(e) = self.log.write(stream, &buf[..n]) {
            eprintln!("shim: log write: {e}");
        }
        let kind = if stream == Stream::Stdout {
            proto::KIND_STDOUT
        } else {
            proto::KIND_STDERR
        };
        let frame = proto::encode(kind, &buf[..n]);
        self.attachers.retain_mut(|a| a.write_all(&frame).is_ok());
    }

    fn drain_outputs(&mut self) {
        let mut buf = vec![0u8; 32 * 1024];
        let deadline = Instant::now() + Duration::from_millis(500);
        for i in 0..self.outputs.len() {
            let stream = self.outputs[i].stream;
            loop {
                match self.outputs[i].fd.read(&mut buf) {
                    Ok(0) => break,
                    // A process still writing (a leftover holding the pipe) must not keep
                    // the shim here.
                    Ok(n) if Instant::now() >= deadline => {
                        self.emit(stream, n, &buf);
                        break;
                    }
                    Ok(n) => self.emit(stream, n, &buf),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(_) => break,
                }
            }
        }
        self.outputs.clear();
        let _ = self.log.flush_partial();
    }

    fn attach_input(&mut self, i: usize) -> bool {
        let a = &mut self.attachers[i];
        let _ = a.set_read_timeout(Some(Duration::from_secs(1)));
        match proto::read_frame(a) {
            Ok(Some((proto::KIND_STDIN, data))) => {
                let target = self.master.as_mut().or(self.stdin.as_mut());
                if let Some(t) = target {
                    let _ = t.write_all(&data);
                }
                true
            }
            Ok(Some((proto::KIND_STDIN_CLOSE, _))) => {
                self.stdin = None;
                if let Some(m) = &mut self.master {
                    let _ = m.write_all(&[4]); // ^D
                }
                true
            }
            Ok(Some((proto::KIND_RESIZE, d))) if d.len() == 4 => {
                self.resize(
                    u16::from_be_bytes([d[0], d[1]]),
                    u16::from_be_bytes([d[2], d[3]]),
                );
                true
            }
            Ok(Some(_)) => true,
            _ => false,
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        if let Some(m) = &self.master {
            let ws = libc::winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ with a valid winsize on our pty master.
            unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        }
    }

    fn signal(&self, sig: i32) {
        if self.exit.is_none() && self.state.pid > 0 {
            // A signal number the kernel does not know is the caller's error; the shim ignores it.
            if let Ok(sig) = Signal::try_from(sig) {
                let _ = nix::sys::signal::kill(Pid::from_raw(self.state.pid), sig);
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.child_exited(pid.as_raw(), code, false),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.child_exited(pid.as_raw(), 128 + sig as i32, sig == Signal::SIGKILL)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    }

    fn child_exited(&mut self, pid: i32, code: i32, killed: bool) {
        if let Some(mut conn) = self.execs.remove(&pid) {
            let _ = proto::write_json(
                &mut conn,
                &Response::Exited {
                    status: ExitStatus {
                        code,
                        oom_killed: false,
                    },
                },
            );
            return;
        }
        if pid != self.state.pid || self.exit.is_some() {
            return;
        }
        // In a PID namespace of its own, the kernel ends every process of the container with
        // its first one. In one it joined (an ephemeral container's target's), what it left
        // running would outlive it: end them as that would.
        if super::super::init::pid_namespace_to_join(&self.spec).is_some() {
            for left in self.cgroups.pids() {
                let _ = nix::sys::signal::kill(Pid::from_raw(left), Signal::SIGKILL);
            }
        }
        self.drain_outputs();
        let oom_killed = killed && self.cgroups.oom_kills() > 0;
        let status = ExitStatus { code, oom_killed };
        self.exit = Some(status);
        self.kill_at = None;
        if self.state.status == Status::Created && self.state.started_at.is_none() {
            self.state.transition(Event::Started);
        }
        self.state.transition(Event::Exited { code, oom_killed });
        self.persist();
        for mut w in self.waiters.drain(..) {
            let _ = proto::write_json(&mut w, &Response::Exited { status });
        }
        let body = serde_json::to_vec(&status).unwrap_or_default();
        for mut a in self.attachers.drain(..) {
            let _ = proto::write_frame(&mut a, proto::KIND_EXIT, &body);
        }
        self.stdin = None;
    }

    fn handle(&mut self, conn: UnixStream) {
        let _ = conn.set_nonblocking(false);
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
        let (frame, fds) = match proto::recv_with_fds(&conn) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("shim: bad request: {e}");
                return;
            }
        };
        let req: Request = match proto::read_frame(&mut &frame[..])
            .ok()
            .flatten()
            .and_then(|(k, b)| proto::parse_json(k, &b).ok())
        {
            Some(r) => r,
            None => return,
        };
        let mut conn = conn;
        let resp = self.dispatch(req, fds, &mut conn);
        if let Some(resp) = resp {
            let _ = proto::write_json(&mut conn, &resp);
        }
    }

    /// Answers a request; `None` when the connection was kept (and answered) elsewhere.
    fn dispatch(
        &mut self,
        req: Request,
        fds: Vec<OwnedFd>,
        conn: &mut UnixStream,
    ) -> Option<Response> {
        let err = |m: &str| {
            Some(Response::Error {
                message: m.to_string(),
            })
        };
        match req {
            Request::State => Some(Response::State {
                state: Box::new(self.state.clone()),
            }),
            Request::Start => Some(match self.start() {
                Ok(()) => Response::Ok,
                Err(e) => Response::Error { message: e },
            }),
            Request::Signal { signal } => {
                self.signal(signal);
                Some(Response::Ok)
            }
            Request::Stop { grace_ms } => {
                if self.exit.is_none() {
                    if grace_ms == 0 {
                        self.signal(libc::SIGKILL);
                    } else {
                        self.signal(self.stop_signal());
                        self.kill_at = Some(Instant::now() + Duration::from_millis(grace_ms));
                    }
                }
                Some(Response::Ok)
            }
            Request::Wait => match self.exit {
                Some(status) => Some(Response::Exited { status }),
                None => {
                    if let Ok(c) = conn.try_clone() {
                        let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
                        self.waiters.push(c);
                    }
                    None
                }
            },
            Request::Attach => {
                let _ = proto::write_json(conn, &Response::Ok);
                if let Some(status) = self.exit {
                    let body = serde_json::to_vec(&status).unwrap_or_default();
                    let _ = proto::write_frame(conn, proto::KIND_EXIT, &body);
                } else if let Ok(c) = conn.try_clone() {
                    self.attachers.push(c);
                }
                None
            }
            Request::Exec { config } => {
                if self.exit.is_some() || self.state.status != Status::Running {
                    return err("container is not running");
                }
                match self.spawn_exec(&config, &fds) {
                    Ok(pid) => {
                        drop(fds);
                        let _ = proto::write_json(conn, &Response::ExecStarted { pid });
                        if let Ok(c) = conn.try_clone() {
                            let _ = c.set_write_timeout(Some(Duration::from_secs(2)));
                            self.execs.insert(pid, c);
                        }
                        None
                    }
                    Err(e) => err(&e),
                }
            }
            Request::Resize { rows, cols } => {
                self.resize(rows, cols);
                Some(Response::Ok)
            }
            Request::Shutdown => {
                if self.exit.is_none() && self.state.pid > 0 {
                    return err("container is still running");
                }
                if let Some(bin) = &self.cfg.external_runtime {
                    crate::runtime::containers::external::delete(bin, &self.cfg);
                }
                if let Err(e) = self.cgroups.remove() {
                    return err(&e.to_string());
                }
                self.shutdown = true;
                Some(Response::Ok)
            }
        }
    }

    fn stop_signal(&self) -> i32 {
        self.spec
            .annotations()
            .as_ref()
            .and_then(|a| a.get(STOP_SIGNAL_ANNOTATION))
            .and_then(|s| {
                s.parse::<i32>().ok().or_else(|| {
                    let name = if s.starts_with("SIG") {
                        s.clone()
                    } else {
                        format!("SIG{s}")
                    };
                    name.parse::<Signal>().ok().map(|s| s as i32)
                })
            })
            .unwrap_or(libc::SIGTERM)
    }

    fn start(&mut self) -> Result<(), String> {
        if self.state.status != Status::Created || self.exit.is_some() {
            return Err(format!("container is {:?}, not created", self.state.status));
        }
        match &self.cfg.external_runtime {
            None => {
                let mut gate = self.gate.take().ok_or("no start gate")?;
                gate.write_all(b"S")
                    .map_err(|e| format!("start gate: {e}"))?;
                let mut msg = Vec::new();
                if let Some(mut r) = self.ready.take() {
                    let _ = r.read_to_end(&mut msg);
                }
                if let Some(text) = msg.strip_prefix(b"E") {
                    let text = String::from_utf8_lossy(text).to_string();
                    self.state.error = Some(text.clone());
                    self.persist();
                    return Err(text);
                }
            }
            Some(bin) => crate::runtime::containers::external::start(bin, &self.cfg)?,
        }
        self.state.transition(Event::Started);
        self.persist();
        Ok(())
    }

    fn spawn_exec(&self, config: &ExecConfig, fds: &[OwnedFd]) -> Result<i32, String> {
        let stdio = match (config.tty, fds) {
            (true, [t]) => InitStdio::Tty(t.as_raw_fd()),
            (false, [i, o, e]) => InitStdio::Pipes {
                stdin: i.as_raw_fd(),
                stdout: o.as_raw_fd(),
                stderr: e.as_raw_fd(),
            },
            _ => {
                return Err(format!(
                    "exec needs 3 fds (or 1 with tty), got {}",
                    fds.len()
                ))
            }
        };
        if let Some(bin) = &self.cfg.external_runtime {
            return crate::runtime::containers::external::exec(bin, &self.cfg, config, fds);
        }
        // SAFETY: the shim is single-threaded; the child only sets up and execs.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                init::reset_signals();
                exec::run_child(
                    self.state.pid,
                    Some(&self.cgroups),
                    &self.spec,
                    config,
                    stdio,
                )
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => Ok(child.as_raw()),
            Err(e) => Err(format!("fork: {e}")),
        }
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(fl) = fcntl(fd, FcntlArg::F_GETFL) {
        let fl = OFlag::from_bits_truncate(fl) | OFlag::O_NONBLOCK;
        let _ = fcntl(fd, FcntlArg::F_SETFL(fl));
    }
}

/// Clones the init child into new namespaces, puts it in the cgroups and waits until it
/// is set up (parked at the start gate). Returns (gate writer, ready reader, pid).
fn spawn_embedded(
    spec: &Spec,
    dir: &Path,
    stdio: InitStdio,
    cgroups: &CgroupSet,
) -> Result<(File, File, i32), ShimError> {
    let (ready_r, ready_w) = pipe()?;
    let (gate_r, gate_w) = pipe()?;
    if let Some(p) = init::pid_namespace_to_join(spec) {
        // The shim serves only this container, so its own later children (exec relays)
        // being born in that namespace too is what they want anyway.
        let f =
            File::open(p).map_err(|e| ShimError::Setup(format!("opening {}: {e}", p.display())))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWPID)
            .map_err(|e| ShimError::Setup(format!("joining {}: {e}", p.display())))?;
    }
    let flags = init::clone_flags(spec) | libc::SIGCHLD;
    // SAFETY: raw clone without a new stack behaves like fork; the shim is single-threaded.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(ShimError::Setup(format!(
            "clone: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        drop(ready_r);
        drop(gate_w);
        init::reset_signals();
        let sync = init::Sync {
            to_parent: into_raw(ready_w),
            from_parent: into_raw(gate_r),
        };
        init::run(spec, dir, stdio, sync);
    }
    let pid = pid as i32;
    drop(ready_w);
    drop(gate_r);
    let mut ready_r = ready_r;
    if let Err(e) = cgroups.add_pid(pid) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(pid), None);
        return Err(ShimError::Setup(format!("cgroups: {e}")));
    }
    let mut b = [0u8; 1];
    match ready_r.read(&mut b) {
        Ok(1) if b[0] == b'R' => Ok((gate_w, ready_r, pid)),
        _ => {
            let mut msg = Vec::new();
            let _ = ready_r.read_to_end(&mut msg);
            let _ = waitpid(Pid::from_raw(pid), None);
            Err(ShimError::Setup(format!(
                "container init: {}",
                String::from_utf8_lossy(&msg)
            )))
        }
    }
}

fn into_raw(f: File) -> RawFd {
    use std::os::fd::IntoRawFd;
    f.into_raw_fd()
}
