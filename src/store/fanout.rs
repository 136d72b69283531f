//! Live fan-out of durable events to watchers, one broadcast channel per watched prefix.
//!
//! With one channel for the whole store every watcher woke for every write (a node's Lease
//! renewal woke each kubelet's pod watch); here a write wakes only the watchers whose prefix
//! holds its key. Watchers of the same prefix (a hundred kubelets watching pods) share one
//! channel.
//!
//! A prefix's events can also be split among *shards* by a [`Route`] (a hundred kubelets
//! each watching the pods bound to it): a sharded channel gets only the events its shard
//! value names, so a pod change wakes its node's kubelet and no other. The route must name
//! every shard whose watchers could be shown the event (both the old and the new object's
//! value); the watchers still filter what they get.
//!
//! Invariant: each message carries the revision of the message sent before it on the same
//! channel (`prev`), or the durable revision when the channel was made, so a watcher knows
//! it missed nothing of its prefix (or shard) when `prev` is at or below its position. A
//! channel is made and fed under one lock, after `durable` is raised, so the revision it
//! starts from is covered by the log a new watcher reads.

use std::borrow::Cow;
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

impl Channel {
    fn send(&mut self, event: &Arc<Event>) {
        if event.revision > self.last {
            // An error only means the last receiver just went.
            let _ = self.tx.send(Live {
                prev: self.last,
                event: event.clone(),
            });
            self.last = event.revision;
        }
    }
}

/// How the events under a prefix are split among shards: the shard values an event
/// belongs to (at most two: the object's before and after the write). A `fn` so that the
/// store stays ignorant of what the values mean; `name` tells routes apart. Values are
/// borrowed from the event where they can be (a key segment, an unescaped JSON string).
pub struct Route {
    pub name: &'static str,
    pub shards: for<'a> fn(&'a Event) -> [Option<Cow<'a, str>>; 2],
}

/// A watcher's share of its prefix: the events `route` sends to `value`.
#[derive(Clone)]
pub struct Shard {
    pub route: &'static Route,
    pub value: String,
}

/// The sharded channels of one prefix and route.
struct ShardGroup {
    route: &'static Route,
    channels: HashMap<String, Channel>,
}

#[derive(Default)]
struct Channels {
    /// Prefix → its channel.
    whole: HashMap<String, Channel>,
    /// (prefix, route name) → its shards' channels.
    sharded: HashMap<(String, &'static str), ShardGroup>,
}

pub(super) struct Fanout {
    /// `None` once the store is closed (receivers then see `Closed`).
    channels: Mutex<Option<Channels>>,
    /// Every event at or below it has been sent to every channel its key belongs to.
    published: AtomicU64,
    /// Messages a channel buffers per receiver before that receiver lags.
    capacity: usize,
}

impl Fanout {
    pub fn new(capacity: usize, revision: u64) -> Fanout {
        Fanout {
            channels: Mutex::new(Some(Channels::default())),
            published: AtomicU64::new(revision),
            capacity: capacity.max(1),
        }
    }

    /// A receiver of the events under `prefix` (only those `shard` gets, if given);
    /// `durable` is read under the lock, so a new channel starts from a revision the log
    /// already holds.
    pub fn subscribe(
        &self,
        prefix: &str,
        shard: Option<&Shard>,
        durable: impl FnOnce() -> u64,
    ) -> Result<broadcast::Receiver<Live>, StoreError> {
        let mut guard = self.channels.lock();
        let channels = guard.as_mut().ok_or(StoreError::Closed)?;
        let map = match shard {
            None => &mut channels.whole,
            Some(shard) => {
                &mut channels
                    .sharded
                    .entry((prefix.to_owned(), shard.route.name))
                    .or_insert_with(|| ShardGroup {
                        route: shard.route,
                        channels: HashMap::new(),
                    })
                    .channels
            }
        };
        let key = shard.map_or(prefix, |s| s.value.as_str());
        if let Some(c) = map.get(key) {
            return Ok(c.tx.subscribe());
        }
        let (tx, rx) = broadcast::channel(self.capacity);
        map.insert(
            key.to_owned(),
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
            channels.whole.retain(|_, c| c.tx.receiver_count() > 0);
            channels.sharded.retain(|_, g| {
                g.channels.retain(|_, c| c.tx.receiver_count() > 0);
                !g.channels.is_empty()
            });
            for entry in entries {
                let ev = &entry.event;
                for (prefix, c) in channels.whole.iter_mut() {
                    if ev.key.starts_with(prefix.as_str()) {
                        c.send(ev);
                    }
                }
                for ((prefix, _), group) in channels.sharded.iter_mut() {
                    if !ev.key.starts_with(prefix.as_str()) {
                        continue;
                    }
                    let [first, second] = (group.route.shards)(ev);
                    let second = second.filter(|s| Some(s) != first.as_ref());
                    for value in [first, second].into_iter().flatten() {
                        if let Some(c) = group.channels.get_mut(value.as_ref()) {
                            c.send(ev);
                        }
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
