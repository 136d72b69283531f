//! The scheduling queue (upstream's `PriorityQueue`): pods wait in *active* (ordered by
//! `spec.priority`, then creation time), in *backoff* after a failed attempt (1 s doubling
//! per attempt up to 10 s), or in *unschedulable* until a cluster change may help them
//! (one that can undo a rejection by a plugin that rejected them: [`hints`]), or 5
//! minutes pass.
//!
//! Unlike upstream since 1.33 (`SchedulerPopFromBackoffQ`), a pod backing off is not tried
//! early when nothing is active: with cycles this fast, a change that trickles in (100
//! nodes uncordoned one by one) then re-attempted every waiting pod once per change, each
//! failure writing an event and a status, and a 3,000-pod backlog bound at ~300 pods/s
//! instead of ~2,500.
//!
//! Invariants: a pod is in at most one of these places, or *in flight* (popped and being
//! scheduled); a change seen while a pod is in flight that may help it sends it to backoff
//! rather than unschedulable, so the change is not missed. Time is passed in, so the queue
//! is a pure data structure.

use super::hints::{self, Plugins};

use k8s_openapi::api::core::v1::Pod;
use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's `podMaxInUnschedulablePodsDuration`.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    InFlight,
}

struct Entry {
    pod: Arc<Pod>,
    place: Place,
    attempts: u32,
    /// Bumped on every move into active, so stale heap entries are recognized.
    generation: u64,
    /// The plugins that rejected the pod at its last attempt.
    rejectors: Plugins,
    /// What the changes seen while the pod was in flight may help.
    helped_in_flight: Plugins,
}

#[derive(PartialEq, Eq)]
struct Ranked {
    priority: i32,
    created: i64,
    seq: u64,
    key: String,
    generation: u64,
}

impl Ord for Ranked {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority
            .cmp(&o.priority)
            .then(o.created.cmp(&self.created))
            .then(o.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// A pod's backoff after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

#[derive(Default)]
pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<Ranked>,
    backoff: BTreeSet<(Instant, String)>,
    seq: u64,
    /// When unschedulable pods were last checked for the 5-minute limit: a full scan per
    /// pop would make a long queue quadratic.
    last_flush: Option<Instant>,
}

/// How often the 5-minute limit is checked.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

fn created_nanos(pod: &Pod) -> i64 {
    pod.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_nanosecond() as i64)
        .unwrap_or(0)
}

