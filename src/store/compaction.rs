//! Trims the event log: periodically, when the log grows past about twice the configured
//! history, and on request. A periodic run also drops everything the previous periodic run
//! had already seen, as kube-apiserver's compactor does with etcd: history (and with it
//! watch resumption and list continue tokens) lasts between one and two intervals
//! however few writes there are.
//!
//! Invariant: the compacted revision is recorded (and flushed) before any entry at or below it
//! is deleted, so the log always holds every revision above the recorded mark; a watcher that
//! finds a hole re-reads the mark and reports `Compacted` instead of skipping events.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::codec::{self, META_COMPACTED};
use super::shared::Shared;
use super::StoreError;

/// Entries deleted per sled batch: small enough that a batch never stalls writers for long.
const DELETE_CHUNK: usize = 256;

/// Extra entries tolerated above `keep` before a write triggers compaction early.
const MIN_SLACK: u64 = 1000;

pub(super) fn spawn(shared: Arc<Shared>, interval: Duration) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("store-compact".into())
        .spawn(move || run(&shared, interval))
}

pub(super) fn stop(shared: &Shared) {
    shared.compact_wake.stop();
}

/// Called after each write: wakes the compactor when the log exceeds its bound.
pub(super) fn kick_if_log_too_long(shared: &Shared, revision: u64) {
    let keep = shared.keep_revisions;
    let bound = keep.saturating_add(keep.max(MIN_SLACK));
    if revision.saturating_sub(shared.compacted_revision()) <= bound {
        return;
    }
    shared.compact_wake.kick();
}

fn run(shared: &Shared, interval: Duration) {
    // The revision the previous periodic run saw: the next one compacts at least to it.
    let mut seen_at_last_tick = shared.durable_revision();
    loop {
        // An interval too large for the clock just means "only when kicked".
        let woke = shared
            .compact_wake
            .wait(Instant::now().checked_add(interval));
        if woke.stop {
            return;
        }
        let durable = shared.durable_revision();
        let keep = if woke.timed_out {
            shared
                .keep_revisions
                .min(durable.saturating_sub(seen_at_last_tick))
        } else {
            shared.keep_revisions
        };
        match compact(shared, keep) {
            Ok(_) => {}
            Err(StoreError::Closed) => return,
            Err(e) => tracing::warn!(error = %e, "store compaction failed"),
        }
        if woke.timed_out {
            seen_at_last_tick = durable;
        }
    }
}

/// Deletes log entries at or below `durable - keep_revisions`; returns the compacted
/// revision. It first lets sled catch up with every durable write: the flush below then
/// covers the mark, so a restart never finds the compacted revision above sled's revision.
pub(super) fn compact(shared: &Shared, keep_revisions: u64) -> Result<u64, StoreError> {
    let _one_at_a_time = shared.compaction_lock.lock();
    shared.check_health()?;
    let durable = shared.durable_revision();
    shared.wait_in_sled(durable)?;
    let target = durable.saturating_sub(keep_revisions);
    let old = shared.compacted_revision();
    if target <= old {
        return Ok(old);
    }
    shared
        .db
        .insert(META_COMPACTED, &codec::encode_u64(target))?;
    shared.flush_db()?;
    shared.compacted.store(target, Ordering::SeqCst);
    let mut deleted = 0usize;
    loop {
        let keys = shared
            .db
            .range(codec::event_key(0)..=codec::event_key(target))
            .keys()
            .take(DELETE_CHUNK)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            break;
        }
        deleted += keys.len();
        let mut batch = sled::Batch::default();
        for k in keys {
            batch.remove(k);
        }
        shared.db.apply_batch(batch)?;
    }
    tracing::debug!(compacted = target, deleted, "store event log compacted");
    Ok(target)
}
