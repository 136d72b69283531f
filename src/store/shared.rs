//! State shared by `Store` handles, watchers and the background threads: the sled database,
//! the writer lock, the applied/durable/compacted revisions and the live event channel.
//!
//! Invariant: `applied` (last revision written to sled) only moves under the writer lock, and
//! `durable <= applied`. Records and events up to `durable` are on disk; reads never return
//! anything above `durable` (they wait for the flusher instead).

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock};
use tokio::sync::{broadcast, watch};

use super::codec::{self, META_COMPACTED, META_REVISION};
use super::compaction::{self, CompactCtl};
use super::disk::DiskSync;
use super::flusher::{self, FlushCtl};
use super::{Event, EventKind, Op, Page, Record, StoreConfig, StoreError};

/// Whether the store still takes work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Health {
    Open,
    Closed,
    Failed(Arc<str>),
}

impl Health {
    pub(super) fn check(&self) -> Result<(), StoreError> {
        match self {
            Health::Open => Ok(()),
            Health::Closed => Err(StoreError::Closed),
            Health::Failed(msg) => Err(StoreError::Failed(msg.to_string())),
        }
    }
}

/// What the flusher announces to waiting writers and readers.
#[derive(Debug, Clone)]
pub(super) struct Durability {
    pub revision: u64,
    pub health: Health,
}

/// Guarded by the writer lock, so that closing is ordered with writes: a write either lands
/// before the flusher's final flush or sees `Closed`.
pub(super) struct WriterState {
    pub health: Health,
}

pub(super) struct Shared {
    pub db: sled::Db,
    pub disk: DiskSync,
    pub writer: tokio::sync::Mutex<WriterState>,
    pub applied: AtomicU64,
    pub durable: AtomicU64,
    pub compacted: AtomicU64,
    /// Written but not yet durable events, in revision order; the flusher publishes them.
    pub pending: Mutex<VecDeque<Arc<Event>>>,
    /// Live fan-out to watchers; `None` once the store is closed.
    pub events: RwLock<Option<broadcast::Sender<Arc<Event>>>>,
    pub durability: watch::Sender<Durability>,
    pub flush_ctl: Mutex<FlushCtl>,
    pub flush_cv: Condvar,
    pub compact_ctl: Mutex<CompactCtl>,
    pub compact_cv: Condvar,
    /// Serialises compactions (background and explicit).
    pub compaction_lock: Mutex<()>,
    pub keep_revisions: u64,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    pub(super) fn open(cfg: &StoreConfig) -> Result<Arc<Shared>, StoreError> {
        let db = sled::Config::new()
            .path(&cfg.path)
            .cache_capacity(cfg.cache_capacity_bytes)
            // Our flusher flushes every acknowledged write; sled's own timer would only add
            // idle wake-ups.
            .flush_every_ms(None)
            .open()?;
        let disk = DiskSync::open(&cfg.path)?;
        let (revision, compacted) = recover(&db)?;
        let (events, _) = broadcast::channel(cfg.watch_buffer.max(1));
        let (durability, _) = watch::channel(Durability {
            revision,
            health: Health::Open,
        });
        let shared = Arc::new(Shared {
            db,
            disk,
            writer: tokio::sync::Mutex::new(WriterState {
                health: Health::Open,
            }),
            applied: AtomicU64::new(revision),
            durable: AtomicU64::new(revision),
            compacted: AtomicU64::new(compacted),
            pending: Mutex::new(VecDeque::new()),
            events: RwLock::new(Some(events)),
            durability,
            flush_ctl: Mutex::new(FlushCtl::default()),
            flush_cv: Condvar::new(),
            compact_ctl: Mutex::new(CompactCtl::default()),
            compact_cv: Condvar::new(),
            compaction_lock: Mutex::new(()),
            keep_revisions: cfg.compaction_keep_revisions,
            threads: Mutex::new(Vec::new()),
        });
        let spawned = flusher::spawn(shared.clone()).and_then(|flush| {
            shared.threads.lock().push(flush);
            compaction::spawn(shared.clone(), cfg.compaction_interval)
        });
        match spawned {
            Ok(compactor) => shared.threads.lock().push(compactor),
            Err(e) => {
                shared.request_stop();
                return Err(StoreError::Failed(format!("spawning store thread: {e}")));
            }
        }
        tracing::info!(path = %cfg.path.display(), rv = revision, compacted, "store opened");
        Ok(shared)
    }

