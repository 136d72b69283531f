//! Per-key exponential backoff as upstream's `flowcontrol.Backoff`: CrashLoopBackOff
//! (10 s doubling to 5 min) and image pull back-off use it.
//!
//! Invariant: an entry is reset when the event comes more than twice the maximum after
//! the entry's last update (a container that ran for 10 minutes starts again at 10 s).
//! Time is tokio's clock, so tests run the whole state machine on a paused clock.

use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

pub const CRASH_LOOP_INITIAL: Duration = Duration::from_secs(10);
pub const CRASH_LOOP_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
}

#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    pub fn crash_loop() -> Backoff {
        Backoff::new(CRASH_LOOP_INITIAL, CRASH_LOOP_MAX)
    }

    fn expired(&self, e: &Entry, event: Instant) -> bool {
        event.saturating_duration_since(e.last_update) > self.max * 2
    }

    /// Records a retry at `now` for an event at `event`: doubles the delay (up to the
    /// maximum) or starts over at the initial delay.
    pub fn next(&mut self, key: &str, event: Instant, now: Instant) {
        let backoff = match self.entries.get(key) {
            Some(e) if !self.expired(e, event) => (e.backoff * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(
            key.to_owned(),
            Entry {
                backoff,
                last_update: now,
            },
        );
    }

    /// `Some(delay)` while the retry after `event` must still wait; `delay` is the current
    /// back-off (what upstream prints), the wait ends at `event + delay`.
    pub fn in_backoff_since(&self, key: &str, event: Instant, now: Instant) -> Option<Duration> {
        let e = self.entries.get(key)?;
        if self.expired(e, event) {
            return None;
        }
        (now.saturating_duration_since(event) < e.backoff).then_some(e.backoff)
    }

    /// `Some(wait left)` while `now` is within the current back-off of the entry's last
    /// update (upstream's `IsInBackOffSinceUpdate`: image pulls retry once it has passed).
    pub fn in_backoff_since_update(&self, key: &str, now: Instant) -> Option<Duration> {
        let e = self.entries.get(key)?;
        let since = now.saturating_duration_since(e.last_update);
        (since < e.backoff).then(|| e.backoff - since)
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }
}

/// Go's `time.Duration.String()` for whole seconds (`10s`, `1m20s`, `5m0s`), as upstream's
/// messages print back-offs.
pub fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 && s < 60 {
        return format!("{}s", (d.as_millis() as f64) / 1000.0);
    }
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_loop_backoff_doubles_from_10s_to_5m_and_resets_after_10m_running() {
        let mut b = Backoff::crash_loop();
        let t0 = Instant::now();
        let mut event = t0;
        let mut seen = Vec::new();
        for _ in 0..7 {
            assert_eq!(
                b.in_backoff_since("c", event, event + Duration::from_secs(400)),
                None
            );
            b.next("c", event, event);
            let d = b.in_backoff_since("c", event, event).expect("in backoff");
            seen.push(go_duration(d));
            // Still backing off just before the delay, free just after.
            assert!(b
                .in_backoff_since("c", event, event + d - Duration::from_millis(1))
                .is_some());
            assert!(b.in_backoff_since("c", event, event + d).is_none());
            event += d + Duration::from_secs(1);
        }
        assert_eq!(
            seen,
            ["10s", "20s", "40s", "1m20s", "2m40s", "5m0s", "5m0s"]
        );
        // A container that ran 10 minutes and more since the last restart starts over.
        let late = event + Duration::from_secs(601);
        assert!(b.in_backoff_since("c", late, late).is_none());
        b.next("c", late, late);
        assert_eq!(
            b.in_backoff_since("c", late, late),
            Some(CRASH_LOOP_INITIAL)
        );
    }

    #[test]
    fn go_durations_print_like_go() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(3661)), "1h1m1s");
    }
}
