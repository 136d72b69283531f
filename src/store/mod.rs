//! The API server's storage: a revisioned key-value store with a persisted event log, a
//! watch hub and compaction, on sled behind a write-ahead log. It stores bytes and knows
//! nothing about Kubernetes.
//!
//! Invariants it keeps:
//! - one global revision counter; every write (put or delete) takes the next revision;
//! - nothing is acknowledged, returned by a read, or shown to a watcher before its WAL entry
//!   is synced to disk (group commit: one sync serves every write pending at that moment);
//! - sled holds a prefix of the history (record, event-log entry, then the counter), and
//!   the WAL holds everything after it, so a restart replays exactly the acknowledged
//!   writes sled missed and the revision never goes back;
//! - a watcher sees every event after its start revision, in revision order, exactly once, or a
//!   `Compacted` error; writers never wait for watchers.
//!
//! Map: [`codec`] the sled layout, [`wal`] the write-ahead log, [`overlay`] writes sled
//! does not hold yet, [`recent`] sled's state of hot keys, [`shared`] the state shared by
//! handles and background threads (open, recovery, reads), [`flusher`] group commit and
//! event publication, [`applier`] sled catching up and checkpoints, [`disk`] what it takes
//! to make sled's writes really durable, [`snapshot`] reads at an older revision,
//! [`compaction`] log trimming, [`wakeup`] how the background threads sleep, [`watch`] the
//! watchers.

mod applier;
mod codec;
mod compaction;
mod disk;
mod fanout;
mod flusher;
mod overlay;
mod recent;
mod shared;
mod snapshot;
mod wakeup;
mod wal;
mod watch;

#[cfg(test)]
mod tests;

/// Tests: `open()` (of the store, or of sled under it) once the previous handle is gone.
/// After a close or the last handle's drop, sled's own worker threads may hold its file
/// lock a moment longer, so a lock refusal is retried for at most 10 s.
#[cfg(test)]
fn open_when_unlocked<T, E: std::fmt::Display>(mut open: impl FnMut() -> Result<T, E>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match open() {
            Ok(opened) => return opened,
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("opens: {e}"),
        }
    }
}

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use fanout::{Route, Shard};
use shared::Shared;
pub use watch::Watcher;

/// What [`Store::open`] needs. Build it with [`StoreConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the sled database (created if missing).
    pub path: PathBuf,
    /// sled page cache size. Small by default to keep idle RSS small; the store itself keeps
    /// no copy of the data.
    pub cache_capacity_bytes: u64,
    /// How often the background task trims the event log.
    pub compaction_interval: Duration,
    /// How many revisions of history the event log keeps after a compaction. Upstream
    /// Kubernetes compacts etcd every 5 minutes, keeping ~5 minutes of history; a revision
    /// count bounds our log even under a write burst. The log is also trimmed as soon as it
    /// holds about twice this many entries, so it never grows without limit between runs.
    pub compaction_keep_revisions: u64,
    /// Live events buffered per watcher before it counts as lagging and catches up from the
    /// persisted log instead.
    pub watch_buffer: usize,
}

impl StoreConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cache_capacity_bytes: 8 << 20,
            compaction_interval: Duration::from_secs(5 * 60),
            compaction_keep_revisions: 10_000,
            watch_buffer: 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested history is gone (the API answers 410 Expired).
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted { requested: u64, compacted: u64 },
    /// A read at a revision the store has not reached.
    #[error("required revision {requested} is a future revision (current revision {current})")]
    FutureRevision { requested: u64, current: u64 },
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    #[error("store is closed")]
    Closed,
    /// A flush or batch failed; from then on the store refuses work, because it can no longer
    /// tell which writes are durable.
    #[error("store failed and refuses work: {0}")]
    Failed(String),
    #[error("too large: {0}")]
    TooLarge(String),
}

/// A stored key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub value: Bytes,
    /// Revision of the last write of this key.
    pub mod_revision: u64,
    /// Revision of the write that created this key (since its last delete).
    pub create_revision: u64,
}

impl Record {
    pub fn revisions(&self) -> Revisions {
        Revisions {
            mod_revision: self.mod_revision,
            create_revision: self.create_revision,
        }
    }
}