impl SchedulingQueue {
    fn push_active(&mut self, key: &str) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.place = Place::Active;
        e.generation += 1;
        self.seq += 1;
        self.active.push(Ranked {
            priority: super::cache::priority(&e.pod),
            created: created_nanos(&e.pod),
            seq: self.seq,
            key: key.to_owned(),
            generation: e.generation,
        });
    }

    fn leave(&mut self, key: &str) {
        if let Some(Place::Backoff(at)) = self.entries.get(key).map(|e| e.place) {
            self.backoff.remove(&(at, key.to_owned()));
        }
    }

    /// A pending pod was created or changed: it (re)enters active unless it is in flight
    /// or backing off (a change to a pod marked unschedulable may make it schedulable).
    pub fn add_or_update(&mut self, key: &str, pod: Arc<Pod>, now: Instant) {
        match self.entries.get_mut(key) {
            None => {
                self.entries.insert(
                    key.to_owned(),
                    Entry {
                        pod,
                        place: Place::Active,
                        attempts: 0,
                        generation: 0,
                        rejectors: Plugins::NONE,
                        helped_in_flight: Plugins::NONE,
                    },
                );
                self.push_active(key);
            }
            Some(e) => {
                let changed_spec =
                    e.pod.spec != pod.spec || e.pod.metadata.labels != pod.metadata.labels;
                e.pod = pod;
                let place = e.place;
                if let (Place::Unschedulable(_), true) = (place, changed_spec) {
                    self.requeue_after_backoff(key, now);
                }
            }
        }
    }

    pub fn delete(&mut self, key: &str) {
        self.leave(key);
        self.entries.remove(key);
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The next pod to schedule, if one is active (after promoting expired backoffs).
    pub fn pop(&mut self, now: Instant) -> Option<Arc<Pod>> {
        self.promote(now);
        while let Some(r) = self.active.pop() {
            let Some(e) = self.entries.get_mut(&r.key) else {
                continue;
            };
            if e.place != Place::Active || e.generation != r.generation {
                continue;
            }
            e.place = Place::InFlight;
            e.helped_in_flight = Plugins::NONE;
            return Some(e.pod.clone());
        }
        None
    }

    fn promote(&mut self, now: Instant) {
        while let Some((at, key)) = self.backoff.first().cloned() {
            if at > now {
                break;
            }
            self.backoff.pop_first();
            self.push_active(&key);
        }
        if self
            .last_flush
            .is_some_and(|t| now.saturating_duration_since(t) < FLUSH_EVERY)
        {
            return;
        }
        self.last_flush = Some(now);
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.place, Place::Unschedulable(since) if now.duration_since(since) >= MAX_UNSCHEDULABLE))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.requeue_after_backoff(&k, now);
        }
    }

    fn requeue_after_backoff(&mut self, key: &str, now: Instant) {
        self.leave(key);
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        let until = e.last_failure_backoff_end(now).filter(|until| *until > now);
        match until {
            Some(until) => {
                e.place = Place::Backoff(until);
                self.backoff.insert((until, key.to_owned()));
            }
            None => self.push_active(key),
        }
    }

    /// The in-flight pod could not be placed, for `rejectors`: unschedulable until a change
    /// that may help (backoff instead when one came while it was being scheduled).
    pub fn unschedulable(&mut self, key: &str, rejectors: Plugins, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.attempts += 1;
        e.rejectors = rejectors;
        if hints::may_help(e.helped_in_flight, rejectors) {
            let until = now + backoff(e.attempts);
            e.place = Place::Backoff(until);
            self.backoff.insert((until, key.to_owned()));
        } else {
            e.place = Place::Unschedulable(now);
        }
    }

    /// The in-flight pod hit an error (e.g. binding failed): retry after backoff.
    pub fn error(&mut self, key: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.attempts += 1;
        let until = now + backoff(e.attempts);
        e.place = Place::Backoff(until);
        self.backoff.insert((until, key.to_owned()));
    }

    /// The in-flight pod was placed: it leaves the queue.
    pub fn done(&mut self, key: &str) {
        if self
            .entries
            .get(key)
            .is_some_and(|e| e.place == Place::InFlight)
        {
            self.entries.remove(key);
        }
    }

    /// A cluster change that `helps` these plugins: the unschedulable pods it may help go
    /// to active, or to backoff if theirs has not expired.
    pub fn move_for(&mut self, helps: Plugins, now: Instant) {
        if helps.is_empty() {
            return;
        }
        let keys: Vec<String> = self
            .entries
            .iter_mut()
            .filter_map(|(k, e)| match e.place {
                Place::Unschedulable(_) if hints::may_help(helps, e.rejectors) => Some(k.clone()),
                Place::InFlight => {
                    e.helped_in_flight |= helps;
                    None
                }
                _ => None,
            })
            .collect();
        for k in keys {
            self.requeue_after_backoff(&k, now);
        }
    }

    /// When the queue next needs attention without any event (a backoff expiring or the
    /// unschedulable timeout).
    pub fn next_wakeup(&self) -> Option<Instant> {
        let b = self.backoff.first().map(|(at, _)| *at);
        let u = self
            .entries
            .values()
            .filter_map(|e| match e.place {
                Place::Unschedulable(since) => Some(since + MAX_UNSCHEDULABLE),
                _ => None,
            })
            .min()
            .map(|due| match self.last_flush {
                Some(t) => due.max(t + FLUSH_EVERY),
                None => due,
            });
        match (b, u) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Entry {
    /// The end of the backoff earned by the last failure, measured from now (upstream
    /// measures from the last attempt; the queue does not keep that time).
    fn last_failure_backoff_end(&self, now: Instant) -> Option<Instant> {
        if self.attempts == 0 {
            return None;
        }
        match self.place {
            Place::Unschedulable(since) => Some(since + backoff(self.attempts)),
            Place::Backoff(until) => Some(until),
            _ => Some(now),
        }
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
