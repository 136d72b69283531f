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
    assert!(get_namespaced(&inf.store(), "default", "before").is_some());

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
    assert!(get_namespaced(&inf.store(), "default", "before").is_none());
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