/// What a [`Store::mutate`] closure decides to do with the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Bytes),
    /// Remove the key; watchers receive `tombstone` as the deleted object. Deleting a missing
    /// key writes nothing.
    Delete {
        tombstone: Bytes,
    },
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One write, as the event log and the watchers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub revision: u64,
    pub kind: EventKind,
    pub key: String,
    /// The new value for `Put`, the tombstone for `Delete`.
    pub value: Bytes,
    /// The value before this write; `None` for a `Put` that created the key.
    pub prev_value: Option<Bytes>,
    /// The revisions of the record before this write, so that a snapshot read can rebuild
    /// it whole. `None` with a `prev_value`: an entry written before they were recorded.
    pub prev_revisions: Option<Revisions>,
    /// `value` and `prev_value` as JSON, parsed on first use and shared by every clone.
    pub parsed: ParsedJson,
}

impl Event {
    /// `value` as JSON (`None` if it is not JSON), parsed once for all watchers of the event.
    pub fn value_json(&self) -> Option<&serde_json::Value> {
        self.parsed.0.json[0]
            .get_or_init(|| serde_json::from_slice(&self.value).ok())
            .as_ref()
    }

    /// `prev_value` as JSON, parsed once like [`Event::value_json`].
    pub fn prev_json(&self) -> Option<&serde_json::Value> {
        let prev = self.prev_value.as_ref()?;
        self.parsed.0.json[1]
            .get_or_init(|| serde_json::from_slice(prev).ok())
            .as_ref()
    }

    /// The `metadata` of `value` (`Null` when it has none; `None` if `value` is not a JSON
    /// object), read once for all watchers of the event without parsing the rest: what
    /// label-selected and metadata-only watches need.
    pub fn metadata_json(&self) -> Option<&serde_json::Value> {
        self.parsed.0.json[2]
            .get_or_init(|| read_metadata(&self.value))
            .as_ref()
    }

    /// `metadata.labels` of `value` (empty when it has none; `None` if `value` is not a JSON
    /// object whose metadata and labels are objects of strings), read once for all watchers
    /// of the event without building the rest of the metadata: what a label-selected watch
    /// needs, without the tree of `managedFields` that a full metadata parse builds and drops.
    pub fn labels(&self) -> Option<&Labels> {
        self.parsed.0.labels[0]
            .get_or_init(|| read_labels(&self.value))
            .as_ref()
    }

    /// `metadata.labels` of `prev_value`, read once like [`Event::labels`].
    pub fn prev_labels(&self) -> Option<&Labels> {
        let prev = self.prev_value.as_ref()?;
        self.parsed.0.labels[1]
            .get_or_init(|| read_labels(prev))
            .as_ref()
    }

    /// The `metadata` object of `value` as its stored JSON text (`None` if `value` is not a
    /// JSON object with an object `metadata`), found once for all watchers of the event: a
    /// JSON metadata-only watch sends these bytes as they are.
    pub fn metadata_text(&self) -> Option<&[u8]> {
        let span = self
            .parsed
            .0
            .metadata_span
            .get_or_init(|| metadata_span(&self.value));
        span.clone().map(|r| &self.value[r])
    }

    /// The [`Head`] of `value` (`None` if it is not a JSON object with an object or no
    /// `spec`), read once for all watchers of the event without parsing the rest.
    pub fn head(&self) -> Option<&Head> {
        self.parsed.0.heads[0]
            .get_or_init(|| read_head(&self.value))
            .as_ref()
    }

    /// The [`Head`] of `prev_value`, read once like [`Event::head`].
    pub fn prev_head(&self) -> Option<&Head> {
        let prev = self.prev_value.as_ref()?;
        self.parsed.0.heads[1]
            .get_or_init(|| read_head(prev))
            .as_ref()
    }
}

/// What watches read of a stored object to route or filter it without its JSON tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub api_version: Option<String>,
    /// `spec.nodeName` (pods), "" when unset, as the field selector reads it.
    pub node_name: String,
}

/// The [`Head`] of a JSON object, every other field skipped unparsed (serde allocates
/// nothing for them).
fn read_head(bytes: &[u8]) -> Option<Head> {
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(rename = "apiVersion", borrow, default)]
        api_version: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        spec: Option<Spec<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Spec<'a> {
        #[serde(rename = "nodeName", borrow, default)]
        node_name: Option<Cow<'a, str>>,
    }
    let raw = serde_json::from_slice::<Raw>(bytes).ok()?;
    Some(Head {
        api_version: raw.api_version.map(Cow::into_owned),
        node_name: raw
            .spec
            .and_then(|s| s.node_name)
            .map(Cow::into_owned)
            .unwrap_or_default(),
    })
}

