//! The wall clock time-driven controllers read (Job deadlines and pod backoff, CronJob
//! schedules, TTL-after-finished): the system clock in the server, a settable one in tests,
//! so a test can step over minutes of schedule without waiting for them.
//!
//! Invariant: a controller never reads the time any other way, so everything it decides
//! from the time follows the clock it was given.

use jiff::Timestamp;
use parking_lot::Mutex;
use std::sync::Arc;

/// Where a controller gets "now" from; cheap to clone.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Timestamp::now))
    }

    /// A clock that only moves when the returned handle moves it.
    pub fn manual(start: Timestamp) -> (Clock, ManualTime) {
        let t = Arc::new(Mutex::new(start));
        let read = t.clone();
        (Clock(Arc::new(move || *read.lock())), ManualTime(t))
    }

    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// Moves a [`Clock::manual`] clock.
#[derive(Clone)]
pub struct ManualTime(Arc<Mutex<Timestamp>>);

impl ManualTime {
    pub fn set(&self, t: Timestamp) {
        *self.0.lock() = t;
    }

    pub fn advance(&self, by: std::time::Duration) {
        let mut t = self.0.lock();
        *t = t
            .checked_add(jiff::SignedDuration::try_from(by).expect("a test's step fits"))
            .expect("a test's clock stays in range");
    }
}

/// `later - earlier` as a std duration, zero when `later` is not later.
pub fn until(earlier: Timestamp, later: Timestamp) -> std::time::Duration {
    let d = later.duration_since(earlier);
    std::time::Duration::try_from(d).unwrap_or_default()
}
