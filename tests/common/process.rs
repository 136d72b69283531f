//! Client processes of a test (kubectl, helm, curl): run with a deadline, or in the
//! background with output to files. Invariant: no process started here outlives its handle;
//! each runs in its own process group, which is killed on timeout or drop.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::{getppid, Pid};

use super::kill_group;

/// Makes the child get SIGKILL when the thread that spawned it dies. Drop handlers cover a
/// failing test; this covers a test process killed outright (nextest timeout, Ctrl-C), whose
/// children would otherwise outlive it in their own process groups.
pub fn die_with_parent(cmd: &mut Command) {
    let parent = Pid::this();
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (prctl, getppid); it allocates nothing (an Errno converts to io::Error
    // without allocating).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died before prctl took effect.
            if getppid() != parent {
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
}

/// What a finished client command did.
#[derive(Debug, Clone)]
pub struct Run {
    /// The command line, for failure messages.
    pub cmd: String,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts the command exited 0.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert!(self.success(), "command failed:\n{self}");
        self
    }

    /// Asserts the command exited non-zero.
    #[track_caller]
    pub fn fails(self) -> Run {
        assert!(!self.success(), "command unexpectedly succeeded:\n{self}");
        self
    }

    /// stdout and stderr, one after the other.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.code, self.stdout, self.stderr
        )
    }
}

fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` to completion, feeding `stdin`, killing it (and failing the test) after `timeout`.
#[track_caller]
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Run {
    let desc = describe(cmd);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    die_with_parent(cmd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        let input = input.to_vec();
        // A writer thread: a large input must not deadlock against a full stdout pipe.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let out = reader(child.stdout.take().expect("stdout was piped"));
    let err = reader(child.stderr.take().expect("stderr was piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                kill_group(&mut child);
                let stdout = out.join().unwrap_or_default();
                let stderr = err.join().unwrap_or_default();
                panic!(
                    "command timed out after {timeout:?}:\n$ {desc}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for {desc}: {e}"),
        }
    };
    Run {
        cmd: desc,
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn reader<R: Read + Send + 'static>(mut pipe: R) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// A client running in the background (e.g. `kubectl get -w`), output going to files.
/// Dropping it kills its process group.
pub struct Background {
    child: Option<Child>,
    desc: String,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Background {
    /// Spawns `cmd` with stdout/stderr to `<prefix>.out` / `<prefix>.err`.
    pub fn spawn(mut cmd: Command, prefix: &Path) -> Background {
        let desc = describe(&cmd);
        let stdout_path = prefix.with_extension("out");
        let stderr_path = prefix.with_extension("err");
        let out = fs::File::create(&stdout_path).expect("creating a background stdout file");
        let err = fs::File::create(&stderr_path).expect("creating a background stderr file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0);
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
        Background {
            child: Some(child),
            desc,
            stdout_path,
            stderr_path,
        }
    }

    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// The process id, while it has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until `pred(stdout)` holds; fails the test with the output after `timeout`.
    #[track_caller]
    pub fn wait_for_stdout(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.stdout()) {
                return;
            }
            let exited = self
                .child
                .as_mut()
                .map(|c| matches!(c.try_wait(), Ok(Some(_))))
                .unwrap_or(true);
            // One last look: the output may have landed just before the exit.
            if exited && pred(&self.stdout()) {
                return;
            }
            if exited || Instant::now() > deadline {
                panic!(
                    "{} waiting for {what}:\n$ {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    if exited {
                        "process exited"
                    } else {
                        "timed out"
                    },
                    self.desc,
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most `timeout`) for the process to exit by itself; returns its exit code
    /// (`None` when it was killed by a signal). Fails the test on timeout.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().expect("the process was already killed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for a background process") {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not exit within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.desc,
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM (the polite stop a service manager sends); see [`Background::wait_exit`].
    pub fn terminate(&mut self) {
        if let Some(child) = self.child.as_ref() {
            let pid = Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, Signal::SIGTERM).expect("sending SIGTERM");
        }
    }

    /// Whether the process has exited (by itself or killed).
    pub fn has_exited(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    /// Kills the process now; output files stay readable.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&mut child);
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A new command with `cmd`'s program, arguments, environment changes and directory.
pub fn copy_command(cmd: &Command) -> Command {
    let mut copy = Command::new(cmd.get_program());
    copy.args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        copy.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => copy.env(k, v),
            None => copy.env_remove(k),
        };
    }
    copy
}

/// Polls `f` (with a short backoff) until it returns `Ok`, or fails the test after `timeout`
/// with `what` and the last observation `f` reported through its `Err`.
#[track_caller]
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(10);
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
}
