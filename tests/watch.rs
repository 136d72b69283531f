//! Watches through kube-rs: resuming from a resourceVersion, and 410 after compaction.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::ObjectMeta;

use common::TestServer;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn configmap(name: &str, value: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("v".to_string(), value.to_string())])),
        ..ConfigMap::default()
    }
}

fn rv_of(cm: &ConfigMap) -> String {
    cm.metadata
        .resource_version
        .clone()
        .expect("a stored object has a resourceVersion")
}

fn rv_number(rv: &str) -> u64 {
    rv.parse()
        .unwrap_or_else(|_| panic!("resourceVersion {rv:?} is not the revision counter"))
}

/// One observed or expected change: (type, name, resourceVersion or "" when not known).
type Change = (&'static str, String, String);

/// The next non-bookmark event of a watch: its type and object; fails the test after 10 s
/// of silence.
async fn next_event<K, S>(stream: &mut S, what: &str) -> (&'static str, K)
where
    S: Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    loop {
        let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("no watch event within 10 s while waiting for {what}"))
            .unwrap_or_else(|| panic!("the watch ended while waiting for {what}"))
            .unwrap_or_else(|e| panic!("watch error while waiting for {what}: {e}"));
        return match item {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(status) => panic!("ERROR event while waiting for {what}: {status:?}"),
        };
    }
}

/// The next non-bookmark event, as a [`Change`].
async fn next_change<S>(stream: &mut S, what: &str) -> Change
where
    S: Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin,
{
    let (kind, cm) = next_event(stream, what).await;
    let name = cm.metadata.name.clone().unwrap_or_default();
    (kind, name, rv_of(&cm))
}

/// Writes one change and returns what a watcher must see for it.
async fn write(api: &Api<ConfigMap>, kind: &'static str, name: &str) -> Change {
    match kind {
        "ADDED" => {
            let cm = api
                .create(&PostParams::default(), &configmap(name, "1"))
                .await
                .unwrap_or_else(|e| panic!("create {name}: {e}"));
            (kind, name.to_string(), rv_of(&cm))
        }
        "MODIFIED" => {
            let mut cm = api
                .get(name)
                .await
                .unwrap_or_else(|e| panic!("get {name}: {e}"));
            cm.data = Some(BTreeMap::from([("v".to_string(), "2".to_string())]));
            let cm = api
                .replace(name, &PostParams::default(), &cm)
                .await
                .unwrap_or_else(|e| panic!("replace {name}: {e}"));
            (kind, name.to_string(), rv_of(&cm))
        }
        "DELETED" => {
            api.delete(name, &DeleteParams::default())
                .await
                .unwrap_or_else(|e| panic!("delete {name}: {e}"));
            // The deletion's revision is only known from the event.
            (kind, name.to_string(), String::new())
        }
        other => unreachable!("unknown change {other}"),
    }
}

fn same_change(seen: &Change, expected: &Change) -> bool {
    seen.0 == expected.0 && seen.1 == expected.1 && (expected.2.is_empty() || seen.2 == expected.2)
}

#[test]
fn watch_resumes_from_a_resource_version_without_missing_or_duplicating_events() {
    let server = TestServer::start();
    runtime().block_on(async {
        let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
        root_ca_published(&api).await;
        for name in ["pre-0", "pre-1"] {
            write(&api, "ADDED", name).await;
        }
        let list = api
            .list(&ListParams::default())
            .await
            .expect("list configmaps");
        let start_rv = list
            .metadata
            .resource_version
            .expect("a list resourceVersion");

        let params = WatchParams::default().timeout(60);
        let mut first = api.watch(&params, &start_rv).await.expect("watch").boxed();
        let mut expected = Vec::new();
        for (kind, name) in [
            ("ADDED", "a-0"),
            ("ADDED", "a-1"),
            ("MODIFIED", "pre-0"),
            ("ADDED", "a-2"),
            ("DELETED", "pre-1"),
            ("MODIFIED", "a-0"),
        ] {
            expected.push(write(&api, kind, name).await);
        }
        // Read part of it, then disconnect.
        let mut seen = Vec::new();
        for i in 0..3 {
            seen.push(next_change(&mut first, &format!("event {i} of the first watch")).await);
        }
        drop(first);
        let resume_rv = seen.last().expect("three events seen").2.clone();

        // Changes while no one watches.
        for (kind, name) in [
            ("ADDED", "b-0"),
            ("DELETED", "a-1"),
            ("MODIFIED", "a-2"),
            ("ADDED", "b-1"),
        ] {
            expected.push(write(&api, kind, name).await);
        }

        let mut second = api
            .watch(&params, &resume_rv)
            .await
            .expect("watch again")
            .boxed();
        // A change after the resume marks the end: everything before it must be exactly the rest.
        expected.push(write(&api, "ADDED", "sentinel").await);
        while seen.last().map(|c| c.1.as_str()) != Some("sentinel") {
            let n = seen.len();
            seen.push(next_change(&mut second, &format!("event {n} (after resume)")).await);
            assert!(
                seen.len() <= expected.len(),
                "more events than changes: {seen:#?}"
            );
        }

        assert_eq!(
            seen.len(),
            expected.len(),
            "seen {seen:#?}\nexpected {expected:#?}"
        );
        for (s, e) in seen.iter().zip(&expected) {
            assert!(same_change(s, e), "seen {seen:#?}\nexpected {expected:#?}");
        }
        let rvs: Vec<u64> = seen.iter().map(|c| rv_number(&c.2)).collect();
        assert!(
            rvs.windows(2).all(|w| w[0] < w[1]),
            "event resourceVersions strictly increase: {rvs:?}"
        );
        assert!(rvs[0] > rv_number(&start_rv), "{rvs:?} after {start_rv}");
    });
}

