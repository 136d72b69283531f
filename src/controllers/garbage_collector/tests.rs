use crate::controllers::testing::{eventually, Cluster};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

async fn create<K>(api: &Api<K>, v: Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj: K = serde_json::from_value(v).expect("object");
    api.create(&PostParams::default(), &obj)
        .await
        .expect("created")
}

fn owner_ref(kind: &str, api_version: &str, name: &str, uid: &str, block: bool) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "blockOwnerDeletion": block})
}

async fn owner_and_dependents(c: &Cluster, n: usize, block: bool) -> (String, Vec<String>) {
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    let owner = create(&cms, json!({"metadata": {"name": "owner"}})).await;
    let uid = owner.metadata.uid.unwrap();
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("dep-{i}");
        create(
            &secrets,
            json!({"metadata": {"name": name,
                   "ownerReferences": [owner_ref("ConfigMap", "v1", "owner", &uid, block)]}}),
        )
        .await;
        names.push(name);
    }
    (uid, names)
}

async fn count(api: &Api<Secret>) -> usize {
    api.list(&ListParams::default()).await.unwrap().items.len()
}

#[tokio::test]
async fn background_deletion_removes_the_dependents_after_the_owner() {
    let c = Cluster::start().await;
    owner_and_dependents(&c, 5, false).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert!(
        cms.get_opt("owner").await.unwrap().is_none(),
        "the owner goes at once"
    );
    eventually("the dependents are gone", || async {
        count(&secrets).await == 0
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn orphan_deletion_keeps_the_dependents_without_the_owner_reference() {
    let c = Cluster::start().await;
    owner_and_dependents(&c, 3, false).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    cms.delete("owner", &DeleteParams::orphan()).await.unwrap();
    eventually("the owner is gone", || async {
        cms.get_opt("owner").await.unwrap().is_none()
    })
    .await;
    let left = secrets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|s| s.metadata.owner_references.is_none()));
    c.stop().await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let c = Cluster::start().await;
    let (_, names) = owner_and_dependents(&c, 2, true).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    // One dependent holds on with a finalizer of its own.
    secrets
        .patch(
            &names[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
        )
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually(
        "the free dependent is gone and the held one is deleting",
        || async {
            secrets.get_opt(&names[1]).await.unwrap().is_none()
                && secrets
                    .get_opt(&names[0])
                    .await
                    .unwrap()
                    .is_some_and(|s| s.metadata.deletion_timestamp.is_some())
        },
    )
    .await;
    let owner = cms.get("owner").await.expect("the owner waits");
    assert_eq!(
        owner.metadata.finalizers.as_deref(),
        Some(&["foregroundDeletion".to_string()][..])
    );
    secrets
        .patch(
            &names[0],
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    eventually("the owner is gone", || async {
        cms.get_opt("owner").await.unwrap().is_none()
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn an_owner_that_never_existed_does_not_keep_its_dependent() {
    let c = Cluster::start().await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    create(
        &secrets,
        json!({"metadata": {"name": "stray",
               "ownerReferences": [owner_ref("ConfigMap", "v1", "ghost", "00000000-0000-0000-0000-000000000001", false)]}}),
    )
    .await;
    eventually("the stray dependent is collected", || async {
        secrets.get_opt("stray").await.unwrap().is_none()
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn events_are_not_collected_even_when_their_owner_is_gone() {
    // Upstream's collector ignores events (core and events.k8s.io): they expire by TTL.
    use k8s_openapi::api::core::v1::Event;
    use k8s_openapi::api::events::v1::Event as EventV1;
    let c = Cluster::start().await;
    let ghost = owner_ref(
        "ConfigMap",
        "v1",
        "ghost",
        "00000000-0000-0000-0000-000000000002",
        false,
    );
    let core: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let v1: Api<EventV1> = Api::namespaced(c.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    create(
        &core,
        json!({"metadata": {"name": "core-event", "ownerReferences": [ghost.clone()]},
               "involvedObject": {"kind": "ConfigMap", "name": "ghost", "namespace": "default"},
               "reason": "Test", "message": "m"}),
    )
    .await;
    create(
        &v1,
        json!({"metadata": {"name": "v1-event", "ownerReferences": [ghost.clone()]},
               "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "test",
               "reportingInstance": "test", "action": "Test", "reason": "Test", "type": "Normal"}),
    )
    .await;
    // Two dependents of the same ghost, one after the other, are collected: the collector
    // has had every chance to act on the events too.
    for name in ["stray-1", "stray-2"] {
        create(
            &secrets,
            json!({"metadata": {"name": name, "ownerReferences": [ghost.clone()]}}),
        )
        .await;
        eventually("the stray secret is collected", || async {
            secrets.get_opt(name).await.unwrap().is_none()
        })
        .await;
    }
    assert!(core.get_opt("core-event").await.unwrap().is_some());
    assert!(v1.get_opt("v1-event").await.unwrap().is_some());
    c.stop().await;
}

#[tokio::test]
async fn a_dependent_with_another_live_owner_only_loses_the_dead_reference() {
    let c = Cluster::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    let a = create(&cms, json!({"metadata": {"name": "a"}})).await;
    let b = create(&cms, json!({"metadata": {"name": "b"}})).await;
    let (ua, ub) = (a.metadata.uid.unwrap(), b.metadata.uid.unwrap());
    create(
        &secrets,
        json!({"metadata": {"name": "shared", "ownerReferences": [
            owner_ref("ConfigMap", "v1", "a", &ua, false),
            owner_ref("ConfigMap", "v1", "b", &ub, false)]}}),
    )
    .await;
    cms.delete("a", &DeleteParams::background()).await.unwrap();
    eventually("the reference to the deleted owner is removed", || async {
        secrets
            .get("shared")
            .await
            .unwrap()
            .metadata
            .owner_references
            .is_some_and(|r| r.len() == 1 && r[0].uid == ub)
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn namespaced_dependents_of_a_cluster_scoped_owner_are_collected() {
    let c = Cluster::start().await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node = create(&nodes, json!({"metadata": {"name": "n1"}})).await;
    let uid = node.metadata.uid.unwrap();
    for ns in ["default", "kube-system"] {
        let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), ns);
        create(
            &cms,
            json!({"metadata": {"name": "per-node", "ownerReferences": [owner_ref("Node", "v1", "n1", &uid, false)]}}),
        )
        .await;
    }
    nodes
        .delete("n1", &DeleteParams::background())
        .await
        .unwrap();
    for ns in ["default", "kube-system"] {
        let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), ns);
        eventually("the per-node config maps are collected", || async {
            cms.get_opt("per-node").await.unwrap().is_none()
        })
        .await;
    }
    // The worker counts a reconcile once its delete has returned, which the test may
    // observe first.
    let gc = c.gc.clone();
    eventually("the collector counted its work", || {
        let gc = gc.clone();
        async move { gc.reconciles() > 0 }
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn foreground_deletion_is_not_blocked_by_an_ownership_cycle() {
    let c = Cluster::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let mut uids = Vec::new();
    for name in ["c1", "c2", "c3"] {
        uids.push(
            create(&cms, json!({"metadata": {"name": name}}))
                .await
                .metadata
                .uid
                .unwrap(),
        );
    }
    // c1 is owned by c3, c2 by c1, c3 by c2, every reference blocking.
    for (name, (owner, uid)) in [
        ("c1", ("c3", &uids[2])),
        ("c2", ("c1", &uids[0])),
        ("c3", ("c2", &uids[1])),
    ] {
        cms.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": [
                json!({"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid,
                       "controller": true, "blockOwnerDeletion": true})]}})),
        )
        .await
        .unwrap();
    }
    cms.delete("c1", &DeleteParams::foreground()).await.unwrap();
    eventually("the whole cycle is gone", || async {
        // The root-CA publisher's kube-root-ca.crt lives in every namespace.
        cms.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|c| c.metadata.name.as_deref() == Some(crate::controllers::root_ca::NAME))
    })
    .await;
    c.stop().await;
}

/// An owner its informer never shows (added and removed before the informer listed): the
/// virtual node is checked again with backoff until the API says the owner is gone, and
/// then its dependents are released.
#[tokio::test]
async fn a_virtual_owner_that_exists_is_checked_again_until_it_is_gone() {
    use super::graph::{Graph, Identity, Observed, OwnerRef, Work};
    use crate::controllers::{Action, Reconciler, WorkQueue};

    let server = crate::apiserver::testing::TestServer::start().await;
    let client = server.admin();
    let nodes: Api<Node> = Api::all(client.clone());
    let node = create(&nodes, json!({"metadata": {"name": "n1"}})).await;
    let owner_uid = node.metadata.uid.unwrap();
    let types = super::ResourceTypes::discover(&client).await.unwrap();
    let worker = super::Worker {
        shared: std::sync::Arc::new(super::Shared {
            client,
            graph: parking_lot::Mutex::new(Graph::default()),
            types: parking_lot::Mutex::new(std::sync::Arc::new(types)),
            absent: parking_lot::Mutex::new(Default::default()),
            queue: WorkQueue::new(),
        }),
    };
    // Only the dependent was observed: its owner becomes a virtual node.
    let work = worker.shared.graph.lock().observe(Observed {
        identity: Identity {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("default".into()),
            name: "per-node".into(),
            uid: "dependent-uid".into(),
        },
        owners: vec![OwnerRef {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: "n1".into(),
            uid: owner_uid.clone(),
            block_owner_deletion: false,
        }],
        being_deleted: false,
        finalizers: vec![],
    });
    let check = Work::AttemptToDelete(owner_uid.clone());
    assert_eq!(work, vec![check.clone()]);
    assert!(
        matches!(worker.reconcile(&check).await.unwrap(), Action::Backoff),
        "an existing but unobserved owner is looked at again"
    );
    nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    assert!(matches!(
        worker.reconcile(&check).await.unwrap(),
        Action::Done
    ));
    assert!(
        worker.shared.graph.lock().view(&owner_uid).is_none(),
        "the virtual owner left the graph"
    );
}
