//! Behaviour of the store through its public API (plus a peek at the log length): reads and
//! writes here, watchers in `watch`, restarts, crashes and compaction in `durability`.

use std::time::Duration;

use bytes::Bytes;

use super::*;

mod durability;
mod snapshot;
mod watch;

fn config(dir: &tempfile::TempDir) -> StoreConfig {
    StoreConfig::new(dir.path().join("db"))
}

/// Opens the store at `dir`, waiting for a previous handle's lock
/// ([`open_when_unlocked`]).
fn open(dir: &tempfile::TempDir) -> Store {
    open_config(config(dir))
}

/// [`open`] with a given configuration.
fn open_config(cfg: StoreConfig) -> Store {
    open_when_unlocked(|| Store::open(cfg.clone()))
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn next_event(w: &mut Watcher) -> Event {
    tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("event arrives in time")
        .expect("watch still open")
        .expect("no watch error")
}

/// Asserts the watcher has nothing to hand out within 50 ms (a `next()` that finds nothing
/// still moves it along: catching up, going live, passing others' writes).
async fn assert_idle(w: &mut Watcher, why: &str) {
    let idle = tokio::time::timeout(Duration::from_millis(50), w.next()).await;
    assert!(idle.is_err(), "{why}");
}

/// Number of entries in the persisted event log.
fn log_len(store: &Store) -> usize {
    store
        .handle
        .shared
        .read_log(0, u64::MAX, usize::MAX, "")
        .expect("log readable")
        .len()
}

/// Compile-time check: the API server moves these into spawned tasks.
#[test]
fn store_watcher_and_their_futures_are_send() {
    fn send<T: Send>(_: T) {}
    fn check(store: Store, mut w: Watcher) {
        send(store.mutate("k", |_, _| Ok::<_, StoreError>((Op::None, ()))));
        send(store.list_from("", None, 1));
        send(store.get("k"));
        send(w.next());
        send(store.clone());
        send(w);
    }
    let _ = check;
}

#[tokio::test]
async fn revisions_start_at_one_increase_per_write_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    assert_eq!(store.revision(), 1);
    assert_eq!(store.put("a", b("1")).await.expect("put"), 2);
    assert_eq!(store.put("b", b("2")).await.expect("put"), 3);
    assert_eq!(store.delete("a", b("gone")).await.expect("delete"), Some(4));
    assert_eq!(store.revision(), 4);
    store.close().await.expect("close");
    drop(store);

    let store = open(&dir);
    assert_eq!(store.revision(), 4);
    assert_eq!(store.get("a").await.expect("get"), None);
    let rec = store.get("b").await.expect("get").expect("b survives");
    assert_eq!((rec.value, rec.mod_revision), (b("2"), 3));
    assert_eq!(store.put("c", b("3")).await.expect("put"), 5);
    // Keys only sled knows (written before the reopen, not read since): a write reads the
    // current record from sled, and reads after it see the write, not what sled had.
    assert_eq!(store.put("d", b("4")).await.expect("put"), 6);
    store.close().await.expect("close");
    drop(store);
    let store = open(&dir);
    let (prev, rev) = store
        .mutate("d", |cur, _| {
            let prev = cur.map(|r| r.value.clone());
            Ok::<_, StoreError>((Op::Put(b("5")), prev))
        })
        .await
        .expect("update");
    assert_eq!((prev, rev), (Some(b("4")), Some(7)));
    for _ in 0..2 {
        let rec = store.get("d").await.expect("get").expect("d");
        assert_eq!((rec.value, rec.mod_revision), (b("5"), 7));
    }
    let rec = store.get("b").await.expect("get").expect("b");
    assert_eq!(rec.mod_revision, 3);
    store.put("b", b("3")).await.expect("put");
    let rec = store.get("b").await.expect("get").expect("b");
    assert_eq!((rec.value, rec.mod_revision), (b("3"), 8));
}

#[tokio::test]
async fn mutate_closure_sees_current_record_and_the_revision_it_will_get() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let ((), rev) = store
        .mutate("k", |cur, next| {
            assert!(cur.is_none());
            assert_eq!(next, 2);
            Ok::<_, StoreError>((Op::Put(Bytes::from(format!("rv={next}"))), ()))
        })
        .await
        .expect("create");
    assert_eq!(rev, Some(2));
    let (seen, rev) = store
        .mutate("k", |cur, next| {
            let cur = cur.expect("record exists");
            let seen = (
                cur.value.clone(),
                cur.mod_revision,
                cur.create_revision,
                next,
            );
            Ok::<_, StoreError>((Op::Put(b("v2")), seen))
        })
        .await
        .expect("update");
    assert_eq!(seen, (b("rv=2"), 2, 2, 3));
    assert_eq!(rev, Some(3));
    let rec = store.get("k").await.expect("get").expect("exists");
    assert_eq!((rec.mod_revision, rec.create_revision), (3, 2));
}

