//! `state.json`: the recorded lifecycle of one container.
//!
//! Invariant: only the shim writes it, always by write-to-temp + rename, so a reader never
//! sees a torn file and a recorded exit survives the death of every other process.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Process set up and waiting for `start`.
    Created,
    Running,
    Stopped,
    /// The shim died without recording an exit (e.g. it was SIGKILLed).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub status: Status,
    /// Host pid of the container's init process (0 before creation).
    pub pid: i32,
    pub shim_pid: i32,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    /// RFC 3339 timestamps.
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Why the container failed to start, if it did.
    pub error: Option<String>,
    pub image: String,
    pub log_path: PathBuf,
    pub runtime: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

impl ContainerState {
    /// Lifecycle transition: the only way status changes.
    pub fn transition(&mut self, event: Event) {
        let now = now_rfc3339();
        match event {
            Event::Created { pid } => {
                self.pid = pid;
                self.status = Status::Created;
            }
            Event::Started => {
                self.status = Status::Running;
                self.started_at = Some(now);
            }
            Event::Exited { code, oom_killed } => {
                self.status = Status::Stopped;
                self.exit_code = Some(code);
                self.oom_killed = oom_killed;
                self.finished_at = Some(now);
            }
            Event::Failed(msg) => {
                self.status = Status::Stopped;
                self.exit_code = Some(128);
                self.error = Some(msg);
                self.finished_at = Some(now);
            }
        }
    }
}

pub enum Event {
    Created { pid: i32 },
    Started,
    Exited { code: i32, oom_killed: bool },
    Failed(String),
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

pub fn write_atomic(dir: &Path, state: &ContainerState) -> std::io::Result<()> {
    let tmp = dir.join(".state.json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(state).map_err(std::io::Error::other)?)?;
    // No fsync: the file must survive process death, not power loss, and fsync would
    // dominate container start latency.
    drop(f);
    std::fs::rename(tmp, dir.join(STATE_FILE))
}

/// Whether `labels` carry every `(key, value)` of `wanted` (CRI's label selector).
pub fn has_labels<K: AsRef<str>, V: AsRef<str>>(
    labels: &std::collections::BTreeMap<String, String>,
    wanted: &[(K, V)],
) -> bool {
    wanted
        .iter()
        .all(|(k, v)| labels.get(k.as_ref()).is_some_and(|l| l == v.as_ref()))
}

pub fn read(dir: &Path) -> std::io::Result<ContainerState> {
    let bytes = std::fs::read(dir.join(STATE_FILE))?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}

/// A just-created container `id` of image busybox, for tests.
#[cfg(test)]
pub(super) fn for_test(id: &str) -> ContainerState {
    ContainerState {
        id: id.into(),
        status: Status::Created,
        pid: 0,
        shim_pid: 1,
        exit_code: None,
        oom_killed: false,
        created_at: now_rfc3339(),
        started_at: None,
        finished_at: None,
        error: None,
        image: "busybox".into(),
        log_path: "/l".into(),
        runtime: "embedded".into(),
        labels: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContainerState {
        for_test("a")
    }

    #[test]
    fn exit_is_recorded_and_survives_a_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sample();
        s.transition(Event::Started);
        s.transition(Event::Exited {
            code: 137,
            oom_killed: true,
        });
        write_atomic(dir.path(), &s).unwrap();
        let back = read(dir.path()).unwrap();
        assert_eq!(back.status, Status::Stopped);
        assert_eq!(back.exit_code, Some(137));
        assert!(back.oom_killed && back.finished_at.is_some());
        assert!(!dir.path().join(".state.json.tmp").exists());
    }
}
