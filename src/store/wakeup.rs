//! The doorbell of a background store thread (flusher, applier, compactor): other threads
//! ring it or tell it to stop, and the thread sleeps until one of those or a deadline.
//!
//! Invariant: a kick is never lost: it stays set until a `wait` returns and reports it, so a
//! kick that lands while the thread is busy makes its next `wait` return at once.

use std::time::Instant;

use parking_lot::{Condvar, Mutex};

#[derive(Debug, Default)]
pub(super) struct Wakeup {
    state: Mutex<Flags>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct Flags {
    kicked: bool,
    stop: bool,
}

/// Why a [`Wakeup::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Woken {
    pub stop: bool,
    pub timed_out: bool,
}

impl Wakeup {
    pub(super) fn kick(&self) {
        let mut flags = self.state.lock();
        if !flags.kicked {
            flags.kicked = true;
            self.cv.notify_one();
        }
    }

    pub(super) fn stop(&self) {
        self.state.lock().stop = true;
        self.cv.notify_one();
    }

    /// Sleeps until kicked, stopped, or `deadline`; consumes the kick.
    pub(super) fn wait(&self, deadline: Option<Instant>) -> Woken {
        let mut flags = self.state.lock();
        let mut timed_out = false;
        while !flags.kicked && !flags.stop && !timed_out {
            match deadline {
                Some(d) => timed_out = self.cv.wait_until(&mut flags, d).timed_out(),
                None => self.cv.wait(&mut flags),
            }
        }
        flags.kicked = false;
        Woken {
            stop: flags.stop,
            timed_out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_kick_before_the_wait_is_not_lost_and_is_consumed() {
        let w = Wakeup::default();
        w.kick();
        let soon = Some(Instant::now() + Duration::from_millis(50));
        assert_eq!(
            w.wait(soon),
            Woken {
                stop: false,
                timed_out: false
            }
        );
        assert_eq!(
            w.wait(soon),
            Woken {
                stop: false,
                timed_out: true
            }
        );
    }

    #[test]
    fn stop_wakes_a_waiter_from_another_thread_and_sticks() {
        let w = std::sync::Arc::new(Wakeup::default());
        let w2 = w.clone();
        let t = std::thread::spawn(move || w2.wait(None));
        std::thread::sleep(Duration::from_millis(20));
        w.stop();
        assert!(t.join().expect("waiter").stop);
        assert!(w.wait(None).stop, "stop stays set");
    }
}
