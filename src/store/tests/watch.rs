//! Watchers: ordering, filtering, positions, lag, compaction.

use std::time::{Duration, Instant};

use super::*;

#[tokio::test]
async fn watch_from_a_revision_delivers_exactly_the_later_events_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    for i in 0..5 {
        store.put(&format!("k{i}"), b("v")).await.expect("put");
    }
    let mut w = store.watch("", 4).expect("watch");
    for i in 5..8 {
        store.put(&format!("k{i}"), b("v")).await.expect("put");
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(next_event(&mut w).await.revision);
    }
    assert_eq!(got, [5, 6, 7, 8, 9]);
    assert_eq!(w.position(), 9);
    let nothing = tokio::time::timeout(Duration::from_millis(50), w.next()).await;
    assert!(nothing.is_err(), "no duplicate or extra event");
}

#[tokio::test]
async fn watch_from_current_revision_gets_only_future_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.put("old", b("v")).await.expect("put");
    let mut w = store.watch("", store.revision()).expect("watch");
    let rev = store.put("new", b("v")).await.expect("put");
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.key.as_str(), ev.revision, ev.kind),
        ("new", rev, EventKind::Put)
    );
    assert_eq!(ev.prev_value, None);
}

#[tokio::test]
async fn watch_filters_by_prefix_and_position_advances_over_filtered_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut w = store.watch("apps/", 1).expect("watch");
    store.put("core/a", b("1")).await.expect("put");
    store.put("apps/a", b("2")).await.expect("put");
    store.put("core/b", b("3")).await.expect("put");
    store.put("core/c", b("4")).await.expect("put");
    let ev = next_event(&mut w).await;
    assert_eq!((ev.key.as_str(), ev.revision), ("apps/a", 3));
    assert_eq!(w.position(), 3);
    // The filtered writes 4 and 5 are consumed by a next() that finds nothing to return.
    let nothing = tokio::time::timeout(Duration::from_millis(100), w.next()).await;
    assert!(nothing.is_err());
    assert_eq!(w.position(), 5);
    // Cancelling next() lost nothing.
    store.put("apps/b", b("5")).await.expect("put");
    assert_eq!(next_event(&mut w).await.key, "apps/b");
}

#[tokio::test]
async fn delete_delivers_tombstone_and_previous_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    store.put("k", b("live")).await.expect("put");
    let mut w = store.watch("k", store.revision()).expect("watch");
    store.put("k", b("live2")).await.expect("put");
    store.delete("k", b("tomb")).await.expect("delete");
    let put = next_event(&mut w).await;
    assert_eq!(
        (put.kind, put.prev_value),
        (EventKind::Put, Some(b("live")))
    );
    let del = next_event(&mut w).await;
    assert_eq!(del.kind, EventKind::Delete);
    assert_eq!((del.value, del.prev_value), (b("tomb"), Some(b("live2"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_gets_every_event_in_order_and_never_blocks_writers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut slow = store.watch("w/", 1).expect("watch");
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..2500 {
                    store.put(&format!("w/{t}/{i}"), b("v")).await.expect("put");
                }
            })
        })
        .collect();
    // The watcher is never polled while the 10k writes run; a writer that waited on it
    // would hang here.
    tokio::time::timeout(Duration::from_secs(120), async {
        for t in tasks {
            t.await.expect("writer task");
        }
    })
    .await
    .expect("writers finish without the watcher being polled");
    let writing = started.elapsed();
    assert_eq!(store.revision(), 10_001);
    for want in 2..=10_001 {
        let ev = next_event(&mut slow).await;
        assert_eq!(ev.revision, want);
    }
    assert_eq!(slow.position(), 10_001);
    // And it is live again afterwards.
    store.put("w/last", b("v")).await.expect("put");
    assert_eq!(next_event(&mut slow).await.revision, 10_002);
    eprintln!("10k writes with a stalled watcher took {writing:?}");
}

#[tokio::test]
async fn watch_older_than_compaction_is_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    for i in 0..20 {
        store.put(&format!("k{i}"), b("v")).await.expect("put");
    }
    assert_eq!(store.compact(5).await.expect("compact"), 16);
    assert_eq!(store.compacted_revision(), 16);
    let err = store.watch("", 15).expect_err("too old");
    assert!(
        matches!(
            err,
            StoreError::Compacted {
                requested: 15,
                compacted: 16
            }
        ),
        "{err}"
    );
    let err = store.watch("", 0).expect_err("0 is a revision too");
    assert!(matches!(err, StoreError::Compacted { .. }), "{err}");
    let mut w = store.watch("", 16).expect("watch at the mark");
    assert_eq!(next_event(&mut w).await.revision, 17);
    assert_eq!(log_len(&store), 5);
}

