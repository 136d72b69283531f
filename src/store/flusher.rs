//! Group commit: one thread flushes sled (see [`super::disk`]) for every write applied so far, then marks
//! them durable, wakes their writers and publishes their events to watchers.
//!
//! Invariants: `durable` is raised only after a successful flush that covered it, and before
//! the events up to it are published (a watcher that reads `durable` after subscribing gets
//! every later event live). Events are published once each, in revision order, by this one
//! thread, with non-blocking sends, so writers never wait on watchers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use super::shared::{Health, Shared};
use super::{Event, StoreError};

#[derive(Debug, Default)]
pub(super) struct FlushCtl {
    /// A write was applied since the flusher last looked.
    pub wanted: bool,
    pub stop: bool,
}

pub(super) fn spawn(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("store-flush".into())
        .spawn(move || run(&shared))
}

/// Called by a writer after raising `applied`.
pub(super) fn kick(shared: &Shared) {
    shared.flush_ctl.lock().wanted = true;
    shared.flush_cv.notify_one();
}

pub(super) fn stop(shared: &Shared) {
    shared.flush_ctl.lock().stop = true;
    shared.flush_cv.notify_one();
}

fn run(shared: &Shared) {
    loop {
        let stopping = {
            let mut ctl = shared.flush_ctl.lock();
            while !ctl.wanted && !ctl.stop {
                shared.flush_cv.wait(&mut ctl);
            }
            // Cleared before reading `applied`: a write applied after this point sets it
            // again, so it is never left behind.
            ctl.wanted = false;
            ctl.stop
        };
        if stopping {
            finish(shared);
            return;
        }
        let target = shared.applied.load(Ordering::Acquire);
        if target <= shared.durable_revision() {
            continue;
        }
        if let Err(e) = flush_to(shared, target) {
            fail(shared, &e);
            return;
        }
    }
}

fn flush_to(shared: &Shared, target: u64) -> Result<(), StoreError> {
    shared.flush_db()?;
    shared.durable.store(target, Ordering::Release);
    let ready: Vec<Arc<Event>> = {
        let mut pending = shared.pending.lock();
        let n = pending.iter().take_while(|e| e.revision <= target).count();
        pending.drain(..n).collect()
    };
    shared.durability.send_modify(|d| d.revision = target);
    if let Some(tx) = shared.events.read().as_ref() {
        for ev in ready {
            // An error only means nobody is watching right now.
            let _ = tx.send(ev);
        }
    }
    Ok(())
}

/// Closes the writer gate, makes every applied write durable, then ends the watchers.
fn finish(shared: &Shared) {
    let target = {
        let mut writer = shared.writer.blocking_lock();
        if writer.health == Health::Open {
            writer.health = Health::Closed;
        }
        shared.applied.load(Ordering::Acquire)
    };
    let flushed = if target > shared.durable_revision() {
        flush_to(shared, target)
    } else {
        shared.flush_db()
    };
    match flushed {
        Ok(()) => shared.durability.send_modify(|d| {
            if d.health == Health::Open {
                d.health = Health::Closed;
            }
        }),
        Err(e) => fail(shared, &e),
    }
    shared.events.write().take();
    tracing::debug!(rv = target, "store flusher stopped");
}

fn fail(shared: &Shared, e: &StoreError) {
    tracing::error!(error = %e, "store flush failed; refusing further work");
    let msg: Arc<str> = format!("flush: {e}").into();
    shared.writer.blocking_lock().health = Health::Failed(msg.clone());
    shared
        .durability
        .send_modify(|d| d.health = Health::Failed(msg));
    shared.events.write().take();
}
