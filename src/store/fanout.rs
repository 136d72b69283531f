//! Live fan-out of durable events to watchers, one broadcast channel per watched prefix.
//!
//! With one channel for the whole store every watcher woke for every write (a node's Lease
//! renewal woke each kubelet's pod watch); here a write wakes only the watchers whose prefix
//! holds its key. Watchers of the same prefix (a hundred kubelets watching pods) share one
//! channel.
//!
//! Invariant: each message carries the revision of the message sent before it on the same
//! channel (`prev`), or the durable revision when the channel was made, so a watcher knows
//! it missed nothing of its prefix when `prev` is at or below its position. A channel is
//! made and fed under one lock, after `durable` is raised, so the revision it starts from
//! is covered by the log a new watcher reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::wal::Entry;
use super::{Event, StoreError};

/// One live event: the previous revision sent on its channel, and the event.
#[derive(Clone)]
pub(super) struct Live {
    pub prev: u64,
    pub event: Arc<Event>,
}

struct Channel {
    tx: broadcast::Sender<Live>,
    /// Every event of this prefix at or below it was sent, or predates the channel.
    last: u64,
}

pub(super) struct Fanout {
    /// Prefix → its channel; `None` once the store is closed (receivers then see `Closed`).
    channels: Mutex<Option<HashMap<String, Channel>>>,
    /// Every event at or below it has been sent to every channel its key belongs to.
    published: AtomicU64,
    /// Messages a channel buffers per receiver before that receiver lags.
    capacity: usize,
}

impl Fanout {
    pub fn new(capacity: usize, revision: u64) -> Fanout {
        Fanout {
            channels: Mutex::new(Some(HashMap::new())),
            published: AtomicU64::new(revision),
            capacity: capacity.max(1),
        }
    }

    /// A receiver of the events under `prefix`; `durable` is read under the lock, so a
    /// new channel starts from a revision the log already holds.
    pub fn subscribe(
        &self,
        prefix: &str,
        durable: impl FnOnce() -> u64,
    ) -> Result<broadcast::Receiver<Live>, StoreError> {
        let mut guard = self.channels.lock();
        let channels = guard.as_mut().ok_or(StoreError::Closed)?;
        if let Some(c) = channels.get(prefix) {
            return Ok(c.tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(self.capacity);
        channels.insert(
            prefix.to_owned(),
            Channel {
                tx,
                last: durable(),
            },
        );
        Ok(rx)
    }

    /// Sends each entry to the channels whose prefix holds its key (entries in revision
    /// order, already durable); drops channels nobody receives any more.
    pub fn publish(&self, entries: &[Entry]) {
        let Some(last) = entries.last() else {
            return;
        };
        let mut guard = self.channels.lock();
        if let Some(channels) = guard.as_mut() {
            channels.retain(|_, c| c.tx.receiver_count() > 0);
            for entry in entries {
                let ev = &entry.event;
                for (prefix, c) in channels.iter_mut() {
                    if ev.revision > c.last && ev.key.starts_with(prefix.as_str()) {
                        // An error only means the last receiver just went.
                        let _ = c.tx.send(Live {
                            prev: c.last,
                            event: ev.clone(),
                        });
                        c.last = ev.revision;
                    }
                }
            }
        }
        self.published.store(last.revision(), Ordering::Release);
    }

    /// The revision through which every event has been sent.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// Ends every channel: receivers drain what was sent, then see `Closed`.
    pub fn close(&self) {
        self.channels.lock().take();
    }
}
