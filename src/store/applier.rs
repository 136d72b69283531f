//! Brings sled up to date with the durable writes in the background, and checkpoints: once
//! sled is flushed past a WAL segment, the segment is deleted.
//!
//! Invariants: only durable writes are applied (so whatever sled holds was acknowledged, or
//! is about to be); writes are applied in revision order, the revision counter after each
//! chunk, so sled always holds a prefix of the history up to its counter; a write leaves the
//! overlay only after sled has it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::codec::{self, META_REVISION};
use super::shared::Shared;
use super::wal::{Entry, Spare};
use super::StoreError;

/// Writes applied at a time. Small chunks, applied soon, spread sled's disk writes out; when
/// they came in large bursts the WAL's syncs queued behind them (measured: create p99
/// 6–7 ms with 512 per 50 ms, under 5 ms with 64 per 10 ms).
pub(super) const APPLY_CHUNK: usize = 64;

/// Revisions applied between checkpoints; bounds the WAL that a restart replays.
const CHECKPOINT_EVERY: u64 = 4096;

/// How long durable writes may wait to be applied together (reads see them meanwhile).
const APPLY_DELAY: Duration = Duration::from_millis(10);

/// A quiet store is checkpointed after this long, so an idle WAL does not linger.
const IDLE_CHECKPOINT: Duration = Duration::from_millis(500);

pub(super) fn spawn(shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("store-apply".into())
        .spawn(move || run(&shared))
}

/// Called by the flusher after raising `durable`.
pub(super) fn kick(shared: &Shared) {
    shared.apply_wake.kick();
}

/// Called by the flusher when it ends: apply what is durable, checkpoint, stop.
pub(super) fn stop(shared: &Shared) {
    shared.apply_wake.stop();
}

/// Writes `entries` (consecutive revisions) to sled, the revision counter last.
///
/// Not a `sled::Batch` on purpose: a batch holds sled's global write lock, stalling every
/// read on the request path meanwhile. Single writes are safe here because sled recovers a
/// prefix of its log: if the counter survives a crash so does everything before it, and
/// writes past it are rewritten identically from the WAL on open.
pub(super) fn write_to_sled(db: &sled::Db, entries: &[Entry]) -> Result<(), StoreError> {
    for e in entries {
        write_entry(db, e)?;
    }
    if let Some(last) = entries.last() {
        write_revision(db, last.revision())?;
    }
    Ok(())
}

/// Records that sled holds every write up to `revision`.
fn write_revision(db: &sled::Db, revision: u64) -> Result<(), StoreError> {
    db.insert(META_REVISION, &codec::encode_u64(revision))?;
    Ok(())
}

/// One write's record and event-log entry.
fn write_entry(db: &sled::Db, e: &Entry) -> Result<(), StoreError> {
    let rkey = codec::record_key(&e.event.key);
    match e.record() {
        Some(rec) => {
            db.insert(
                rkey,
                codec::encode_record(rec.mod_revision, rec.create_revision, &rec.value),
            )?;
        }
        None => {
            db.remove(rkey)?;
        }
    }
    db.insert(
        codec::event_key(e.revision()),
        codec::encode_event(&e.event)?,
    )?;
    Ok(())
}

/// Durable writes not yet in sled.
fn backlog(shared: &Shared) -> u64 {
    shared.durable_revision() - shared.sled_applied_revision()
}

/// Gives the WAL a zero-filled spare segment if it lacks one (see [`super::wal`]).
fn ensure_spare(shared: &Shared) -> Result<(), StoreError> {
    let dir = {
        let wal = shared.wal.lock();
        if !wal.needs_spare() {
            return Ok(());
        }
        wal.dir().to_owned()
    };
    let spare = Spare::create(&dir)?;
    shared.wal.lock().offer_spare(spare);
    Ok(())
}

fn run(shared: &Shared) {
    let mut checkpointed = shared.sled_applied_revision();
    loop {
        // Unapplied checkpoint work gives the sleep a deadline (the idle checkpoint).
        let idle_deadline = (checkpointed < shared.sled_applied_revision())
            .then(|| Instant::now() + IDLE_CHECKPOINT);
        let woken = shared.apply_wake.wait(idle_deadline);
        let (mut stopping, timed_out) = (woken.stop, woken.timed_out);
        // Let a few writes accumulate (see APPLY_CHUNK) rather than chase every group.
        let deadline = Instant::now() + APPLY_DELAY;
        while !stopping && !timed_out && backlog(shared) < APPLY_CHUNK as u64 {
            let more = shared.apply_wake.wait(Some(deadline));
            stopping = more.stop;
            if more.timed_out {
                break;
            }
        }
        let result = apply_all(shared, &mut checkpointed).and_then(|()| {
            if !stopping {
                ensure_spare(shared)?;
            }
            let behind = checkpointed < shared.sled_applied_revision();
            if behind && (stopping || timed_out) {
                checkpointed = checkpoint(shared)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            fail(shared, &e);
            return;
        }
        if stopping {
            tracing::debug!(rv = checkpointed, "store applier stopped");
            return;
        }
    }
}

/// Applies every durable write still in the overlay, checkpointing on the way.
fn apply_all(shared: &Shared, checkpointed: &mut u64) -> Result<(), StoreError> {
    loop {
        let chunk =
            shared
                .overlay
                .lock()
                .entries_between(0, shared.durable_revision(), APPLY_CHUNK);
        let Some(last) = chunk.last().map(Entry::revision) else {
            return Ok(());
        };
        for e in &chunk {
            // A list scan sees sled before or after each write (they are still in the
            // overlay, which the scan prefers, until retired below). One write at a time:
            // held for a whole chunk, it held every list up for milliseconds, and admission
            // lists on every create (quotas, limit ranges): creates/s fell 16%.
            let _moving = shared.sled_steady.write();
            write_entry(&shared.db, e)?;
        }
        write_revision(&shared.db, last)?;
        shared.overlay.lock().retire_through(last);
        shared.sled_applied.store(last, Ordering::Release);
        shared.applier_progress.notify_waiters();
        if last - *checkpointed >= CHECKPOINT_EVERY {
            *checkpointed = checkpoint(shared)?;
        }
    }
}

/// Flushes sled and deletes the WAL segments it now covers; returns the revision covered.
fn checkpoint(shared: &Shared) -> Result<u64, StoreError> {
    let through = shared.sled_applied_revision();
    let started = Instant::now();
    shared.flush_db()?;
    tracing::debug!(
        rv = through,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "store checkpoint"
    );
    let released = shared.wal.lock().release_through(through);
    for path in released {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(through)
}

fn fail(shared: &Shared, e: &StoreError) {
    tracing::error!(error = %e, "store applier failed; refusing further work");
    shared.mark_failed(format!("applying to sled: {e}").into());
}
