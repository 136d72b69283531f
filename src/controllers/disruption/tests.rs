use super::budget::{disrupted_pods, expected_and_desired, healthy};
use crate::controllers::controller_utils::scaled_value;
use crate::controllers::testing::{eventually, example_crd, mark_pods_ready, Cluster};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, EvictParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;

fn spec(v: serde_json::Value) -> PodDisruptionBudgetSpec {
    serde_json::from_value(v).unwrap()
}

#[test]
fn percentages_scale_by_the_controllers_replicas_rounding_up() {
    assert_eq!(
        scaled_value(&IntOrString::String("50%".into()), 5, true),
        Ok(3)
    );
    assert_eq!(
        scaled_value(&IntOrString::String("50%".into()), 5, false),
        Ok(2)
    );
    assert_eq!(scaled_value(&IntOrString::Int(2), 5, true), Ok(2));
    assert!(scaled_value(&IntOrString::String("half".into()), 5, true).is_err());
    // minAvailable as a number counts the selected pods; no scale needed.
    let min = spec(json!({"minAvailable": 3}));
    assert_eq!(
        expected_and_desired(&min, 4, || Err("unused".into())),
        Ok((4, 3))
    );
    let pct = spec(json!({"minAvailable": "50%"}));
    assert_eq!(expected_and_desired(&pct, 2, || Ok(5)), Ok((5, 3)));
    let max = spec(json!({"maxUnavailable": 1}));
    assert_eq!(expected_and_desired(&max, 4, || Ok(4)), Ok((4, 3)));
    let max_pct = spec(json!({"maxUnavailable": "30%"}));
    assert_eq!(expected_and_desired(&max_pct, 4, || Ok(4)), Ok((4, 2)));
    // Without a controller scale a percentage cannot be computed.
    assert!(expected_and_desired(&max_pct, 4, || Err("found no controllers".into())).is_err());
}

fn pod(name: &str, ready: bool, deleting: bool) -> Pod {
    let mut p: Pod = serde_json::from_value(json!({"metadata": {"name": name},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}))
    .unwrap();
    if deleting {
        p.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    }
    p
}

#[test]
fn disrupted_pods_stop_counting_as_healthy_until_deleted_or_two_minutes_old() {
    let now: Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
    let ago = |s: i64| Time(now.checked_sub(SignedDuration::from_secs(s)).unwrap());
    let pods = [
        pod("a", true, false),
        pod("b", true, false),
        pod("c", true, false),
        pod("d", true, true),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let recorded: BTreeMap<String, Time> = [
        ("a", ago(10)),
        ("b", ago(130)),
        ("d", ago(5)),
        ("gone", ago(5)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let (kept, recheck) = disrupted_pods(&refs, Some(&recorded), now);
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(
        recheck,
        Some(now.checked_add(SignedDuration::from_secs(110)).unwrap())
    );
    // a is disrupted, d is deleting: b and c are healthy.
    assert_eq!(healthy(&refs, &kept), 2);
}

#[tokio::test]
async fn eviction_spends_the_budget_and_then_answers_429_with_upstreams_cause() {
    let c = Cluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    for i in 0..3 {
        let p: Pod = serde_json::from_value(
            json!({"metadata": {"name": format!("p{i}"), "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        )
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    mark_pods_ready(&c.client, "default").await;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "default");
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "b"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "x"}}}}))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    eventually("the budget allows one disruption", || async {
        let s = pdbs.get("b").await.unwrap().status.unwrap_or_default();
        s.disruptions_allowed == 1
            && s.current_healthy == 3
            && s.desired_healthy == 2
            && s.expected_pods == 3
    })
    .await;
    let status = pdbs.get("b").await.unwrap().status.unwrap();
    let cond = &status.conditions.unwrap()[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.status.as_str(),
            cond.reason.as_str()
        ),
        ("DisruptionAllowed", "True", "SufficientPods")
    );

    pods.evict("p0", &EvictParams::default())
        .await
        .expect("first eviction is allowed");
    let err = pods
        .evict("p1", &EvictParams::default())
        .await
        .expect_err("the budget is spent");
    let kube::Error::Api(e) = err else {
        panic!("{err}")
    };
    assert_eq!(e.code, 429);
    assert_eq!(
        e.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert!(pods.get_opt("p1").await.unwrap().is_some());
    // The pod is gone (no node: deleted at once) and the controller settles on 2 healthy.
    eventually("the budget is recomputed", || async {
        let s = pdbs.get("b").await.unwrap().status.unwrap_or_default();
        s.current_healthy == 2 && s.disruptions_allowed == 0 && s.disrupted_pods.is_none()
    })
    .await;
    let raw = c
        .client
        .request_text(
            http::Request::post("/api/v1/namespaces/default/pods/p1/eviction")
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p1"}})).unwrap())
                .unwrap(),
        )
        .await;
    let body = match raw {
        Err(kube::Error::Api(e)) => e.message,
        other => panic!("{other:?}"),
    };
    assert!(body.contains("disruption budget"), "{body}");
    // A second budget over the same pods makes eviction refuse to choose.
    let pdb2: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "b2"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "x"}}}}))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb2).await.unwrap();
    let err = pods
        .evict("p1", &EvictParams::default())
        .await
        .expect_err("two budgets");
    let kube::Error::Api(e) = err else {
        panic!("{err}")
    };
    assert_eq!(e.code, 500);
    assert!(
        e.message.contains("more than one PodDisruptionBudget"),
        "{}",
        e.message
    );
    c.stop().await;
}

