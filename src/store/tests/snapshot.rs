//! Point-in-time lists (`Store::list_at`): what pagination at the first page's revision needs.

use super::*;

fn keys(page: &Page) -> Vec<&str> {
    page.records.iter().map(|r| r.key.as_str()).collect()
}

/// `a/1..a/3` plus a neighbour outside the prefix; returns the revision after them and the
/// record of `a/2` as it was then.
async fn seed(store: &Store) -> (u64, Record) {
    for k in ["a/1", "a/2", "a/3", "b/1"] {
        store.put(k, b(&format!("{k} v1"))).await.expect("put");
    }
    let a2 = store.get("a/2").await.expect("get").expect("a/2 exists");
    (store.revision(), a2)
}

/// Creates before, between and after the old keys, an update and a delete.
async fn change(store: &Store) {
    store.put("a/0", b("created")).await.expect("put");
    store.put("a/2", b("a/2 v2")).await.expect("put");
    store.put("a/2", b("a/2 v3")).await.expect("put");
    store.delete("a/3", b("tomb")).await.expect("delete");
    store.put("a/25", b("created")).await.expect("put");
    store.put("a/9", b("created")).await.expect("put");
    store.put("b/1", b("b/1 v2")).await.expect("put");
}

#[tokio::test]
async fn list_at_an_old_revision_ignores_later_creates_updates_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let (at, a2_then) = seed(&store).await;
    change(&store).await;

    let page = store.list_at("a/", None, 0, at).await.expect("snapshot");
    assert_eq!(keys(&page), ["a/1", "a/2", "a/3"]);
    assert_eq!((page.revision, page.more), (at, false));
    assert_eq!(
        page.records[1], a2_then,
        "a/2 whole, with its old revisions"
    );
    assert_eq!(&page.records[2].value[..], b"a/3 v1");

    // Paging through the snapshot, as continue tokens do.
    let first = store.list_at("a/", None, 2, at).await.expect("page 1");
    assert_eq!((keys(&first), first.more), (vec!["a/1", "a/2"], true));
    let second = store
        .list_at("a/", Some("a/2"), 2, at)
        .await
        .expect("page 2");
    assert_eq!((keys(&second), second.more), (vec!["a/3"], false));

    // The current state is untouched by all this.
    let (now, _) = store.list("a/").await.expect("list");
    let now_keys: Vec<_> = now.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(now_keys, ["a/0", "a/1", "a/2", "a/25", "a/9"]);
    let current = store.list_at("a/", None, 0, store.revision()).await;
    assert_eq!(current.expect("at now").records, now);
}

#[tokio::test]
async fn list_at_reads_the_history_back_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let (at, a2_then) = seed(&store).await;
    change(&store).await;
    store.close().await.expect("close");
    drop(store);

    let store = open(&dir);
    let page = store.list_at("a/", None, 0, at).await.expect("snapshot");
    assert_eq!(keys(&page), ["a/1", "a/2", "a/3"]);
    assert_eq!(page.records[1], a2_then);
}

#[tokio::test]
async fn list_at_a_compacted_or_future_revision_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir);
    let (at, _) = seed(&store).await;
    change(&store).await;
    let compacted = store.compact(2).await.expect("compact");
    assert!(compacted > at);
    match store.list_at("a/", None, 0, at).await {
        Err(StoreError::Compacted {
            requested,
            compacted: c,
        }) => assert_eq!((requested, c), (at, compacted)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    // The compacted revision itself is still readable: every later write is logged.
    let page = store.list_at("a/", None, 0, compacted).await;
    assert_eq!(page.expect("at the compacted revision").revision, compacted);
    let future = store.revision() + 1;
    assert!(matches!(
        store.list_at("a/", None, 0, future).await,
        Err(StoreError::FutureRevision { .. })
    ));
}
