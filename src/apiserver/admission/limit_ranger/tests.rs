//! LimitRanger through the in-process API.

use super::*;
use crate::apiserver::admission::Chain;
use crate::apiserver::testing::TestServer;
use k8s_openapi::api::core::v1::{LimitRange, PersistentVolumeClaim, Pod};
use kube::api::{Api, PostParams};

async fn server(limits: Value) -> (TestServer, Api<Pod>, Api<PersistentVolumeClaim>) {
    let srv = TestServer::with_admission(Chain::of(vec![Box::new(LimitRanger)])).await;
    let lrs: Api<LimitRange> = Api::namespaced(srv.admin(), "default");
    let lr =
        serde_json::from_value(json!({"metadata": {"name": "limits"}, "spec": {"limits": limits}}))
            .unwrap();
    lrs.create(&PostParams::default(), &lr).await.unwrap();
    let pods = Api::namespaced(srv.admin(), "default");
    let pvcs = Api::namespaced(srv.admin(), "default");
    (srv, pods, pvcs)
}

fn pod(name: &str, containers: Value) -> Pod {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": containers}}))
        .unwrap()
}

fn refused(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403, "{}", s.message);
            s.message
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn container_defaults_are_applied_and_annotated() {
    let (_srv, pods, _) = server(json!([{"type": "Container",
        "default": {"cpu": "500m", "memory": "128Mi"},
        "defaultRequest": {"cpu": "100m", "memory": "64Mi"}}]))
    .await;
    let p = pods
        .create(
            &PostParams::default(),
            &pod(
                "a",
                json!([
            {"name": "app", "image": "i"},
            {"name": "side", "image": "i", "resources": {"requests": {"cpu": "200m"}}}]),
            ),
        )
        .await
        .unwrap();
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(
        v["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}})
    );
    assert_eq!(
        v["spec"]["containers"][1]["resources"],
        json!({"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "200m", "memory": "64Mi"}})
    );
    assert_eq!(
        v["metadata"]["annotations"][ANNOTATION],
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app; memory request for container side; cpu, memory limit for container side"
    );
}

#[tokio::test]
async fn container_min_max_and_ratio_are_enforced() {
    let (_srv, pods, _) = server(json!([{"type": "Container",
        "max": {"cpu": "1"}, "min": {"memory": "32Mi"}, "maxLimitRequestRatio": {"cpu": "2"}}]))
    .await;
    let e = pods
        .create(&PostParams::default(), &pod("big", json!([{"name": "c", "image": "i",
            "resources": {"limits": {"cpu": "2", "memory": "64Mi"}, "requests": {"cpu": "1500m", "memory": "64Mi"}}}])))
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        r#"pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2"#
    );
    let e = pods
        .create(
            &PostParams::default(),
            &pod("none", json!([{"name": "c", "image": "i"}])),
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        r#"pods "none" is forbidden: [minimum memory usage per Container is 32Mi.  No request is specified, maximum cpu usage per Container is 1.  No limit is specified, cpu max limit to request ratio per Container is 2, but no request is specified or request is 0]"#
    );
    let e = pods
        .create(&PostParams::default(), &pod("ratio", json!([{"name": "c", "image": "i",
            "resources": {"limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "64Mi"}}}])))
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        r#"pods "ratio" is forbidden: cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000"#
    );
    pods.create(&PostParams::default(), &pod("fits", json!([{"name": "c", "image": "i",
        "resources": {"limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "500m", "memory": "64Mi"}}}])))
        .await
        .unwrap();
}

#[tokio::test]
async fn pod_totals_are_bounded() {
    let (_srv, pods, _) = server(json!([{"type": "Pod", "max": {"memory": "1Gi"}}])).await;
    let c = |name: &str, mem: &str| {
        json!({"name": name, "image": "i",
        "resources": {"limits": {"memory": mem}, "requests": {"memory": mem}}})
    };
    let e = pods
        .create(
            &PostParams::default(),
            &pod("two", json!([c("a", "768Mi"), c("b", "512Mi")])),
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        r#"pods "two" is forbidden: maximum memory usage per Pod is 1Gi, but limit is 1280Mi"#
    );
    pods.create(
        &PostParams::default(),
        &pod("one", json!([c("a", "512Mi"), c("b", "512Mi")])),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn claims_are_bounded_by_claim_limits() {
    let (_srv, _, pvcs) = server(json!([{"type": "PersistentVolumeClaim",
        "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]))
    .await;
    let claim = |name: &str, size: &str| -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}}}}),
        )
        .unwrap()
    };
    let e = pvcs
        .create(&PostParams::default(), &claim("big", "20Gi"))
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        r#"persistentvolumeclaims "big" is forbidden: maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"#
    );
    let e = pvcs
        .create(&PostParams::default(), &claim("small", "500Mi"))
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        r#"persistentvolumeclaims "small" is forbidden: minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"#
    );
    pvcs.create(&PostParams::default(), &claim("ok", "5Gi"))
        .await
        .unwrap();
}
