use super::*;
use crate::apiserver::testing::TestServer;
use crate::apiserver::UserInfo;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A client that counts the plain GETs (not lists or watches) of ConfigMaps it sends.
fn counting_client(server: &TestServer, gets: Arc<AtomicUsize>) -> kube::Client {
    let inner = crate::apiserver::inprocess::InProcessService::new(
        server.state.clone(),
        UserInfo::new("system:admin", &["system:masters"]),
    );
    let svc = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let path = req.uri().path();
        if req.method() == http::Method::GET
            && path.contains("/configmaps/")
            && !req.uri().query().unwrap_or_default().contains("watch")
        {
            gets.fetch_add(1, Ordering::Relaxed);
        }
        let mut inner = inner.clone();
        async move { tower::Service::call(&mut inner, req).await }
    });
    kube::Client::new(svc, "default")
}

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name}, "data": {"k": value}
    }))
    .expect("configmap")
}

fn value(c: Option<ConfigMap>) -> Option<String> {
    c.and_then(|c| c.data).and_then(|d| d.get("k").cloned())
}

async fn eventually_value(cache: &ObjectCache, name: &str, want: Option<&str>) {
    for _ in 0..200 {
        let got = value(cache.config_map("default", name).await.expect("lookup"));
        if got.as_deref() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name} never became {want:?}");
}

#[tokio::test]
async fn lookups_after_the_first_read_the_watch_and_follow_updates_and_deletion() {
    let server = TestServer::start().await;
    let admin = server.admin();
    let cms = kube::Api::<ConfigMap>::namespaced(admin, "default");
    let pp = kube::api::PostParams::default();
    cms.create(&pp, &cm("shared", "one")).await.expect("create");
    let gets = Arc::new(AtomicUsize::new(0));
    let cache = ObjectCache::new(counting_client(&server, gets.clone()));

    for _ in 0..20 {
        let got = cache.config_map("default", "shared").await.expect("lookup");
        assert_eq!(value(got).as_deref(), Some("one"));
    }
    assert_eq!(gets.load(Ordering::Relaxed), 0, "20 lookups, no GET");
    assert_eq!(cache.config_maps.watched(), 1);

    let patch = serde_json::json!({"data": {"k": "two"}});
    cms.patch(
        "shared",
        &Default::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .expect("patch");
    eventually_value(&cache, "shared", Some("two")).await;

    cms.delete("shared", &Default::default())
        .await
        .expect("delete");
    eventually_value(&cache, "shared", None).await;

    // A missing object is known missing too, and its creation is seen.
    assert_eq!(
        value(cache.config_map("default", "later").await.expect("lookup")),
        None
    );
    cms.create(&pp, &cm("later", "here")).await.expect("create");
    eventually_value(&cache, "later", Some("here")).await;
    assert_eq!(gets.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn an_object_the_identity_may_not_watch_is_read_with_a_get_and_the_error_is_the_apis() {
    let server = TestServer::start().await;
    kube::Api::<ConfigMap>::namespaced(server.admin(), "default")
        .create(&Default::default(), &cm("private", "x"))
        .await
        .expect("create");
    // The handlers' test authorizer lets this user do nothing.
    let stranger = server
        .state
        .client(UserInfo::new("someone", &["system:authenticated"]));
    let cache = ObjectCache::new(stranger);
    let err = cache
        .config_map("default", "private")
        .await
        .expect_err("forbidden");
    assert!(err.to_string().contains("forbidden"), "{err}");
}

#[tokio::test]
async fn an_object_nobody_looks_up_stops_being_watched_and_one_in_use_stays() {
    let server = TestServer::start().await;
    let cms = kube::Api::<ConfigMap>::namespaced(server.admin(), "default");
    for name in ["used", "dropped"] {
        cms.create(&Default::default(), &cm(name, "x"))
            .await
            .expect("create");
    }
    let idle = Duration::from_secs(1);
    let watched = Watched::<ConfigMap>::with_idle(server.admin(), idle);
    for name in ["used", "dropped"] {
        watched.get("default", name).await.expect("lookup");
    }
    assert_eq!(watched.watched(), 2);
    // "used" is looked up as a pod's resync would; "dropped" no more.
    let until = Instant::now() + idle * 3;
    while Instant::now() < until {
        watched.get("default", "used").await.expect("lookup");
        tokio::time::sleep(idle / 4).await;
    }
    assert_eq!(
        watched.watched(),
        1,
        "only the object in use is still watched"
    );
    assert!(watched
        .entries
        .lock()
        .contains_key(&("default".into(), "used".into())));
}
