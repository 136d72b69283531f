//! State shared by `Store` handles, watchers and the background threads: sled, the WAL, the
//! overlay of writes sled does not hold yet, the writer lock, the applied/durable/compacted
//! revisions and the live event channel.
//!
//! Invariant: `applied` (last revision handed out) only moves under the writer lock and the
//! overlay's lock, together with the overlay push of its write, and
//! `sled_applied <= durable <= applied`. sled's records only change under `sled_steady`
//! held for writing (the applier). Writes up to `durable` are in the WAL on disk; reads
//! never return anything above `durable` (they wait for the flusher instead); the overlay
//! holds every write above `sled_applied`, and reads look there before sled.

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{broadcast, watch, Notify};

use super::applier;
use super::codec::{self, META_COMPACTED, META_REVISION};
use super::compaction;
use super::disk::DiskSync;
use super::fanout::{Fanout, Live, Shard};
use super::flusher;
use super::overlay::{Lookup, Overlay, Pending, ReadTicket};
use super::wakeup::Wakeup;
use super::wal::{Entry, Wal};
use super::{Event, EventKind, Op, Page, Record, StoreConfig, StoreError};

/// Writes allowed to wait for sled before new writes wait for the applier: bounds the
/// overlay's memory when sled stalls for long.
const MAX_UNAPPLIED: usize = 50_000;

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
    pub wal: Mutex<Wal>,
    /// Held for a write's closure and overlay push; never across an await.
    pub writer: Mutex<WriterState>,
    /// Read by a list's scan, written by the applier around each write it moves into sled:
    /// a scan sees sled as it was when it took the overlay's pending writes, without
    /// holding up writers.
    pub sled_steady: RwLock<()>,
    pub applied: AtomicU64,
    pub durable: AtomicU64,
    pub sled_applied: AtomicU64,
    pub compacted: AtomicU64,
    /// Every write above `sled_applied`, durable or not, in revision order.
    pub overlay: Mutex<Overlay>,
    /// Live fan-out to watchers, a channel per watched prefix.
    pub fanout: Fanout,
    pub durability: watch::Sender<Durability>,
    pub flush_wake: Wakeup,
    pub apply_wake: Wakeup,
    /// Woken whenever the applier retires writes (or fails).
    pub applier_progress: Notify,
    pub compact_wake: Wakeup,
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
            // The applier flushes at checkpoints; sled's own timer would only add idle
            // wake-ups.
            .flush_every_ms(None)
            .open()?;
        let disk = DiskSync::open(&cfg.path)?;
        let (mut revision, compacted) = recover(&db)?;
        let wal_dir = cfg.path.join("wal");
        let replay = Wal::read(&wal_dir, revision)?;
        if let Some(last) = replay.last().map(Entry::revision) {
            applier::write_to_sled(&db, &replay)?;
            disk.flush(&db)?;
            tracing::info!(
                from = revision + 1,
                to = last,
                "replayed acknowledged writes from the WAL into sled"
            );
            revision = last;
        }
        drop_stray_events(&db, &disk, revision)?;
        // Everything is in sled and flushed: the old segments can go.
        let wal = Wal::create(&wal_dir, revision)?;
        let (durability, _) = watch::channel(Durability {
            revision,
            health: Health::Open,
        });
        let shared = Arc::new(Shared {
            db,
            disk,
            wal: Mutex::new(wal),
            writer: Mutex::new(WriterState {
                health: Health::Open,
            }),
            sled_steady: RwLock::new(()),
            applied: AtomicU64::new(revision),
            durable: AtomicU64::new(revision),
            sled_applied: AtomicU64::new(revision),
            compacted: AtomicU64::new(compacted),
            overlay: Mutex::new(Overlay::default()),
            fanout: Fanout::new(cfg.watch_buffer, revision),
            durability,
            flush_wake: Wakeup::default(),
            apply_wake: Wakeup::default(),
            applier_progress: Notify::new(),
            compact_wake: Wakeup::default(),
            compaction_lock: Mutex::new(()),
            keep_revisions: cfg.compaction_keep_revisions,
            threads: Mutex::new(Vec::new()),
        });
        let spawned = flusher::spawn(shared.clone())
            .and_then(|flush| {
                shared.threads.lock().push(flush);
                applier::spawn(shared.clone())
            })
            .and_then(|apply| {
                shared.threads.lock().push(apply);
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

    pub(super) fn sled_applied_revision(&self) -> u64 {
        self.sled_applied.load(Ordering::Acquire)
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

    /// Refuses all further work. The durability channel goes first: a writer waiting for the
    /// applier sees it and gives up.
    pub(super) fn mark_failed(&self, msg: Arc<str>) {
        self.durability
            .send_modify(|d| d.health = Health::Failed(msg.clone()));
        self.applier_progress.notify_waiters();
        self.writer.lock().health = Health::Failed(msg);
    }

    /// Runs the closure and queues its decision for the WAL (not yet durable).
    ///
    /// The writer lock is a plain mutex held for the closure and the overlay push only, never
    /// across an await. An async lock handed from one waiter to the next (first a FIFO tokio
    /// mutex, then fair turns among flows) stalled every write while the next holder's task
    /// sat in the runtime's queue: on 2 saturated cores, `bench.sh scale`'s probe PATCH
    /// waited p50 12 ms, p99 99 ms for its turn, for a critical section of microseconds.
    /// Writers now decide (patching, admission, validation) before they come here; under the
    /// lock a closure compares revisions and encodes, so whichever thread is running takes
    /// the lock and no queue forms. List scans do not take it (`sled_steady`).
    pub(super) async fn apply<F, T, E>(&self, key: &str, f: F) -> Result<(T, Option<u64>), E>
    where
        F: FnOnce(Option<&Record>, u64) -> Result<(Op, T), E>,
        E: From<StoreError>,
    {
        self.wait_for_applier().await?;
        let writer = self.writer.lock();
        writer.health.check()?;
        let revision = self.applied.load(Ordering::Acquire) + 1;
        let current = self.current(&codec::record_key(key))?;
        let (op, out) = f(current.as_ref(), revision)?;
        let (event, create_revision) = match (op, current) {
            (Op::None, _) | (Op::Delete { .. }, None) => return Ok((out, None)),
            (Op::Put(value), current) => {
                let create = current.as_ref().map_or(revision, |c| c.create_revision);
                let event = Event {
                    revision,
                    kind: EventKind::Put,
                    key: key.to_owned(),
                    value,
                    prev_revisions: current.as_ref().map(Record::revisions),
                    prev_value: current.map(|c| c.value),
                    parsed: Default::default(),
                };
                (event, create)
            }
            (Op::Delete { tombstone }, Some(current)) => {
                let event = Event {
                    revision,
                    kind: EventKind::Delete,
                    key: key.to_owned(),
                    value: tombstone,
                    prev_revisions: Some(current.revisions()),
                    prev_value: Some(current.value),
                    parsed: Default::default(),
                };
                (event, current.create_revision)
            }
        };
        // Into the overlay before publishing `applied`: the flusher reads `applied` and then
        // expects every entry up to it there. Both under the overlay's lock, so a list reads
        // a revision and the pending writes it covers together.
        {
            let mut overlay = self.overlay.lock();
            overlay.push(Entry {
                event: Arc::new(event),
                create_revision,
            });
            self.applied.store(revision, Ordering::Release);
        }
        drop(writer);
        flusher::kick(self);
        compaction::kick_if_log_too_long(self, revision);
        Ok((out, Some(revision)))
    }

    /// Backpressure: waits while sled lags too far behind. Checked before the writer lock, so
    /// the bound is soft by the writes in flight at once.
    async fn wait_for_applier(&self) -> Result<(), StoreError> {
        loop {
            let progressed = self.applier_progress.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            self.check_health()?;
            if self.overlay.lock().len() < MAX_UNAPPLIED {
                return Ok(());
            }
            progressed.await;
        }
    }

    /// Blocking: waits until sled holds every write up to `revision` (which must be durable).
    pub(super) fn wait_in_sled(&self, revision: u64) -> Result<(), StoreError> {
        // The applier gets there within its batching delay; polling keeps it free of a
        // second wake-up channel.
        while self.sled_applied_revision() < revision {
            self.check_health()?;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Ok(())
    }

    /// The newest record of `rkey`, durable or not: the overlay's if a write is pending.
    fn current(&self, rkey: &[u8]) -> Result<Option<Record>, StoreError> {
        // The overlay's lock is released before sled is read (and taken again to remember).
        let found = self.overlay.lock().find(rkey);
        match found {
            Lookup::Pending(p) => Ok(p.record),
            Lookup::InSled(r) => Ok(r),
            // Nothing pending for this key (and the writer lock keeps it so), hence the
            // applier cannot change it in sled under our feet.
            Lookup::Unknown(ticket) => self.read_sled(rkey, ticket),
        }
    }

    /// sled's record of `rkey`, remembered for the next read if no write was queued since
    /// `ticket` was taken.
    fn read_sled(&self, rkey: &[u8], ticket: ReadTicket) -> Result<Option<Record>, StoreError> {
        let record = self.sled_record(rkey)?;
        if let Some(r) = &record {
            self.overlay.lock().remember(rkey, ticket, r);
        }
        Ok(record)
    }

    fn sled_record(&self, rkey: &[u8]) -> Result<Option<Record>, StoreError> {
        match self.db.get(rkey)? {
            Some(raw) => Ok(Some(codec::decode_record(rkey, &raw)?)),
            None => Ok(None),
        }
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
        let found = self.overlay.lock().find(&rkey);
        match found {
            Lookup::Pending(Pending { revision, record }) => {
                self.wait_durable(revision).await?;
                Ok(record)
            }
            // sled only holds durable writes. A write of this key that entered the overlay
            // after we looked is either still pending (not acknowledged: absent or older is
            // a valid answer) or already in sled (durable).
            Lookup::InSled(record) => Ok(record),
            Lookup::Unknown(ticket) => self.read_sled(&rkey, ticket),
        }
    }

    pub(super) async fn list_from(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.check_health()?;
        let rprefix = codec::record_key(prefix);
        let start = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(codec::record_key(after)),
            _ => Bound::Included(rprefix.clone()),
        };
        let page = {
            // A snapshot at `revision`: the pending writes up to it, and sled held still.
            // Everything sled holds is at or below it (sled only gets durable writes).
            // `read_recursive`: a scan does not queue behind the applier waiting for a
            // long scan to end, only behind a write it is making (microseconds).
            let _steady = self.sled_steady.read_recursive();
            let (revision, pending) = {
                let overlay = self.overlay.lock();
                let pending = overlay.range(start.clone(), &rprefix);
                // The range is the same at every revision from its newest write on: the
                // page is consistent at the newer of that write and the durable revision
                // (which every acknowledged write is at or below), so it waits for no
                // other key's write to be synced. Under load that wait was one more turn
                // on a busy runtime for every list (a pod create lists quotas and limits).
                let newest_in_range = pending.iter().map(|(_, p)| p.revision).max();
                let revision = newest_in_range
                    .unwrap_or(0)
                    .max(self.durable.load(Ordering::Acquire));
                (revision, pending)
            };
            let (records, more) = self.scan(pending, &rprefix, start, limit)?;
            Page {
                records,
                revision,
                more,
            }
        };
        self.wait_durable(page.revision).await?;
        Ok(page)
    }

    /// Merges sled's records from `start` on with `pending`, the overlay's writes of the same
    /// range (which win). Called with `sled_steady` held for reading, so sled cannot change
    /// meanwhile.
    fn scan(
        &self,
        pending: Vec<(Vec<u8>, Pending)>,
        rprefix: &[u8],
        start: Bound<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<Record>, bool), StoreError> {
        let mut pending = pending.into_iter().peekable();
        let mut from_sled = self.db.range::<Vec<u8>, _>((start, Bound::Unbounded));
        let mut next_from_sled = || -> Result<Option<(sled::IVec, sled::IVec)>, StoreError> {
            match from_sled.next().transpose()? {
                Some((k, v)) if k.starts_with(rprefix) => Ok(Some((k, v))),
                _ => Ok(None),
            }
        };
        let mut sled_head = next_from_sled()?;
        let mut records = Vec::new();
        loop {
            let pending_first = match (&sled_head, pending.peek()) {
                (None, None) => return Ok((records, false)),
                (Some((sk, _)), Some((pk, _))) => pk.as_slice() <= sk.as_ref(),
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            let next = match (pending_first, pending.next_if(|_| pending_first)) {
                (true, Some((pk, p))) => {
                    // The pending write supersedes sled's copy of the same key.
                    if sled_head.as_ref().is_some_and(|(sk, _)| sk.as_ref() == pk) {
                        sled_head = next_from_sled()?;
                    }
                    p.record
                }
                _ => match sled_head.take() {
                    Some((k, v)) => {
                        sled_head = next_from_sled()?;
                        Some(codec::decode_record(&k, &v)?)
                    }
                    None => None,
                },
            };
            let Some(record) = next else {
                // A pending delete.
                continue;
            };
            if limit != 0 && records.len() == limit {
                return Ok((records, true));
            }
            records.push(record);
        }
    }

    /// Log entries `from..=to` (at most `limit`), each with its event if its key has `prefix`:
    /// sled's log, then the overlay's writes sled does not hold yet.
    pub(super) fn read_log(
        &self,
        from: u64,
        to: u64,
        limit: usize,
        prefix: &str,
    ) -> Result<Vec<(u64, Option<Event>)>, StoreError> {
        let (tail, first_pending) = {
            let overlay = self.overlay.lock();
            (
                overlay.entries_between(from, to, limit),
                overlay.first_revision(),
            )
        };
        // Everything below the overlay's first entry was in sled when we looked, and stays
        // there until compaction (which the caller checks for).
        let sled_to = first_pending.map_or(to, |first| to.min(first.saturating_sub(1)));
        let mut out = Vec::new();
        if from <= sled_to {
            for item in self
                .db
                .range(codec::event_key(from)..=codec::event_key(sled_to))
                .take(limit)
            {
                let (k, v) = item?;
                let revision = codec::event_key_revision(&k)?;
                out.push((revision, codec::decode_event_if(revision, &v, prefix)?));
            }
        }
        for entry in tail {
            if out.len() >= limit {
                break;
            }
            let event = entry
                .event
                .key
                .starts_with(prefix)
                .then(|| Event::clone(&entry.event));
            out.push((entry.revision(), event));
        }
        Ok(out)
    }

    /// A live receiver of the events under `prefix` (those `shard` gets, if given).
    pub(super) fn subscribe(
        &self,
        prefix: &str,
        shard: Option<&Shard>,
    ) -> Result<broadcast::Receiver<Live>, StoreError> {
        self.fanout
            .subscribe(prefix, shard, || self.durable_revision())
    }

    pub(super) fn flush_db(&self) -> Result<(), StoreError> {
        self.disk.flush(&self.db)
    }

    /// Tells the flusher and the compactor to stop; the flusher makes every applied write
    /// durable first and then stops the applier, which checkpoints last.
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
    // The counter is written after its log entry, so the newest entry must be there (unless
    // compaction removed it). Entries may follow it: see `drop_stray_events`.
    if revision > 1 && revision > compacted && db.get(codec::event_key(revision))?.is_none() {
        return Err(StoreError::Corrupt(format!(
            "event log lacks the current revision {revision}"
        )));
    }
    Ok((revision, compacted))
}

/// Log entries above the recovered revision come from writes applied to sled right before a
/// crash, after the counter; the WAL replay rewrites them. Any left beyond the replay were
/// never acknowledged as far as the WAL knows, so they go rather than surface as history.
fn drop_stray_events(db: &sled::Db, disk: &DiskSync, revision: u64) -> Result<(), StoreError> {
    let stray = db
        .range(codec::event_key(revision.saturating_add(1))..=codec::event_key(u64::MAX))
        .keys()
        .collect::<Result<Vec<_>, _>>()?;
    if stray.is_empty() {
        return Ok(());
    }
    tracing::warn!(
        count = stray.len(),
        rv = revision,
        "removing event-log entries beyond the recovered revision"
    );
    for k in stray {
        db.remove(k)?;
    }
    disk.flush(db)
}