#[derive(Debug)]
enum TestError {
    Conflict,
    Store(StoreError),
}

impl From<StoreError> for TestError {
    fn from(e: StoreError) -> Self {
        TestError::Store(e)
    }
}

#[tokio::test]
async fn failed_closure_noop_and_missing_delete_consume_no_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.put("k", b("v")).await.expect("put");
    let err = store
        .mutate("k", |_, _| Err::<(Op, ()), _>(TestError::Conflict))
        .await
        .expect_err("closure failed");
    assert!(matches!(err, TestError::Conflict), "{err:?}");
    let (out, rev) = store
        .mutate("k", |_, _| Ok::<_, TestError>((Op::None, 7)))
        .await
        .expect("noop");
    assert_eq!((out, rev), (7, None));
    assert_eq!(store.delete("missing", b("t")).await.expect("delete"), None);
    assert_eq!(store.revision(), 2);
    assert_eq!(store.put("k2", b("v")).await.expect("put"), 3);
}

#[tokio::test]
async fn create_revision_resets_after_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.put("k", b("1")).await.expect("put");
    store.delete("k", b("t")).await.expect("delete");
    let rev = store.put("k", b("2")).await.expect("put");
    let rec = store.get("k").await.expect("get").expect("exists");
    assert_eq!((rec.create_revision, rec.mod_revision), (rev, rev));
}

#[tokio::test]
async fn list_returns_prefix_in_key_order_without_neighbours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    for k in [
        "core/pods/b/x",
        "core/pods/a/y",
        "core/podsx/a",
        "core/pod",
        "apps/x",
    ] {
        store.put(k, b(k)).await.expect("put");
    }
    let (records, rev) = store.list("core/pods/").await.expect("list");
    let keys: Vec<_> = records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["core/pods/a/y", "core/pods/b/x"]);
    assert_eq!(rev, 6);
    let (all, _) = store.list("").await.expect("list");
    assert_eq!(all.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_a_snapshot_while_writers_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..400 {
                store.put(&format!("p/{i:04}"), b("v")).await.expect("put");
            }
        })
    };
    let mut lists = 0;
    while !writer.is_finished() {
        let (records, rev) = store.list("p/").await.expect("list");
        // Write i got revision i + 2, and every write creates a key: a snapshot at `rev`
        // holds exactly the keys written at or below it.
        assert_eq!(records.len() as u64, rev - 1, "list at {rev}");
        assert!(records.iter().all(|r| r.mod_revision <= rev));
        lists += 1;
        tokio::task::yield_now().await;
    }
    writer.await.expect("writer");
    assert!(lists > 0);
}

/// Updates, while sled catches up underneath: a list never shows a write above its
/// revision, nor an older version of a key than one it shows later in the same round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_is_a_snapshot_while_updates_move_into_sled() {
    const KEYS: usize = 200;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    for i in 0..KEYS {
        store.put(&format!("p/{i:04}"), b("0")).await.expect("put");
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            // Round r writes r into every key, in key order.
            for round in 1..=6u32 {
                for i in 0..KEYS {
                    let value = Bytes::from(round.to_string());
                    store.put(&format!("p/{i:04}"), value).await.expect("put");
                }
            }
        })
    };
    let mut lists = 0;
    while !writer.is_finished() {
        let (records, rev) = store.list("p/").await.expect("list");
        assert_eq!(records.len(), KEYS, "list at {rev}");
        assert!(
            records.iter().all(|r| r.mod_revision <= rev),
            "list at {rev}"
        );
        let rounds: Vec<u32> = records
            .iter()
            .map(|r| {
                std::str::from_utf8(&r.value)
                    .expect("utf8")
                    .parse()
                    .expect("n")
            })
            .collect();
        // A snapshot inside round r: keys already written hold r, the rest r - 1.
        assert!(
            rounds.windows(2).all(|w| w[0] == w[1] || w[0] == w[1] + 1),
            "list at {rev} is not a snapshot: {rounds:?}"
        );
        lists += 1;
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    writer.await.expect("writer");
    assert!(lists > 0);
}