/// Each prefix has its own live channel: a flood of writes elsewhere neither reaches nor
/// overflows a watcher's buffer, while watchers of one prefix share its events.
#[tokio::test]
async fn writes_under_other_prefixes_never_make_a_watcher_lag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.watch_buffer = 4;
    let store = Store::open(cfg).expect("open");
    let mut apps = store.watch("apps/", 1).expect("watch");
    let mut apps2 = store.watch("apps/", 1).expect("watch");
    let mut core = store.watch("core/", 1).expect("watch");
    // Both go live before the flood.
    store.put("apps/a", b("1")).await.expect("put");
    assert_eq!(next_event(&mut apps).await.key, "apps/a");
    assert_eq!(next_event(&mut apps2).await.key, "apps/a");
    store.put("core/start", b("0")).await.expect("put");
    assert_eq!(next_event(&mut core).await.key, "core/start");
    // A next() that finds the log read to the end switches each to its live channel.
    for w in [&mut apps, &mut apps2, &mut core] {
        assert_idle(w, "nothing more was written").await;
    }
    for i in 0..50 {
        store.put(&format!("core/{i}"), b("v")).await.expect("put");
    }
    store.put("apps/b", b("2")).await.expect("put");
    for w in [&mut apps, &mut apps2] {
        let ev = next_event(w).await;
        assert_eq!((ev.key.as_str(), ev.revision), ("apps/b", 54));
        assert_eq!(
            w.resyncs(),
            0,
            "an apps/ watcher lagged behind core/ writes"
        );
        assert_eq!(w.position(), 54);
    }
    // The core/ watcher, never read, overflowed its own buffer and still gets every event
    // in order from the log.
    for i in 0..50 {
        let ev = next_event(&mut core).await;
        assert_eq!(ev.key, format!("core/{i}"));
    }
    assert!(core.resyncs() > 0, "the core/ watcher was expected to lag");
}

#[tokio::test]
async fn lagging_watcher_gets_compacted_from_next_then_ends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.watch_buffer = 4;
    let store = Store::open(cfg).expect("open");
    let mut w = store.watch("", 1).expect("watch");
    for i in 0..50 {
        store.put(&format!("k{i}"), b("v")).await.expect("put");
    }
    store.compact(10).await.expect("compact");
    let err = w.next().await.expect("an item").expect_err("compacted");
    assert!(
        matches!(
            err,
            StoreError::Compacted {
                requested: 1,
                compacted: 41
            }
        ),
        "{err}"
    );
    assert!(w.next().await.is_none());
}

#[tokio::test]
async fn watch_resumes_from_the_persisted_log_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    for i in 0..10 {
        store
            .put(&format!("k{i}"), b(&i.to_string()))
            .await
            .expect("put");
    }
    store.delete("k3", b("tomb")).await.expect("delete");
    store.close().await.expect("close");
    drop(store);

    let store = open(&dir);
    let mut w = store.watch("k", 5).expect("watch");
    let mut revs = Vec::new();
    for _ in 6..=12 {
        let ev = next_event(&mut w).await;
        revs.push(ev.revision);
        if ev.revision == 12 {
            assert_eq!((ev.kind, ev.prev_value), (EventKind::Delete, Some(b("3"))));
        }
    }
    assert_eq!(revs, (6..=12).collect::<Vec<_>>());
    store.put("k99", b("v")).await.expect("put");
    assert_eq!(next_event(&mut w).await.revision, 13);
}

#[tokio::test]
async fn dropping_the_last_handle_ends_watchers_and_releases_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let mut w = store.watch("", 1).expect("watch");
    store.put("k", b("v")).await.expect("put");
    drop(store);
    assert_eq!(next_event(&mut w).await.revision, 2);
    let end = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("the watcher ends in time");
    assert!(matches!(end, Some(Err(StoreError::Closed))), "{end:?}");
    drop(w);
    // The background threads let go of the database on their own; `open` retries until
    // they have.
    let store = open(&dir);
    assert_eq!(store.revision(), 2);
}

/// A route by the value's first byte (values are plain text here); a delete or an update
/// names the old value's shard too.
static BY_FIRST_BYTE: Route = Route {
    name: "first-byte",
    shards: first_bytes,
};

