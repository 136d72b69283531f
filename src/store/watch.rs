//! Watchers: each delivers every event after its start revision whose key has its prefix, in
//! revision order, exactly once, or ends with an error.
//!
//! A watcher is either catching up (reading the persisted log) or live (reading its prefix's
//! channel of the fan-out fed by the flusher), like etcd's unsynced/synced watchers. It
//! subscribes before reading how far the log is durable, so every event past the log it read
//! arrives live; live events at or below its position are skipped, and a gap (a message
//! whose predecessor on the channel is past the position) or a `Lagged` sends it back to the
//! log. Its position only moves forward.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::fanout::{Live, Shard};
use super::shared::Shared;
use super::{Event, StoreError};

/// Log entries read per catch-up step.
const CATCH_UP_CHUNK: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    CatchingUp,
    Live,
    Ended,
}

/// A stream of events; see [`super::Store::watch`]. Dropping it frees its buffers and its
/// place in the broadcast.
pub struct Watcher {
    shared: Arc<Shared>,
    prefix: String,
    /// Only this shard's live events (the log still gives the whole prefix).
    shard: Option<Shard>,
    position: u64,
    mode: Mode,
    live: broadcast::Receiver<Live>,
    /// Log entries read but not yet handed out; `None` = filtered out by the prefix.
    backlog: VecDeque<(u64, Option<Event>)>,
    /// Times it went back to the log after lagging or a gap.
    resyncs: u64,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("prefix", &self.prefix)
            .field("position", &self.position)
            .field("mode", &self.mode)
            .finish()
    }
}

impl Watcher {
    pub(super) fn new(
        shared: Arc<Shared>,
        prefix: &str,
        shard: Option<Shard>,
        after_revision: u64,
    ) -> Result<Watcher, StoreError> {
        shared.check_health()?;
        let live = shared.subscribe(prefix, shard.as_ref())?;
        let compacted = shared.compacted_revision();
        if after_revision < compacted {
            return Err(StoreError::Compacted {
                requested: after_revision,
                compacted,
            });
        }
        Ok(Watcher {
            shared,
            prefix: prefix.to_owned(),
            shard,
            position: after_revision,
            mode: Mode::CatchingUp,
            live,
            backlog: VecDeque::new(),
            resyncs: 0,
        })
    }

    /// The highest revision this watcher has fully processed, including events its prefix
    /// (or shard) filtered out: a bookmark at this revision loses nothing.
    pub fn position(&mut self) -> u64 {
        self.advance_if_drained();
        self.position
    }

    /// A live watcher with nothing queued has seen everything published that was its own,
    /// so its position moves to `published`. Kept, not only reported: a quiet shard's
    /// watcher that later lags resyncs from here, not from its last own event, which
    /// compaction may have passed long ago (a needless 410 for its client).
    fn advance_if_drained(&mut self) {
        if self.mode == Mode::Live && self.backlog.is_empty() {
            // Read before looking at the channel: everything sent up to `published` is then
            // either still queued for this watcher or already handed out (or not ours).
            let published = self.shared.fanout.published();
            if self.live.is_empty() {
                self.position = self.position.max(published);
            }
        }
    }

    /// Times this watcher fell behind its live channel and went back to the log.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// The next matching event. `Some(Err(_))` ends the watch (`Compacted` if it fell behind
    /// compaction, `Closed` when the store shuts down); then `None`.
    ///
    /// Cancel-safe: dropping the future loses nothing, so it can sit in a `select!` with a
    /// bookmark timer.
    pub async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        loop {
            if let Some((revision, event)) = self.backlog.pop_front() {
                self.position = revision;
                match event {
                    Some(ev) => return Some(Ok(ev)),
                    None => continue,
                }
            }
            // Before waiting: a quiet shard's position keeps up with everyone's writes.
            self.advance_if_drained();
            match self.mode {
                Mode::Ended => return None,
                Mode::CatchingUp => {
                    if let Err(e) = self.catch_up_step() {
                        return Some(Err(self.end(e)));
                    }
                }
                Mode::Live => match self.live.recv().await {
                    Ok(Live { prev, event }) => {
                        if event.revision <= self.position {
                            continue;
                        }
                        if prev > self.position {
                            // Never expected (each channel carries every event of its
                            // prefix), but a missed event must come from the log, not be lost.
                            tracing::warn!(
                                rv = event.revision,
                                prev,
                                position = self.position,
                                "watcher saw a gap; catching up from the log"
                            );
                            if let Err(e) = self.resync() {
                                return Some(Err(self.end(e)));
                            }
                            continue;
                        }
                        self.position = event.revision;
                        return Some(Ok(Event::clone(&event)));
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(
                            missed,
                            position = self.position,
                            "watcher lagged; catching up from the log"
                        );
                        if let Err(e) = self.resync() {
                            return Some(Err(self.end(e)));
                        }
                    }
                    Err(RecvError::Closed) => return Some(Err(self.end(StoreError::Closed))),
                },
            }
        }
    }

    fn end(&mut self, e: StoreError) -> StoreError {
        self.mode = Mode::Ended;
        self.backlog.clear();
        e
    }

    /// Drops the live buffer and goes back to the log; the new subscription comes before the
    /// next read of the durable revision, which is what makes the hand-over gapless.
    fn resync(&mut self) -> Result<(), StoreError> {
        self.resyncs += 1;
        self.live = self.shared.subscribe(&self.prefix, self.shard.as_ref())?;
        self.mode = Mode::CatchingUp;
        Ok(())
    }

    /// Reads the next chunk of the log into the backlog, or switches to live when the log
    /// holds nothing newer than the position.
    fn catch_up_step(&mut self) -> Result<(), StoreError> {
        let durable = self.shared.durable_revision();
        if self.position >= durable {
            self.mode = Mode::Live;
            return Ok(());
        }
        let entries =
            self.shared
                .read_log(self.position + 1, durable, CATCH_UP_CHUNK, &self.prefix)?;
        // Read after the entries: compaction raises the mark before deleting, so a hole
        // caused by compaction is always reported as such.
        let compacted = self.shared.compacted_revision();
        if compacted > self.position {
            return Err(StoreError::Compacted {
                requested: self.position,
                compacted,
            });
        }
        if entries.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "event log ends at {} below durable revision {durable}",
                self.position
            )));
        }
        for (expected, (revision, _)) in (self.position + 1..).zip(&entries) {
            if *revision != expected {
                return Err(StoreError::Corrupt(format!(
                    "event log lacks revision {expected}"
                )));
            }
        }
        self.backlog.extend(entries);
        Ok(())
    }
}
