//! Group commit: one thread appends every write queued so far to the WAL and syncs it once,
//! then marks them durable, wakes their writers, publishes their events to watchers and hands
//! them to the applier.
//!
//! Invariants: `durable` is raised only after a successful WAL sync that covered it, and
//! before the events up to it are published (a watcher that reads `durable` after subscribing gets
//! every later event live). Events are published once each, in revision order, by this one
//! thread, with non-blocking sends, so writers never wait on watchers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::applier;
use super::shared::{Health, Shared};
use super::wal::Entry;
use super::StoreError;

/// A write arriving this soon after the last sync means the store is busy...
const BUSY_WINDOW: Duration = Duration::from_millis(1);
/// ...and then the flusher waits this long for more writes to join the group. Fewer, larger
/// syncs matter on disks that throttle I/O operations (this VM's does, every 100 ms).
const GROUP_WAIT: Duration = Duration::from_micros(200);

pub(super) fn spawn(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("store-flush".into())
        .spawn(move || run(&shared))
}

/// Called by a writer after raising `applied`.
pub(super) fn kick(shared: &Shared) {
    shared.flush_wake.kick();
}

pub(super) fn stop(shared: &Shared) {
    shared.flush_wake.stop();
}

fn run(shared: &Shared) {
    let mut last_sync = Instant::now() - BUSY_WINDOW;
    loop {
        // The kick is consumed before `applied` is read below: a write applied after
        // this point kicks again, so it is never left behind.
        let mut stopping = shared.flush_wake.wait(None).stop;
        // Under load, give the writers answered by the last sync a moment to send their
        // next writes, so that one sync serves them all.
        if !stopping && last_sync.elapsed() < BUSY_WINDOW {
            stopping = shared
                .flush_wake
                .wait(Some(Instant::now() + GROUP_WAIT))
                .stop;
        }
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
        last_sync = Instant::now();
    }
}

fn flush_to(shared: &Shared, target: u64) -> Result<(), StoreError> {
    let from = shared.durable_revision() + 1;
    let ready = shared
        .overlay
        .lock()
        .entries_between(from, target, usize::MAX);
    if ready.first().map(Entry::revision) != Some(from) || ready.len() as u64 != target + 1 - from {
        return Err(StoreError::Corrupt(format!(
            "writes {from}..={target} are not all queued for the WAL"
        )));
    }
    shared.wal.lock().append(&ready)?;
    shared.durable.store(target, Ordering::Release);
    shared.durability.send_modify(|d| d.revision = target);
    shared.fanout.publish(&ready);
    applier::kick(shared);
    Ok(())
}

/// Closes the writer gate, makes every applied write durable, ends the watchers, and lets
/// the applier finish.
fn finish(shared: &Shared) {
    let target = {
        let mut writer = shared.writer.lock();
        if writer.health == Health::Open {
            writer.health = Health::Closed;
        }
        shared.applied.load(Ordering::Acquire)
    };
    let flushed = if target > shared.durable_revision() {
        flush_to(shared, target)
    } else {
        Ok(())
    };
    match flushed {
        Ok(()) => shared.durability.send_modify(|d| {
            if d.health == Health::Open {
                d.health = Health::Closed;
            }
        }),
        Err(e) => fail(shared, &e),
    }
    shared.fanout.close();
    applier::stop(shared);
    tracing::debug!(rv = target, "store flusher stopped");
}

fn fail(shared: &Shared, e: &StoreError) {
    tracing::error!(error = %e, "store flush failed; refusing further work");
    shared.mark_failed(format!("flush: {e}").into());
    shared.fanout.close();
    // What is durable still goes to sled.
    applier::stop(shared);
}
