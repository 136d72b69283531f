use super::*;
use crate::apiserver::testing::TestServer;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use std::time::Duration;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default"}}))
        .expect("configmap")
}

fn cached(inf: &Informer<ConfigMap>, name: &str) -> Option<Arc<ConfigMap>> {
    inf.store()
        .get(&kube::runtime::reflector::ObjectRef::new(name).within("default"))
}

async fn next<S: Stream<Item = Change<ConfigMap>> + Unpin>(s: &mut S) -> Change<ConfigMap> {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("a change within 5 s")
        .expect("stream open")
}

#[tokio::test]
async fn one_reflector_per_type_is_shared_by_every_consumer() {
    let srv = TestServer::start().await;
    let stop = CancellationToken::new();
    let informers = Informers::new(srv.admin(), stop.clone());
    let a = informers.typed::<ConfigMap>();
    let b = informers.typed::<ConfigMap>();
    assert!(
        Arc::ptr_eq(&a.hub, &b.hub),
        "the same reflector is returned"
    );
    stop.cancel();
}

#[tokio::test]
async fn subscribers_see_current_contents_then_every_change() {
    let srv = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    api.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let informers = Informers::new(srv.admin(), stop.clone());
    let inf = informers.typed::<ConfigMap>();
    inf.synced().await.unwrap();
    assert!(cached(&inf, "before").is_some());

    let mut changes = inf.subscribe();
    match next(&mut changes).await {
        Change::Applied(o) => assert_eq!(o.metadata.name.as_deref(), Some("before")),
        other => panic!("expected the existing object, got {other:?}"),
    }
    api.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    match next(&mut changes).await {
        Change::Applied(o) => assert_eq!(o.metadata.name.as_deref(), Some("after")),
        other => panic!("expected the new object, got {other:?}"),
    }
    api.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    match next(&mut changes).await {
        Change::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("before")),
        other => panic!("expected a deletion, got {other:?}"),
    }
    assert!(cached(&inf, "before").is_none());
    stop.cancel();
}

#[tokio::test]
async fn metadata_informers_cache_names_owners_and_finalizers_only() {
    let srv = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let mut obj = cm("m");
    obj.data = Some([("big".to_string(), "x".repeat(1000))].into());
    obj.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();
    let stop = CancellationToken::new();
    let informers = Informers::new(srv.admin(), stop.clone());
    let ar = ApiResource::erase::<ConfigMap>(&());
    let inf = informers.metadata(&ar);
    inf.synced().await.unwrap();
    let cached = inf.store().state();
    let m = cached
        .iter()
        .find(|o| o.metadata.name.as_deref() == Some("m"))
        .expect("cached");
    assert_eq!(
        m.metadata.finalizers.as_deref(),
        Some(&["example.com/keep".to_string()][..])
    );
    stop.cancel();
}

/// A relist (what the watcher does after 410 Gone) is turned into the changes it implies.
#[tokio::test]
async fn a_relist_reports_what_disappeared_and_what_changed() {
    use kube::runtime::watcher::Event;
    fn with_rv(name: &str, rv: &str) -> ConfigMap {
        let mut c = cm(name);
        c.metadata.resource_version = Some(rv.into());
        c.metadata.uid = Some(format!("uid-{name}"));
        c
    }
    let events = vec![
        Event::Init,
        Event::InitApply(with_rv("kept", "1")),
        Event::InitApply(with_rv("changed", "2")),
        Event::InitApply(with_rv("removed", "3")),
        Event::InitDone,
        // The watch broke and its revision was compacted: a fresh list.
        Event::Init,
        Event::InitApply(with_rv("kept", "1")),
        Event::InitApply(with_rv("changed", "9")),
        Event::InitApply(with_rv("new", "10")),
        Event::InitDone,
    ];
    let (tx, rx) = futures::channel::mpsc::unbounded();
    for e in events {
        tx.unbounded_send(Ok(e)).unwrap();
    }
    let stop = CancellationToken::new();
    let (informer, task) = reflect::start_with_stream("test".into(), rx, (), stop.clone());
    let mut changes = informer.subscribe();
    let handle = tokio::spawn(task);
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let c = next(&mut changes).await;
        let name = c.object().metadata.name.clone().unwrap();
        seen.push(match c {
            Change::Applied(_) => format!("applied {name}"),
            Change::Deleted(_) => format!("deleted {name}"),
        });
    }
    seen[..3].sort();
    seen[3..].sort();
    assert_eq!(
        seen,
        [
            "applied changed",
            "applied kept",
            "applied removed",
            "applied changed",
            "applied new",
            "deleted removed"
        ]
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(100), changes.next())
            .await
            .is_err(),
        "the unchanged object is not reported again"
    );
    stop.cancel();
    let _ = handle.await;
}

#[tokio::test]
async fn every_consumer_waiting_for_the_first_list_at_once_is_woken() {
    let srv = TestServer::start().await;
    let stop = CancellationToken::new();
    let informers = Informers::new(srv.admin(), stop.clone());
    let inf = informers.typed::<ConfigMap>();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let i = inf.clone();
            tokio::spawn(async move { i.synced().await })
        })
        .collect();
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .expect("woken within 5 s")
            .unwrap()
            .unwrap();
    }
    stop.cancel();
}
