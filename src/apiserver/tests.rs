//! Handler tests through the in-process transport: the same code path as HTTPS after
//! authentication.

use super::testing::TestServer;
use super::InProcessService;
use super::UserInfo;
use crate::authz::index::Index;
use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{json, Value};
use tower::ServiceExt;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": {"k": "v"}
    }))
    .expect("configmap")
}

async fn raw(srv: &TestServer, method: &str, uri: &str, body: &str) -> (u16, Value) {
    let admin = UserInfo::new("system:admin", &["system:masters"]);
    raw_as(srv, admin, method, uri, body).await
}

async fn raw_as(
    srv: &TestServer,
    user: UserInfo,
    method: &str,
    uri: &str,
    body: &str,
) -> (u16, Value) {
    let svc = InProcessService::new(srv.state.clone(), user);
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_owned(),
        )))
        .expect("request");
    let resp = svc.oneshot(req).await.expect("infallible");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test]
async fn in_process_client_creates_reads_lists_and_deletes() {
    let srv = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.resource_version.is_some());
    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
}

#[tokio::test]
async fn in_process_errors_are_kubernetes_statuses() {
    let srv = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    api.create(&PostParams::default(), &cm("dup"))
        .await
        .unwrap();
    match api.create(&PostParams::default(), &cm("dup")).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "AlreadyExists");
        }
        other => panic!("expected 409, got {other:?}"),
    }
    let bad: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    match bad.create(&PostParams::default(), &cm("Not_Valid")).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 422, "{s:?}"),
        other => panic!("expected 422, got {other:?}"),
    }
}

#[tokio::test]
async fn in_process_callers_are_authorized_like_https_callers() {
    let srv = TestServer::start().await;
    let node: Api<ConfigMap> = Api::namespaced(
        srv.client_as("system:node:n1", &["system:nodes"]),
        "default",
    );
    match node.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert!(
                s.message
                    .contains("User \"system:node:n1\" cannot list resource \"configmaps\""),
                "{}",
                s.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let kcm: Api<ConfigMap> = Api::namespaced(
        srv.client_as(super::CONTROLLER_MANAGER_USER, &[]),
        "default",
    );
    kcm.list(&ListParams::default()).await.unwrap();
}

/// The collection's current resourceVersion, where a watch starts.
async fn list_rv<K>(api: &Api<K>) -> String
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
}