/// A list waits for the sync of the writes in its own range only. With the WAL held (no
/// sync can finish), a list of another prefix answers at once, consistent at the durable
/// revision; a list of the prefix being written waits for that write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_waits_for_the_sync_of_writes_in_its_range_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.put("a/1", b("x")).await.expect("put");
    let durable = store.revision();
    // The WAL is held by another thread (its lock is not held across awaits here); it is
    // let go when `release` is sent or dropped (a failed assertion).
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (held_tx, held) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn({
        let store = store.clone();
        move || {
            let _wal = store.shared().wal.lock();
            let _ = held_tx.send(());
            let _ = released.recv();
        }
    });
    held.recv().expect("WAL held");
    let put = tokio::spawn({
        let store = store.clone();
        async move { store.put("b/1", b("y")).await }
    });
    while store.shared().applied_revision() == durable {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (records, rev) = tokio::time::timeout(Duration::from_secs(5), store.list("a/"))
        .await
        .expect("the list of a/ waited for the sync of a write to b/")
        .expect("list");
    assert_eq!((records.len(), rev), (1, durable));
    let list_b = tokio::spawn({
        let store = store.clone();
        async move { store.list("b/").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !list_b.is_finished(),
        "the list of b/ answered before b/1 was durable"
    );
    drop(release);
    holder.join().expect("WAL holder");
    let written = put.await.expect("put task").expect("put");
    let (records, rev) = list_b.await.expect("list task").expect("list");
    assert_eq!((records.len(), rev), (1, written));
    assert_eq!(written, durable + 1);
}

#[tokio::test]
async fn list_from_pages_through_a_prefix_without_overlap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    for i in 0..10 {
        store.put(&format!("ns/{i}"), b("v")).await.expect("put");
    }
    store.put("nt/0", b("v")).await.expect("put");
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .list_from("ns/", after.as_deref(), 3)
            .await
            .expect("page");
        assert!(page.records.len() <= 3);
        seen.extend(page.records.iter().map(|r| r.key.clone()));
        after = page.records.last().map(|r| r.key.clone());
        if !page.more {
            break;
        }
    }
    let want: Vec<_> = (0..10).map(|i| format!("ns/{i}")).collect();
    assert_eq!(seen, want);
    let page = store.list_from("ns/", Some("a"), 0).await.expect("page");
    assert_eq!((page.records.len(), page.more), (10, false));
    let page = store.list_from("ns/", Some("zz"), 0).await.expect("page");
    assert!(page.records.is_empty());
    let page = store.list_from("ns/", Some("ns/8"), 1).await.expect("page");
    assert_eq!((page.records[0].key.as_str(), page.more), ("ns/9", false));
}
#[tokio::test]
async fn closed_store_refuses_work_and_ends_watchers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut w = store.watch("", 1).expect("watch");
    store.put("k", b("v")).await.expect("put");
    store.close().await.expect("close");
    assert_eq!(next_event(&mut w).await.revision, 2);
    let end = w.next().await.expect("an item");
    assert!(matches!(end, Err(StoreError::Closed)), "{end:?}");
    assert!(w.next().await.is_none());
    assert!(matches!(
        store.put("k", b("v")).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(store.list("").await, Err(StoreError::Closed)));
    assert!(matches!(store.watch("", 1), Err(StoreError::Closed)));
    let err = store
        .mutate("k", |_, _| Ok::<_, TestError>((Op::None, ())))
        .await
        .expect_err("closed");
    assert!(
        matches!(err, TestError::Store(StoreError::Closed)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_unique_contiguous_revisions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in 0..100 {
                    let ((), rev) = store
                        .mutate("counter", |cur, _| {
                            let n: u64 = cur.map_or(0, |r| {
                                std::str::from_utf8(&r.value)
                                    .expect("utf8")
                                    .parse()
                                    .expect("number")
                            });
                            Ok::<_, StoreError>((Op::Put(Bytes::from((n + 1).to_string())), ()))
                        })
                        .await
                        .expect("increment");
                    revs.push(rev.expect("written"));
                    assert!(store.revision() >= revs[revs.len() - 1], "{t}/{i} durable");
                }
                revs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all.sort_unstable();
    assert_eq!(all, (2..=801).collect::<Vec<u64>>());
    let rec = store.get("counter").await.expect("get").expect("exists");
    assert_eq!(rec.value, b("800"));
}