    pub(super) fn durable_revision(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    pub(super) fn applied_revision(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    pub(super) fn compacted_revision(&self) -> u64 {
        self.compacted.load(Ordering::SeqCst)
    }

    pub(super) fn check_health(&self) -> Result<(), StoreError> {
        self.durability.borrow().health.check()
    }

    /// Runs the closure and writes its decision to sled (not yet durable).
    pub(super) async fn apply<F, T, E>(&self, key: &str, f: F) -> Result<(T, Option<u64>), E>
    where
        F: FnOnce(Option<&Record>, u64) -> Result<(Op, T), E>,
        E: From<StoreError>,
    {
        let mut writer = self.writer.lock().await;
        writer.health.check()?;
        let revision = self.applied.load(Ordering::Acquire) + 1;
        let rkey = codec::record_key(key);
        let current = match self.db.get(&rkey).map_err(StoreError::from)? {
            Some(raw) => Some(codec::decode_record(&rkey, &raw)?),
            None => None,
        };
        let (op, out) = f(current.as_ref(), revision)?;
        let mut batch = sled::Batch::default();
        let event = match (op, current) {
            (Op::None, _) | (Op::Delete { .. }, None) => return Ok((out, None)),
            (Op::Put(value), current) => {
                let create = current.as_ref().map_or(revision, |c| c.create_revision);
                batch.insert(rkey, codec::encode_record(revision, create, &value));
                Event {
                    revision,
                    kind: EventKind::Put,
                    key: key.to_owned(),
                    value,
                    prev_value: current.map(|c| c.value),
                }
            }
            (Op::Delete { tombstone }, Some(current)) => {
                batch.remove(rkey);
                Event {
                    revision,
                    kind: EventKind::Delete,
                    key: key.to_owned(),
                    value: tombstone,
                    prev_value: Some(current.value),
                }
            }
        };
        batch.insert(&codec::event_key(revision), codec::encode_event(&event)?);
        batch.insert(META_REVISION, &codec::encode_u64(revision));
        if let Err(e) = self.db.apply_batch(batch) {
            // sled may hold part of the batch in memory now; refusing all further work is the
            // only way to never acknowledge or show a write that may not be durable.
            let msg: Arc<str> = format!("applying revision {revision}: {e}").into();
            tracing::error!(rv = revision, error = %e, "store write failed");
            writer.health = Health::Failed(msg.clone());
            self.durability
                .send_modify(|d| d.health = Health::Failed(msg.clone()));
            return Err(StoreError::Sled(e).into());
        }
        // Queue before publishing `applied`: the flusher reads `applied` and then expects
        // every event up to it in the queue.
        self.pending.lock().push_back(Arc::new(event));
        self.applied.store(revision, Ordering::Release);
        drop(writer);
        flusher::kick(self);
        compaction::kick_if_log_too_long(self, revision);
        Ok((out, Some(revision)))
    }

    /// Waits until `revision` is on disk.
    pub(super) async fn wait_durable(&self, revision: u64) -> Result<(), StoreError> {
        if self.durable_revision() >= revision {
            return Ok(());
        }
        let mut rx = self.durability.subscribe();
        let (durable, health) = {
            let d = rx
                .wait_for(|d| d.revision >= revision || d.health != Health::Open)
                .await
                .map_err(|_| StoreError::Closed)?;
            (d.revision, d.health.clone())
        };
        if durable >= revision {
            Ok(())
        } else {
            health.check()?;
            Err(StoreError::Closed)
        }
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.check_health()?;
        let rkey = codec::record_key(key);
        let record = match self.db.get(&rkey)? {
            Some(raw) => Some(codec::decode_record(&rkey, &raw)?),
            None => None,
        };
        // An absent key may be absent because of a delete that is not durable yet; `applied`
        // read after the lookup covers it.
        let needed = record
            .as_ref()
            .map_or_else(|| self.applied_revision(), |r| r.mod_revision);
        self.wait_durable(needed).await?;
        Ok(record)
    }

    pub(super) async fn list_from(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let page = {
            // Holding the writer lock makes the scan a snapshot at `revision`.
            let writer = self.writer.lock().await;
            writer.health.check()?;
            let revision = self.applied.load(Ordering::Acquire);
            let (records, more) = self.scan(prefix, start_after, limit)?;
            Page {
                records,
                revision,
                more,
            }
        };
        self.wait_durable(page.revision).await?;
        Ok(page)
    }

    fn scan(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Record>, bool), StoreError> {
        let rprefix = codec::record_key(prefix);
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(codec::record_key(after)),
            _ => Bound::Included(rprefix.clone()),
        };
        let mut records = Vec::new();
        for item in self.db.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            let (k, v) = item?;
            if !k.starts_with(&rprefix) {
                break;
            }
            if limit != 0 && records.len() == limit {
                return Ok((records, true));
            }
            records.push(codec::decode_record(&k, &v)?);
        }
        Ok((records, false))
    }