/// An object's labels.
pub type Labels = std::collections::BTreeMap<String, String>;

/// `metadata.labels` of a JSON object, every other field skipped unparsed.
fn read_labels(bytes: &[u8]) -> Option<Labels> {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(default)]
        metadata: Option<Metadata>,
    }
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(default)]
        labels: Option<Labels>,
    }
    let raw = serde_json::from_slice::<Raw>(bytes).ok()?;
    Some(raw.metadata.and_then(|m| m.labels).unwrap_or_default())
}

/// Where the `metadata` object's text lies in a JSON object.
fn metadata_span(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow, default)]
        metadata: Option<&'a serde_json::value::RawValue>,
    }
    let text = serde_json::from_slice::<Raw>(bytes).ok()?.metadata?.get();
    if !text.starts_with('{') {
        return None;
    }
    // The raw value borrows from `bytes`, so its address gives its offset.
    let start = (text.as_ptr() as usize).checked_sub(bytes.as_ptr() as usize)?;
    let end = start + text.len();
    (end <= bytes.len()).then_some(start..end)
}

/// The `metadata` of a JSON object, every other field skipped unparsed.
fn read_metadata(bytes: &[u8]) -> Option<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct Metadata {
        #[serde(default)]
        metadata: serde_json::Value,
    }
    serde_json::from_slice::<Metadata>(bytes)
        .ok()
        .map(|m| m.metadata)
}

/// The memo behind [`Event::value_json`] and its kin (value, previous value, their metadata
/// alone, their heads): a live event reaches every watcher as a clone
/// of one broadcast `Event`, so a pod change seen by a hundred kubelets' filtered watches is
/// parsed once rather than two hundred times, and its head is read once rather than once
/// per informer. It is a cache, not part of the event: every memo compares equal.
#[derive(Clone, Default)]
pub struct ParsedJson(Arc<Memo>);

#[derive(Default)]
struct Memo {
    /// value, prev_value, and value's metadata.
    json: [std::sync::OnceLock<Option<serde_json::Value>>; 3],
    /// value, prev_value.
    heads: [std::sync::OnceLock<Option<Head>>; 2],
    /// value, prev_value.
    labels: [std::sync::OnceLock<Option<Labels>>; 2],
    /// value's.
    metadata_span: std::sync::OnceLock<Option<std::ops::Range<usize>>>,
}

impl PartialEq for ParsedJson {
    fn eq(&self, _: &ParsedJson) -> bool {
        true
    }
}

impl Eq for ParsedJson {}

impl std::fmt::Debug for ParsedJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParsedJson")
    }
}

/// The revisions a [`Record`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revisions {
    pub mod_revision: u64,
    pub create_revision: u64,
}

/// One page of [`Store::list_from`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub records: Vec<Record>,
    /// The revision this page is consistent at.
    pub revision: u64,
    /// Whether more keys with the prefix follow the last record.
    pub more: bool,
}

/// Handle on an open store; cheap to clone. Background threads stop when the last handle is
/// dropped (without waiting) or on [`Store::shutdown`] / [`Store::close`].
#[derive(Clone)]
pub struct Store {
    handle: Arc<Handle>,
}