/// The watch's next event as "TYPE name", within 5 s.
async fn next_named<K, S>(events: &mut S) -> String
where
    K: kube::Resource,
    S: futures::Stream<Item = Result<WatchEvent<K>, kube::Error>> + Unpin,
{
    let ev = tokio::time::timeout(std::time::Duration::from_secs(5), events.try_next())
        .await
        .expect("an event within 5 s")
        .unwrap()
        .expect("the watch goes on");
    let name = |o: &K| o.meta().name.clone().unwrap_or_default();
    match ev {
        WatchEvent::Added(o) => format!("ADDED {}", name(&o)),
        WatchEvent::Modified(o) => format!("MODIFIED {}", name(&o)),
        WatchEvent::Deleted(o) => format!("DELETED {}", name(&o)),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn in_process_watch_streams_events_after_a_resource_version() {
    let srv = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut events = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("w")).await.unwrap();
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("w")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    api.delete("w", &DeleteParams::default()).await.unwrap();
    match events.next().await {
        Some(Ok(WatchEvent::Deleted(o))) => assert_eq!(o.metadata.name.as_deref(), Some("w")),
        other => panic!("expected DELETED, got {other:?}"),
    }
}

/// The stored object's managed fields, read past the API.
async fn stored_managers(srv: &TestServer, key: &str) -> Vec<String> {
    let rec = srv.state.store.get(key).await.unwrap().expect("stored");
    let obj: Value = serde_json::from_slice(&rec.value).unwrap();
    let entries = obj["metadata"]["managedFields"].as_array().cloned();
    entries
        .unwrap_or_default()
        .iter()
        .map(|e| e["manager"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn in_process_callers_get_objects_without_managed_fields_and_writing_them_back_keeps_them() {
    let srv = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let rv = api.list(&ListParams::default()).await.unwrap();
    let mut events = api
        .watch(
            &WatchParams::default(),
            &rv.metadata.resource_version.unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    let pp = PostParams {
        field_manager: Some("creator".into()),
        ..PostParams::default()
    };
    let created = api.create(&pp, &cm("m")).await.unwrap();
    let key = "core/configmaps/default/m";
    assert_eq!(stored_managers(&srv, key).await, ["creator"]);
    assert!(created.metadata.managed_fields.is_none());
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Added(o)) => assert!(o.metadata.managed_fields.is_none()),
        other => panic!("expected ADDED, got {other:?}"),
    }
    let (_, got) = raw(&srv, "GET", "/api/v1/namespaces/default/configmaps/m", "").await;
    assert_eq!(got["metadata"]["name"], "m");
    assert!(got["metadata"].get("managedFields").is_none(), "{got}");
    let (_, list) = raw(&srv, "GET", "/api/v1/namespaces/default/configmaps", "").await;
    assert!(list["items"][0]["metadata"].get("managedFields").is_none());

    // The object as read, changed and written back by another manager: the creator keeps
    // its entry and the updater gets one.
    let mut changed = got;
    changed["data"]["k2"] = json!("v2");
    let (code, _) = raw(
        &srv,
        "PUT",
        "/api/v1/namespaces/default/configmaps/m?fieldManager=updater",
        &changed.to_string(),
    )
    .await;
    assert_eq!(code, 200);
    let mut managers = stored_managers(&srv, key).await;
    managers.sort();
    assert_eq!(managers, ["creator", "updater"]);
}

#[tokio::test]
async fn raw_requests_with_bad_bodies_get_a_400_status_and_store_nothing() {
    let srv = TestServer::start().await;
    let (code, status) = raw(&srv, "POST", "/api/v1/namespaces/default/configmaps", "{").await;
    assert_eq!(code, 400);
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "BadRequest");
    let (code, list) = raw(&srv, "GET", "/api/v1/namespaces/default/configmaps", "").await;
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn unknown_paths_are_404_statuses() {
    let srv = TestServer::start().await;
    let (code, status) = raw(&srv, "GET", "/apis/nope.example.com/v1/things", "").await;
    assert_eq!(code, 404);
    assert_eq!(status["reason"], "NotFound");
}

/// Every component reads and writes cluster state through the API handlers: no module
/// outside `apiserver` (and the store itself) may name the store.
#[test]
fn only_the_api_server_uses_the_store() {
    fn visit(dir: &std::path::Path, offenders: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                visit(&path, offenders);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .expect("under the crate")
                .to_string_lossy()
                .into_owned();
            if rel.starts_with("src/apiserver/")
                || rel.starts_with("src/store/")
                || rel == "src/lib.rs"
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("source is readable");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                if code.contains("crate::store") || code.contains("skiff::store") {
                    offenders.push(format!("{rel}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    let mut offenders = Vec::new();
    visit(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut offenders,
    );
    assert!(
        offenders.is_empty(),
        "modules outside apiserver use the store:\n{}",
        offenders.join("\n")
    );
}

/// The control plane holds one watch per resource type (so one per CRD): in-process callers
/// are not held to the per-client watch limit that protects the server from remote clients.
#[tokio::test]
async fn in_process_watches_are_not_limited_per_client() {
    let srv = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let mut open = Vec::new();
    for _ in 0..(super::MAX_WATCHES_PER_CLIENT + 20) {
        let stream = api
            .watch(&WatchParams::default(), "0")
            .await
            .expect("an in-process watch is never refused for the count");
        open.push(stream.boxed());
    }
    assert_eq!(open.len(), super::MAX_WATCHES_PER_CLIENT + 20);
}

/// A kubelet's `spec.nodeName=<node>` pod watch rides its node's shard of the pod events
/// (see `watch::PODS_BY_NODE`): it must still see a pod arrive by binding, change and go,
/// and nothing of other nodes' pods, as an unsharded filtered watch would.
#[tokio::test]
async fn a_node_name_pod_watch_sees_its_nodes_pods_arrive_change_and_go() {
    use k8s_openapi::api::core::v1::{Binding, Pod};
    let srv = TestServer::start().await;
    srv.create_default_service_account().await;
    let api: Api<Pod> = Api::namespaced(srv.admin(), "default");
    let pod = |name: &str, node: Option<&str>| -> Pod {
        let mut v = json!({"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        if let Some(n) = node {
            v["spec"]["nodeName"] = json!(n);
        }
        serde_json::from_value(v).expect("pod")
    };
    let rv = list_rv(&api).await;
    let on = |node: &str| WatchParams::default().fields(&format!("spec.nodeName={node}"));
    let mut n1 = api.watch(&on("n1"), &rv).await.unwrap().boxed();
    let mut n2 = api.watch(&on("n2"), &rv).await.unwrap().boxed();
    // Let both watches catch up and go live, so what follows travels the shards.
    api.create(&PostParams::default(), &pod("warmup", Some("n3")))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    api.create(&PostParams::default(), &pod("a", None))
        .await
        .unwrap();
    api.create(&PostParams::default(), &pod("b", Some("n2")))
        .await
        .unwrap();
    let binding: Binding = serde_json::from_value(json!({
        "metadata": {"name": "a"}, "target": {"kind": "Node", "name": "n1"}
    }))
    .expect("binding");
    api.create_subresource::<Binding, Value>("binding", "a", &PostParams::default(), &binding)
        .await
        .unwrap();
    api.patch(
        "a",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    api.delete("a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_named(&mut n1).await);
    }
    assert_eq!(seen, ["ADDED a", "MODIFIED a", "DELETED a"]);
    assert_eq!(next_named(&mut n2).await, "ADDED b");
    let more = tokio::time::timeout(std::time::Duration::from_millis(200), n2.try_next()).await;
    assert!(more.is_err(), "n2's watch saw another node's pod: {more:?}");
}

/// A watch of one object by `metadata.name` rides that name's shard (`watch::BY_NAME`): it
/// sees its object's changes and no other's.
#[tokio::test]
async fn a_watch_by_name_sees_only_that_objects_changes() {
    let srv = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let rv = list_rv(&api).await;
    let params = WatchParams::default().fields("metadata.name=w2");
    let mut events = api.watch(&params, &rv).await.unwrap().boxed();
    api.create(&PostParams::default(), &cm("warmup"))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for name in ["w1", "w2", "w20"] {
        api.create(&PostParams::default(), &cm(name)).await.unwrap();
    }
    api.delete("w2", &DeleteParams::default()).await.unwrap();
    assert_eq!(next_named(&mut events).await, "ADDED w2");
    assert_eq!(next_named(&mut events).await, "DELETED w2");
    let more = tokio::time::timeout(std::time::Duration::from_millis(200), events.next()).await;
    assert!(
        more.is_err(),
        "the watch of w2 saw another object: {more:?}"
    );
}

/// Concurrent patches of one object all land, each at its own revision, and of concurrent
/// creates of one name exactly one succeeds (a guard for any change to how writes take the
/// store's writer lock).
#[tokio::test]
async fn concurrent_writes_of_one_object_lose_nothing() {
    use kube::api::{Patch, PatchParams};
    let srv = TestServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    api.create(&PostParams::default(), &cm("shared"))
        .await
        .unwrap();
    let patches = (0..24).map(|i| {
        let api = api.clone();
        tokio::spawn(async move {
            let body = json!({"data": {format!("k{i}"): i.to_string()}});
            api.patch("shared", &PatchParams::default(), &Patch::Merge(body))
                .await
                .unwrap()
                .metadata
                .resource_version
                .unwrap()
        })
    });
    let mut revisions: Vec<String> = futures::future::try_join_all(patches).await.unwrap();
    revisions.sort();
    revisions.dedup();
    assert_eq!(revisions.len(), 24, "each patch is its own write");
    let got = api.get("shared").await.unwrap();
    let data = got.data.unwrap();
    for i in 0..24 {
        assert_eq!(data.get(&format!("k{i}")), Some(&i.to_string()), "{data:?}");
    }
    assert!(revisions.contains(got.metadata.resource_version.as_ref().unwrap()));

    let creates = (0..8).map(|_| {
        let api = api.clone();
        tokio::spawn(async move { api.create(&PostParams::default(), &cm("once")).await })
    });
    let results = futures::future::try_join_all(creates).await.unwrap();
    let created = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(created, 1);
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(r, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"),
            "{r}"
        );
    }
}

/// An eviction goes through admission as a create of `pods/eviction`: NodeRestriction lets
/// a kubelet evict the pods bound to it and no others (the Node authorizer allows a node
/// every eviction and leaves that check to admission, as upstream does).
#[tokio::test]
async fn a_node_may_evict_only_the_pods_bound_to_it() {
    let srv = TestServer::start().await;
    // The Node authorizer (no RBAC rules): what a node may do without admission's check.
    let authz = crate::authz::ClusterAuthorizer::with_index(Index::build(&[], &[], &[], &[]));
    srv.state.set_authorizer(std::sync::Arc::new(authz));
    srv.create_default_service_account().await;
    for (pod, node) in [("mine", "n1"), ("theirs", "n2")] {
        let body = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}});
        let (code, created) = raw(
            &srv,
            "POST",
            "/api/v1/namespaces/default/pods",
            &body.to_string(),
        )
        .await;
        assert_eq!(code, 201, "{created}");
    }
    let evict = |pod: &str| {
        let node = UserInfo::new("system:node:n1", &["system:nodes", "system:authenticated"]);
        let uri = format!("/api/v1/namespaces/default/pods/{pod}/eviction");
        let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": pod, "namespace": "default"}})
        .to_string();
        let srv = &srv;
        async move { raw_as(srv, node, "POST", &uri, &body).await }
    };
    let (code, status) = evict("theirs").await;
    assert_eq!(code, 403, "{status}");
    assert!(
        status["message"].as_str().is_some_and(
            |m| m.contains("node n1 can only evict pods with spec.nodeName set to itself")
        ),
        "{status}"
    );
    let (code, still) = raw(&srv, "GET", "/api/v1/namespaces/default/pods/theirs", "").await;
    assert_eq!(code, 200, "{still}");
    assert!(still["metadata"]["deletionTimestamp"].is_null(), "{still}");
    let (code, status) = evict("mine").await;
    assert_eq!(code, 201, "{status}");
}

/// A binding is a create of `pods/binding` as upstream stores it: its name must be the
/// pod's, its uid (if set) must match, its annotations land on the pod, and admission runs
/// (NamespaceLifecycle refuses it in a terminating namespace).
#[tokio::test]
async fn a_binding_is_admitted_checked_against_the_pods_uid_and_carries_its_annotations() {
    use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
    let srv = TestServer::start().await;
    let admin = srv.admin();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "bind"}})).unwrap(),
        )
        .await
        .unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), "bind")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "bind");
    for name in ["a", "b", "c"] {
        let pod = json!({"metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(pod).unwrap(),
        )
        .await
        .unwrap();
    }
    let bind = |pod: &str, body: Value| {
        let pods = pods.clone();
        let pod = pod.to_string();
        async move {
            pods.create_subresource::<Value, Value>("binding", &pod, &PostParams::default(), &body)
                .await
        }
    };
    let status = |r: Result<Value, kube::Error>| match r {
        Err(kube::Error::Api(s)) => (s.code, s.message),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let target = json!({"kind": "Node", "name": "n1"});

    let (code, message) =
        status(bind("a", json!({"metadata": {"name": "b"}, "target": target})).await);
    assert_eq!(code, 400);
    assert!(
        message.contains("does not match name in Binding"),
        "{message}"
    );

    let (code, message) = status(
        bind(
            "a",
            json!({"metadata": {"name": "a", "uid": "not-the-pods"}, "target": target}),
        )
        .await,
    );
    assert_eq!(code, 409);
    assert!(
        message.contains("Precondition failed: UID in precondition: not-the-pods"),
        "{message}"
    );
    assert_eq!(pods.get("a").await.unwrap().spec.unwrap().node_name, None);

    // A dry run is admitted and checked, and binds nothing.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    pods.create_subresource::<Value, Value>(
        "binding",
        "a",
        &dry,
        &json!({"metadata": {"name": "a"}, "target": target}),
    )
    .await
    .unwrap();
    assert_eq!(pods.get("a").await.unwrap().spec.unwrap().node_name, None);

    let uid = pods.get("a").await.unwrap().metadata.uid.unwrap();
    bind(
        "a",
        json!({"metadata": {"name": "a", "uid": uid,
                "annotations": {"example.com/bound-by": "test"}},
            "target": target}),
    )
    .await
    .unwrap();
    let a = pods.get("a").await.unwrap();
    assert_eq!(a.spec.unwrap().node_name.as_deref(), Some("n1"));
    assert_eq!(
        a.metadata.annotations.unwrap().get("example.com/bound-by"),
        Some(&"test".to_string())
    );

    // The older top-level form binds the pod its Binding names, through the same checks.
    let legacy = |body: Value| {
        let srv = &srv;
        async move {
            let body = body.to_string();
            raw(srv, "POST", "/api/v1/namespaces/bind/bindings", &body).await
        }
    };
    let (code, body) = legacy(json!({"target": target})).await;
    assert_eq!(code, 422, "{body}");
    let (code, body) =
        legacy(json!({"metadata": {"name": "c", "namespace": "other"}, "target": target})).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = legacy(json!({"metadata": {"name": "c"}, "target": {"name": "n2"}})).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        pods.get("c")
            .await
            .unwrap()
            .spec
            .unwrap()
            .node_name
            .as_deref(),
        Some("n2")
    );
    let (code, body) = legacy(json!({"metadata": {"name": "c"}, "target": target})).await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("already assigned to node \"n2\""),
        "{body}"
    );

    // Deleted, the namespace waits for its controller (none runs here): terminating.
    namespaces
        .delete("bind", &DeleteParams::default())
        .await
        .unwrap();
    let (code, message) =
        status(bind("b", json!({"metadata": {"name": "b"}, "target": target})).await);
    assert_eq!(code, 403);
    assert!(message.contains("is being terminated"), "{message}");
    let (code, body) = legacy(json!({"metadata": {"name": "b"}, "target": target})).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(pods.get("b").await.unwrap().spec.unwrap().node_name, None);
}