#[tokio::test]
async fn a_budget_whose_pods_have_no_controller_cannot_use_percentages() {
    let c = Cluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "labels": {"app": "y"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "default");
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "b"},
        "spec": {"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "y"}}}}))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    eventually("the budget reports SyncFailed", || async {
        let s = pdbs.get("b").await.unwrap().status.unwrap_or_default();
        s.conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.reason == "SyncFailed" && c.message.contains("found no controller ref"))
    })
    .await;
    c.stop().await;
}

#[tokio::test]
async fn unready_pods_follow_the_unhealthy_pod_eviction_policy_and_dry_run_changes_nothing() {
    let c = Cluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    for i in 0..2 {
        let p: Pod = serde_json::from_value(
            json!({"metadata": {"name": format!("u{i}"), "labels": {"app": "u"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}),
        )
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    // Running but not Ready: the budget (minAvailable 1) is not met.
    let running = json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "False"}]}});
    for i in 0..2 {
        pods.patch_status(
            &format!("u{i}"),
            &Default::default(),
            &kube::api::Patch::Merge(&running),
        )
        .await
        .unwrap();
    }
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "default");
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "u"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "u"}}}}))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    eventually("the budget is computed", || async {
        let s = pdbs.get("u").await.unwrap().status.unwrap_or_default();
        s.observed_generation == Some(1) && s.expected_pods == 2 && s.current_healthy == 0
    })
    .await;
    // IfHealthyBudget (the default): an unready pod of an unmet budget is protected.
    let err = pods
        .evict("u0", &EvictParams::default())
        .await
        .expect_err("budget not met");
    assert!(
        matches!(err, kube::Error::Api(ref e) if e.code == 429),
        "{err}"
    );
    // AlwaysAllow: unready pods may always go.
    let allow = json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}});
    pdbs.patch("u", &Default::default(), &kube::api::Patch::Merge(&allow))
        .await
        .unwrap();
    eventually("the new generation is observed", || async {
        pdbs.get("u")
            .await
            .unwrap()
            .status
            .unwrap_or_default()
            .observed_generation
            == Some(2)
    })
    .await;
    let dry = EvictParams {
        delete_options: None,
        post_options: PostParams {
            dry_run: true,
            field_manager: None,
        },
    };
    pods.evict("u0", &dry)
        .await
        .expect("dry run eviction is allowed");
    assert!(
        pods.get_opt("u0").await.unwrap().is_some(),
        "a dry run deletes nothing"
    );
    pods.evict("u0", &EvictParams::default())
        .await
        .expect("unready pod evicted");
    assert!(pods.get_opt("u0").await.unwrap().is_none());
    c.stop().await;
}

#[tokio::test]
async fn a_percentage_budget_over_a_custom_resources_pods_counts_its_scale() {
    use kube::api::DynamicObject;
    let c = Cluster::start().await;
    let scale = json!({"scale": {"specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas"}});
    let pools = example_crd(&c.client, "Pool", "pools", scale).await;
    let pool: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.com/v1",
        "kind": "Pool", "metadata": {"name": "pool"}, "spec": {"replicas": 4}}))
    .unwrap();
    let uid = pools
        .create(&PostParams::default(), &pool)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    for i in 0..2 {
        let p: Pod = serde_json::from_value(json!({"metadata": {
                "name": format!("p{i}"), "labels": {"app": "pool"},
                "ownerReferences": [{"apiVersion": "example.com/v1", "kind": "Pool",
                    "name": "pool", "uid": uid, "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    mark_pods_ready(&c.client, "default").await;
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "default");
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "b"},
        "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "pool"}}}}))
    .unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    // Expected pods come from the pool's scale (4 replicas), not the 2 pods that exist.
    eventually("the budget counts the pool's scale", || async {
        let s = pdbs.get("b").await.unwrap().status.unwrap_or_default();
        s.expected_pods == 4
            && s.desired_healthy == 2
            && s.current_healthy == 2
            && s.disruptions_allowed == 0
    })
    .await;
    c.stop().await;
}