/// Exists once per opened store; its drop is "the last `Store` handle went away". Watchers
/// and background threads hold `Shared` directly so they do not keep the store open.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.request_stop();
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("revision", &self.revision())
            .field("compacted", &self.compacted_revision())
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store at `cfg.path`, recovering revision, compacted revision
    /// and records, and starts the flusher and compaction threads. Needs no tokio runtime.
    pub fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        let shared = Shared::open(&cfg)?;
        Ok(Store {
            handle: Arc::new(Handle { shared }),
        })
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }

    /// Atomic read-modify-write of one key: the only way to write.
    ///
    /// `f` runs under the writer lock (keep it fast) with the current record and the revision
    /// this write will get. `Op::None`, deleting a missing key, or `Err` from `f` write nothing
    /// and consume no revision (`None` is returned as the written revision). Otherwise the
    /// call returns after the write is durable, with its revision. If the returned future is
    /// dropped after `f` ran, the write still happens.
    pub async fn mutate<F, T, E>(&self, key: &str, f: F) -> Result<(T, Option<u64>), E>
    where
        F: FnOnce(Option<&Record>, u64) -> Result<(Op, T), E>,
        E: From<StoreError>,
    {
        let shared = self.shared();
        let (out, revision) = shared.apply(key, f).await?;
        if let Some(rev) = revision {
            shared.wait_durable(rev).await?;
        }
        Ok((out, revision))
    }

    /// Unconditional put; returns the revision written.
    pub async fn put(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        let ((), rev) = self
            .mutate(key, |_, _| Ok::<_, StoreError>((Op::Put(value), ())))
            .await?;
        rev.ok_or_else(|| StoreError::Corrupt("put wrote no revision".into()))
    }

    /// Unconditional delete; returns the revision written, or `None` if the key was missing.
    pub async fn delete(&self, key: &str, tombstone: Bytes) -> Result<Option<u64>, StoreError> {
        let ((), rev) = self
            .mutate(key, |_, _| {
                Ok::<_, StoreError>((Op::Delete { tombstone }, ()))
            })
            .await?;
        Ok(rev)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Record>, StoreError> {
        self.shared().get(key).await
    }

    /// Every record whose key starts with `prefix`, in key order, and the revision the list is
    /// consistent at (no write interleaves).
    pub async fn list(&self, prefix: &str) -> Result<(Vec<Record>, u64), StoreError> {
        let page = self.shared().list_from(prefix, None, 0).await?;
        Ok((page.records, page.revision))
    }

    /// At most `limit` records (0 = no limit) with `prefix`, starting after key `start_after`.
    /// Each page is consistent at its own revision.
    pub async fn list_from(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.shared().list_from(prefix, start_after, limit).await
    }

    /// Like [`Store::list_from`], but as the prefix was at `revision` (a point-in-time read:
    /// later creates, updates and deletes are not seen). `Compacted` once the history after
    /// `revision` is trimmed, `FutureRevision` above the current revision. The page's
    /// `revision` is `revision`.
    pub async fn list_at(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: u64,
    ) -> Result<Page, StoreError> {
        snapshot::list_at(self.shared(), prefix, start_after, limit, revision).await
    }

    /// Latest durable revision (1 for an empty store).
    pub fn revision(&self) -> u64 {
        self.shared().durable_revision()
    }

    /// Events at or below this revision are gone from the log (0 if never compacted).
    pub fn compacted_revision(&self) -> u64 {
        self.shared().compacted_revision()
    }

    /// Watches keys starting with `prefix`: events with revision > `after_revision`, in order.
    /// `Compacted` if those are no longer all in the log.
    pub fn watch(&self, prefix: &str, after_revision: u64) -> Result<Watcher, StoreError> {
        Watcher::new(self.shared().clone(), prefix, None, after_revision)
    }

    /// Like [`Store::watch`], but once live it is woken only by the events `shard`'s route
    /// sends to its value (see [`Route`]); while catching up from the log it still yields
    /// every event of the prefix, so its consumer must filter either way.
    pub fn watch_shard(
        &self,
        prefix: &str,
        shard: Shard,
        after_revision: u64,
    ) -> Result<Watcher, StoreError> {
        Watcher::new(self.shared().clone(), prefix, Some(shard), after_revision)
    }

    /// Trims the event log to the last `keep_revisions` revisions; returns the compacted
    /// revision.
    pub async fn compact(&self, keep_revisions: u64) -> Result<u64, StoreError> {
        let shared = self.shared().clone();
        tokio::task::spawn_blocking(move || compaction::compact(&shared, keep_revisions))
            .await
            .map_err(|e| StoreError::Failed(format!("compaction task: {e}")))?
    }

    /// Makes everything written so far durable, including compaction's deletions.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let shared = self.shared().clone();
        shared.wait_durable(shared.applied_revision()).await?;
        tokio::task::spawn_blocking(move || shared.flush_db())
            .await
            .map_err(|e| StoreError::Failed(format!("flush task: {e}")))?
    }

    /// Clean shutdown: stops accepting work, flushes, and waits for the background threads.
    /// The database files are released once every handle and watcher is dropped.
    pub async fn close(&self) -> Result<(), StoreError> {
        let shared = self.shared().clone();
        shared.request_stop();
        tokio::task::spawn_blocking(move || shared.join_threads())
            .await
            .map_err(|e| StoreError::Failed(format!("close task: {e}")))?
    }
}