fn first_bytes(ev: &Event) -> [Option<std::borrow::Cow<'_, str>>; 2] {
    fn first(v: &Bytes) -> Option<std::borrow::Cow<'_, str>> {
        std::str::from_utf8(&v[..1.min(v.len())])
            .ok()
            .map(Into::into)
    }
    [first(&ev.value), ev.prev_value.as_ref().and_then(first)]
}

fn shard(value: &str) -> Shard {
    Shard {
        route: &BY_FIRST_BYTE,
        value: value.to_owned(),
    }
}

#[tokio::test]
async fn a_sharded_watcher_is_woken_only_by_its_shard_and_by_changes_leaving_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.watch_buffer = 4;
    let store = Store::open(cfg).expect("open");
    let mut a = store.watch_shard("pods/", shard("a"), 1).expect("watch");
    let mut b_ = store.watch_shard("pods/", shard("b"), 1).expect("watch");
    let mut whole = store.watch("pods/", 1).expect("watch");
    // Catching up from the log, a sharded watcher still gets the whole prefix.
    store.put("pods/x", b("a1")).await.expect("put");
    store.put("pods/y", b("b1")).await.expect("put");
    for w in [&mut a, &mut b_, &mut whole] {
        assert_eq!(next_event(w).await.key, "pods/x");
        assert_eq!(next_event(w).await.key, "pods/y");
        assert_idle(w, "nothing more was written").await;
    }
    // Live: 50 writes to shard b never wake (or overflow) shard a's watcher.
    for i in 0..50 {
        store.put(&format!("pods/b{i}"), b("b")).await.expect("put");
    }
    let moved = store.put("pods/x", b("b2")).await.expect("put");
    let ev = next_event(&mut a).await;
    assert_eq!(
        (ev.key.as_str(), ev.revision),
        ("pods/x", moved),
        "a change leaving shard a"
    );
    assert_eq!(a.resyncs(), 0, "shard a lagged behind shard b's writes");
    // Its position moves past the other shard's writes, so a bookmark there loses nothing.
    assert_idle(&mut a, "nothing more for it was written").await;
    assert_eq!(a.position(), moved);
    store.put("pods/z", b("c")).await.expect("put");
    let back = store.put("pods/z", b("a3")).await.expect("put");
    assert_eq!(next_event(&mut a).await.revision, back);
    // Shard b, never read, overflowed and still gets all of its events in order, from the
    // log, including the write that moved pods/x into it.
    for i in 0..50 {
        assert_eq!(next_event(&mut b_).await.key, format!("pods/b{i}"));
    }
    assert_eq!(next_event(&mut b_).await.revision, moved);
    assert!(b_.resyncs() > 0, "shard b was expected to lag");
    // Other prefixes' writes reach neither.
    store.put("apps/q", b("a")).await.expect("put");
    assert_idle(
        &mut a,
        "a write under another prefix reached a sharded watcher",
    )
    .await;
    drop(whole);
}

#[tokio::test]
async fn a_quiet_shards_watcher_that_lags_resyncs_from_where_it_waited_not_from_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir);
    cfg.watch_buffer = 4;
    let store = Store::open(cfg).expect("open");
    let mut a = store
        .watch_shard("pods/", shard("a"), store.revision())
        .expect("watch");
    store.put("pods/x", b("a1")).await.expect("put");
    assert_eq!(next_event(&mut a).await.key, "pods/x");
    // Live and waiting, while only the other shard is written and compaction passes the
    // revision of a's last own event.
    assert_idle(&mut a, "nothing more for it was written").await;
    for i in 0..30 {
        store.put(&format!("pods/b{i}"), b("b")).await.expect("put");
    }
    assert_idle(&mut a, "nothing more for it was written").await;
    let compacted = store.compact(5).await.expect("compact");
    assert!(compacted > 2, "compaction passed a's last own event");
    // A burst on a's shard, larger than its buffer, before it reads again.
    for i in 0..10 {
        store.put(&format!("pods/a{i}"), b("a")).await.expect("put");
    }
    // Catching up from the log yields the whole prefix (its consumer filters), and the last
    // of b's writes may not have been published yet when a drained its channel.
    let mut own = Vec::new();
    while own.len() < 10 {
        let ev = next_event(&mut a).await;
        if ev.value.starts_with(b"a") {
            own.push(ev.key);
        }
    }
    let expected: Vec<String> = (0..10).map(|i| format!("pods/a{i}")).collect();
    assert_eq!(own, expected);
    assert!(
        a.resyncs() > 0,
        "the burst was expected to overflow a's buffer"
    );
}
