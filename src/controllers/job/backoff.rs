//! Pod failure backoff: after `n` failures since the last success a Job waits
//! `base * 2^(n-1)` (capped) from the last failure before it creates a replacement pod
//! (upstream: 10 s doubling to 6 min), and with `backoffLimitPerIndex` the same per index.
//!
//! Invariant: a failed pod enters the record once: the record is advanced only with pods
//! not yet counted in the Job's status, and stored only once those are written there.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

/// Upstream's `DefaultJobPodFailureBackOff`.
pub const DEFAULT_BASE: Duration = Duration::from_secs(10);
/// Upstream's `MaxJobPodFailureBackOff`.
pub const DEFAULT_MAX: Duration = Duration::from_secs(360);

/// The base and cap of the backoff.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            base: DEFAULT_BASE,
            max: DEFAULT_MAX,
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let mut d = self.base;
        for _ in 1..failures {
            d = d.saturating_mul(2);
            if d >= self.max {
                return self.max;
            }
        }
        d.min(self.max)
    }

    /// How long from `now` until a pod may be created after `failures` failures, the last
    /// at `last_failure`.
    pub fn remaining(
        &self,
        failures: u32,
        last_failure: Option<Timestamp>,
        now: Timestamp,
    ) -> Duration {
        let Some(last) = last_failure else {
            return Duration::ZERO;
        };
        let elapsed = super::super::clock::until(last, now);
        self.delay(failures).saturating_sub(elapsed)
    }
}

/// Failures since the last success of one Job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    pub failures_after_last_success: u32,
    pub last_failure: Option<Timestamp>,
}

impl Record {
    /// The record after newly finished pods (each seen for the first time).
    pub fn advance(self, new_succeeded: &[&Pod], new_failed: &[&Pod]) -> Record {
        let mut failed: Vec<Timestamp> = new_failed.iter().map(|p| finished_at(p)).collect();
        failed.sort();
        let last_success = new_succeeded.iter().map(|p| finished_at(p)).max();
        match last_success {
            None if failed.is_empty() => self,
            None => Record {
                failures_after_last_success: self.failures_after_last_success + failed.len() as u32,
                last_failure: failed.last().copied(),
            },
            Some(success) => {
                let after: Vec<&Timestamp> = failed.iter().filter(|t| **t > success).collect();
                Record {
                    failures_after_last_success: after.len() as u32,
                    last_failure: after.last().map(|t| **t),
                }
            }
        }
    }
}

/// The records of every Job this controller saw fail, by `ns/name`.
#[derive(Default)]
pub struct Store(Mutex<HashMap<String, Record>>);

impl Store {
    pub fn get(&self, key: &str) -> Record {
        self.0.lock().get(key).copied().unwrap_or_default()
    }

    pub fn set(&self, key: &str, r: Record) {
        let mut m = self.0.lock();
        if r == Record::default() {
            m.remove(key);
        } else {
            m.insert(key.to_owned(), r);
        }
    }

    pub fn forget(&self, key: &str) {
        self.0.lock().remove(key);
    }
}

/// When a pod finished: its containers' last termination, else the time it stopped being
/// ready, else its deletion, else its creation.
pub fn finished_at(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let from_containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let ready_false = || {
        status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| c.type_ == "Ready" && c.status == "False")
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    };
    from_containers
        .or_else(ready_false)
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_finished(at: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "status": {"containerStatuses": [{"name": "a", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 1, "finishedAt": at}}}]}
        }))
        .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn delays_double_from_ten_seconds_up_to_six_minutes() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, vec![0, 10, 20, 40, 80, 160, 320, 360]);
        assert_eq!(b.delay(50), DEFAULT_MAX);
    }

    #[test]
    fn remaining_time_counts_from_the_last_failure() {
        let b = Backoff::default();
        let last = ts("2026-01-01T00:00:00Z");
        assert_eq!(
            b.remaining(2, Some(last), ts("2026-01-01T00:00:05Z")),
            Duration::from_secs(15)
        );
        assert_eq!(
            b.remaining(2, Some(last), ts("2026-01-01T00:01:00Z")),
            Duration::ZERO
        );
        assert_eq!(b.remaining(0, None, last), Duration::ZERO);
    }

    #[test]
    fn a_success_resets_the_failures_before_it() {
        let f1 = pod_finished("2026-01-01T00:00:01Z");
        let f2 = pod_finished("2026-01-01T00:00:02Z");
        let s = pod_finished("2026-01-01T00:00:03Z");
        let f3 = pod_finished("2026-01-01T00:00:04Z");
        let r = Record::default().advance(&[], &[&f1, &f2]);
        assert_eq!(r.failures_after_last_success, 2);
        assert_eq!(r.last_failure, Some(ts("2026-01-01T00:00:02Z")));
        let r = r.advance(&[&s], &[&f3]);
        assert_eq!(r.failures_after_last_success, 1);
        assert_eq!(r.last_failure, Some(ts("2026-01-01T00:00:04Z")));
        assert_eq!(r.advance(&[&s], &[]), Record::default());
    }
}