#[test]
fn watch_from_a_compacted_revision_gets_410_gone() {
    // Each periodic run keeps the last 50 revisions and drops what the run before saw.
    // 100 writes put the first one out of the window; the server's own writes (leases,
    // heartbeats, events) during the wait stay far below the 47 that would push the
    // replay below out of it too (with 5 kept, a loaded machine did).
    let server = TestServer::start_with(&[
        "--store-compaction-interval",
        "3",
        "--store-compaction-keep",
        "50",
    ]);
    runtime().block_on(async {
        let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
        let (_, _, old_rv) = write(&api, "ADDED", "old").await;
        let mut writes = Vec::new();
        for i in 0..100 {
            writes.push(write(&api, "ADDED", &format!("filler-{i}")).await);
        }

        // Compaction runs every 3 s; wait for it to pass the old revision.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let status = loop {
            let outcome = match api.watch(&WatchParams::default(), &old_rv).await {
                Err(kube::Error::Api(status)) => Ok(*status),
                Err(e) => panic!("watch from {old_rv}: {e}"),
                Ok(stream) => {
                    let mut stream = stream.boxed();
                    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
                        Ok(Some(Ok(WatchEvent::Error(status)))) => Ok(*status),
                        Ok(Some(Err(kube::Error::Api(status)))) => Ok(*status),
                        other => Err(format!("{other:?}")),
                    }
                }
            };
            match outcome {
                Ok(status) => break status,
                Err(last) if tokio::time::Instant::now() > deadline => {
                    panic!("a watch from compacted revision {old_rv} never got 410; last: {last}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        assert_eq!(status.code, 410, "{status:?}");
        assert_eq!(status.reason, "Expired", "{status:?}");

        // A watcher still inside the kept window catches up from the log.
        let from = &writes[writes.len() - 3].2;
        let mut stream = api
            .watch(&WatchParams::default(), from)
            .await
            .expect("watch from a kept revision")
            .boxed();
        for expected in &writes[writes.len() - 2..] {
            let seen = next_change(&mut stream, &format!("replay of {}", expected.1)).await;
            assert!(
                same_change(&seen, expected),
                "seen {seen:?}, expected {expected:?}"
            );
        }
    });
}

/// Waits for the root-CA publisher's `kube-root-ca.crt`, which it writes into every
/// namespace on its own schedule: a watch opened before would see it as a change.
async fn root_ca_published(api: &Api<ConfigMap>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while api
        .get_opt("kube-root-ca.crt")
        .await
        .expect("get kube-root-ca.crt")
        .is_none()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "kube-root-ca.crt was not published"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The next event's type, name, `app` label, and whether the object carries `data` (a
/// metadata-only watch's objects have none).
async fn next_labelled<K, S>(stream: &mut S, what: &str) -> (String, String, String, bool)
where
    K: kube::Resource + serde::Serialize,
    S: Stream<Item = kube::Result<WatchEvent<K>>> + Unpin,
{
    let (kind, obj) = next_event(stream, what).await;
    let meta = obj.meta();
    let app = meta
        .labels
        .as_ref()
        .and_then(|l| l.get("app").cloned())
        .unwrap_or_default();
    let json = serde_json::to_value(&obj).expect("serializable");
    (
        kind.to_string(),
        meta.name.clone().unwrap_or_default(),
        app,
        json.get("data").is_some(),
    )
}

/// A label-selected watch, and a metadata-only one (the garbage collector's kind), see an
/// object enter and leave the selector as its labels change, as upstream reports it: ADDED
/// when it comes to match, DELETED when it stops; the metadata watch gets metadata only.
#[test]
fn label_selected_and_metadata_watches_follow_an_objects_labels() {
    let server = TestServer::start();
    runtime().block_on(async {
        let api: Api<ConfigMap> = Api::namespaced(server.client().await, "default");
        let params = WatchParams::default().labels("app=web").timeout(60);
        let mut full = api.watch(&params, "0").await.expect("watch").boxed();
        let mut meta = api
            .watch_metadata(&params, "0")
            .await
            .expect("metadata watch")
            .boxed();
        let labelled = |app: &str| {
            let mut cm = configmap("cm", "1");
            cm.metadata.labels = Some(BTreeMap::from([("app".to_string(), app.to_string())]));
            cm
        };
        api.create(&PostParams::default(), &configmap("unlabelled", "1"))
            .await
            .expect("create unlabelled");
        api.create(&PostParams::default(), &labelled("web"))
            .await
            .expect("create");
        for (app, data) in [("web", "2"), ("db", "3"), ("web", "4")] {
            let mut cm = labelled(app);
            cm.data = Some(BTreeMap::from([("v".to_string(), data.to_string())]));
            cm.metadata.resource_version =
                api.get("cm").await.expect("get").metadata.resource_version;
            api.replace("cm", &PostParams::default(), &cm)
                .await
                .expect("replace");
        }
        api.delete("cm", &DeleteParams::default())
            .await
            .expect("delete");
        let expected = [
            ("ADDED", "web"),
            ("MODIFIED", "web"),
            ("DELETED", "db"),
            ("ADDED", "web"),
            ("DELETED", "web"),
        ];
        for (i, (kind, app)) in expected.iter().enumerate() {
            let seen = next_labelled(&mut full, &format!("event {i}")).await;
            assert_eq!(
                (seen.0.as_str(), seen.1.as_str(), seen.2.as_str(), seen.3),
                (*kind, "cm", *app, true),
                "full watch, event {i}"
            );
            let seen = next_labelled(&mut meta, &format!("metadata event {i}")).await;
            assert_eq!(
                (seen.0.as_str(), seen.1.as_str(), seen.2.as_str(), seen.3),
                (*kind, "cm", *app, false),
                "metadata watch, event {i}"
            );
        }
    });
}