    /// Log entries `from..=to` (at most `limit`), each with its event if its key has `prefix`.
    pub(super) fn read_log(
        &self,
        from: u64,
        to: u64,
        limit: usize,
        prefix: &str,
    ) -> Result<Vec<(u64, Option<Event>)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .range(codec::event_key(from)..=codec::event_key(to))
            .take(limit)
        {
            let (k, v) = item?;
            let revision = codec::event_key_revision(&k)?;
            out.push((revision, codec::decode_event_if(revision, &v, prefix)?));
        }
        Ok(out)
    }

    pub(super) fn subscribe(&self) -> Result<broadcast::Receiver<Arc<Event>>, StoreError> {
        self.events
            .read()
            .as_ref()
            .map(broadcast::Sender::subscribe)
            .ok_or(StoreError::Closed)
    }

    pub(super) fn flush_db(&self) -> Result<(), StoreError> {
        self.disk.flush(&self.db)
    }

    /// Tells both background threads to stop; the flusher flushes once more first.
    pub(super) fn request_stop(&self) {
        flusher::stop(self);
        compaction::stop(self);
    }

    /// Blocking: waits for the background threads to finish.
    pub(super) fn join_threads(&self) -> Result<(), StoreError> {
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            if t.join().is_err() {
                return Err(StoreError::Failed("a store thread panicked".into()));
            }
        }
        match &self.durability.borrow().health {
            Health::Failed(msg) => Err(StoreError::Failed(msg.to_string())),
            Health::Open | Health::Closed => Ok(()),
        }
    }
}

/// Reads revision and compacted revision and checks they agree with the event log.
fn recover(db: &sled::Db) -> Result<(u64, u64), StoreError> {
    let revision = match db.get(META_REVISION)? {
        Some(raw) => codec::decode_u64("revision", &raw)?,
        None => 1,
    };
    let compacted = match db.get(META_COMPACTED)? {
        Some(raw) => codec::decode_u64("compacted revision", &raw)?,
        None => 0,
    };
    if compacted > revision {
        return Err(StoreError::Corrupt(format!(
            "compacted revision {compacted} is above revision {revision}"
        )));
    }
    // Revision and its log entry are written in one batch, so the newest entry must be there
    // (unless compaction removed it) and nothing may follow it.
    if revision > 1 && revision > compacted && db.get(codec::event_key(revision))?.is_none() {
        return Err(StoreError::Corrupt(format!(
            "event log lacks the current revision {revision}"
        )));
    }
    if let Some(item) = db
        .range(codec::event_key(revision.saturating_add(1))..=codec::event_key(u64::MAX))
        .next()
    {
        let (k, _) = item?;
        return Err(StoreError::Corrupt(format!(
            "event log has revision {} beyond revision {revision}",
            codec::event_key_revision(&k)?
        )));
    }
    Ok((revision, compacted))
}
