//! ResourceQuota: usage computation and scope matching, and the plugin through the
//! in-process client — refusals with upstream's texts, no over-commit under parallel
//! creates, dry-run, and the fast path of namespaces without quotas.

use super::usage::{self, kind_of, matching_resources, pod_constraints, resource_list, Kind};
use super::ResourceQuota;
use crate::apiserver::admission::{Admit, Attributes, Chain, Plugin};
use crate::apiserver::testing::TestServer;
use crate::apiserver::ApiState;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ResourceQuota as Quota};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};
use std::sync::Arc;

fn pod(name: &str, resources: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]}})
}

fn list(v: Value) -> Vec<(String, String)> {
    usage::usage("", "pods", Kind::Pods, &v)
        .into_iter()
        .map(|(k, q)| (k, q.to_string()))
        .collect()
}

#[test]
fn pod_usage_counts_requests_limits_and_their_aliases() {
    let p = pod(
        "p",
        json!({"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}),
    );
    let mut with_init = p.clone();
    with_init["spec"]["initContainers"] =
        json!([{"name": "i", "image": "x", "resources": {"requests": {"cpu": "2"}}}]);
    with_init["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "d", "image": "x", "resources": {"requests": {"cpu": "250m"}}}));
    let got = list(p);
    let expect = [
        ("count/pods", "1"),
        ("cpu", "250m"),
        ("limits.cpu", "1"),
        ("limits.memory", "128Mi"),
        ("memory", "64Mi"),
        ("pods", "1"),
        ("requests.cpu", "250m"),
        ("requests.memory", "64Mi"),
    ];
    assert_eq!(
        got,
        expect
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
    // An init container needing more than the containers' sum sets the pod's request.
    let got = list(with_init);
    assert!(
        got.contains(&("requests.cpu".into(), "2".into())),
        "{got:?}"
    );
    // A finished pod only counts as an object.
    let mut done = pod("d", json!({"requests": {"cpu": "1"}}));
    done["status"] = json!({"phase": "Succeeded"});
    assert_eq!(
        list(done),
        vec![("count/pods".to_string(), "1".to_string())]
    );
}

#[test]
fn services_claims_and_other_objects_count_as_upstream() {
    let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 1}, {"port": 2}]}});
    let u = usage::usage("", "services", Kind::Services, &svc);
    assert_eq!(u["services.nodeports"].to_string(), "2");
    assert_eq!(u["services"].to_string(), "1");
    let lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 1}]}});
    assert_eq!(
        usage::usage("", "services", Kind::Services, &lb)["services.loadbalancers"].to_string(),
        "1"
    );
    let pvc = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}});
    let u = usage::usage("", "persistentvolumeclaims", Kind::Claims, &pvc);
    assert_eq!(u["requests.storage"].to_string(), "1Gi");
    assert_eq!(
        u["fast.storageclass.storage.k8s.io/requests.storage"].to_string(),
        "1Gi"
    );
    assert_eq!(
        u["fast.storageclass.storage.k8s.io/persistentvolumeclaims"].to_string(),
        "1"
    );
    let cm = usage::usage("", "configmaps", Kind::Count, &json!({}));
    assert_eq!(
        cm.keys().collect::<Vec<_>>(),
        ["configmaps", "count/configmaps"]
    );
    let dep = usage::usage("apps", "deployments", Kind::Count, &json!({}));
    assert_eq!(dep.keys().collect::<Vec<_>>(), ["count/deployments.apps"]);
    assert_eq!(kind_of("", "events"), None);
    let names: Vec<String> = [
        "pods",
        "count/deployments.apps",
        "requests.cpu",
        "configmaps",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        matching_resources("apps", "deployments", Kind::Count, names.iter()),
        ["count/deployments.apps"]
    );
    assert_eq!(
        matching_resources("", "pods", Kind::Pods, names.iter()),
        ["pods", "requests.cpu"]
    );
}

#[test]
fn scopes_select_pods_as_upstream() {
    let quota = |scopes: Value, selector: Value| json!({"spec": {"scopes": scopes, "scopeSelector": selector}, "status": {"hard": {"pods": "5"}}});
    let best_effort = pod("b", json!({}));
    let mut burstable = pod("n", json!({"requests": {"cpu": "1"}}));
    burstable["spec"]["activeDeadlineSeconds"] = json!(30);
    burstable["spec"]["priorityClassName"] = json!("high");
    let matches = |q: &Value, p: &Value| usage::quota_matches("", "pods", Kind::Pods, q, p);
    let be = quota(json!(["BestEffort"]), Value::Null);
    assert!(matches(&be, &best_effort) && !matches(&be, &burstable));
    let nbe = quota(json!(["NotBestEffort", "Terminating"]), Value::Null);
    assert!(!matches(&nbe, &best_effort) && matches(&nbe, &burstable));
    let nt = quota(json!(["NotTerminating"]), Value::Null);
    assert!(matches(&nt, &best_effort) && !matches(&nt, &burstable));
    let prio = quota(
        Value::Null,
        json!({"matchExpressions": [{"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}),
    );
    assert!(!matches(&prio, &best_effort) && matches(&prio, &burstable));
    let mut affinity = pod("a", json!({}));
    affinity["spec"]["affinity"] = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "k", "namespaces": ["other"]}]}});
    let cross = quota(json!(["CrossNamespacePodAffinity"]), Value::Null);
    assert!(matches(&cross, &affinity) && !matches(&cross, &best_effort));
    // Scoped quotas never match other objects.
    assert!(!usage::quota_matches(
        "",
        "configmaps",
        Kind::Count,
        &json!({"spec": {"scopes": ["BestEffort"]}, "status": {"hard": {"count/configmaps": "1"}}}),
        &json!({})
    ));
}

#[test]
fn cpu_and_memory_quotas_require_every_container_to_say_its_needs() {
    let mut p = pod("p", json!({"requests": {"cpu": "1"}}));
    p["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "b", "image": "x"}));
    let required = vec![
        "requests.cpu".to_string(),
        "limits.memory".to_string(),
        "pods".into(),
    ];
    assert_eq!(
        pod_constraints(&required, &p).unwrap_err(),
        "must specify limits.memory for: b,c; requests.cpu for: b"
    );
    assert!(pod_constraints(&["pods".to_string()], &p).is_ok());
    assert_eq!(resource_list(&json!({"cpu": "x"})).len(), 0);
}

/// Lets the test keep a handle on the plugin the chain owns.
struct Shared(Arc<ResourceQuota>);

impl Plugin for Shared {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        self.0.handles(attrs)
    }
    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        self.0.validate(state, attrs, obj, old)
    }
}

async fn server() -> (TestServer, Arc<ResourceQuota>) {
    let plugin = Arc::new(ResourceQuota::default());
    let srv = TestServer::with_admission(Chain::of(vec![Box::new(Shared(plugin.clone()))])).await;
    (srv, plugin)
}

/// Creates a quota and sets its status as the quota controller would.
async fn quota(srv: &TestServer, name: &str, hard: Value, used: Option<Value>) {
    let api: Api<Quota> = Api::namespaced(srv.admin(), "default");
    let q: Quota =
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"hard": hard}}))
            .unwrap();
    let mut q = api.create(&PostParams::default(), &q).await.unwrap();
    let mut status = json!({"hard": hard});
    if let Some(used) = used {
        status["used"] = used;
    }
    q.status = Some(serde_json::from_value(status).unwrap());
    api.replace_status(name, &PostParams::default(), &q)
        .await
        .unwrap();
}

async fn used(srv: &TestServer, name: &str) -> Value {
    let api: Api<Quota> = Api::namespaced(srv.admin(), "default");
    serde_json::to_value(api.get(name).await.unwrap()).unwrap()["status"]["used"].clone()
}

fn refusal(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn parallel_creates_never_over_commit_a_quota() {
    let (srv, _) = server().await;
    quota(&srv, "q", json!({"pods": "5"}), Some(json!({"pods": "0"}))).await;
    let api: Api<Pod> = Api::namespaced(srv.admin(), "default");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let api = api.clone();
        tasks.spawn(async move {
            let p: Pod = serde_json::from_value(pod(&format!("p{i}"), json!({}))).unwrap();
            api.create(&PostParams::default(), &p).await
        });
    }
    let (mut ok, mut refused) = (0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => refused.push(refusal(e)),
        }
    }
    assert_eq!(ok, 5);
    assert_eq!(refused.len(), 19);
    for (code, msg) in &refused {
        assert_eq!(*code, 403);
        assert!(
            msg.ends_with(
                "is forbidden: exceeded quota: q, requested: pods=1, used: pods=5, limited: pods=5"
            ),
            "{msg}"
        );
    }
    assert_eq!(used(&srv, "q").await, json!({"pods": "5"}));
    assert_eq!(api.list(&Default::default()).await.unwrap().items.len(), 5);
}

#[tokio::test]
async fn refusals_carry_upstream_texts_and_dry_run_charges_nothing() {
    let (srv, _) = server().await;
    quota(
        &srv,
        "compute",
        json!({"requests.cpu": "1", "pods": "10"}),
        Some(json!({"requests.cpu": "0", "pods": "0"})),
    )
    .await;
    let api: Api<Pod> = Api::namespaced(srv.admin(), "default");
    let mk = |name: &str, r: Value| -> Pod { serde_json::from_value(pod(name, r)).unwrap() };
    let (code, msg) = refusal(
        api.create(&PostParams::default(), &mk("none", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 403);
    assert_eq!(
        msg,
        r#"pods "none" is forbidden: failed quota: compute: must specify requests.cpu for: c"#
    );
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&dry, &mk("dry", json!({"requests": {"cpu": "600m"}})))
        .await
        .unwrap();
    api.create(
        &PostParams::default(),
        &mk("a", json!({"requests": {"cpu": "600m"}})),
    )
    .await
    .unwrap();
    assert_eq!(
        used(&srv, "compute").await,
        json!({"requests.cpu": "600m", "pods": "1"})
    );
    let (_, msg) = refusal(
        api.create(
            &PostParams::default(),
            &mk("b", json!({"requests": {"cpu": "500m"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        msg,
        r#"pods "b" is forbidden: exceeded quota: compute, requested: requests.cpu=500m, used: requests.cpu=600m, limited: requests.cpu=1"#
    );
    // A quota whose usage is not known yet refuses what it constrains.
    quota(&srv, "fresh", json!({"count/configmaps": "3"}), None).await;
    let cms: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    let (code, msg) = refusal(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!(code, 403);
    assert_eq!(
        msg,
        r#"configmaps "c" is forbidden: status unknown for quota: fresh, resources: count/configmaps"#
    );
}

#[tokio::test]
async fn namespaces_without_quotas_skip_the_plugin() {
    let (srv, plugin) = server().await;
    let cms: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let cm = |n: &str| -> ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": n}})).unwrap()
    };
    cms.create(&PostParams::default(), &cm("first"))
        .await
        .unwrap();
    assert!(!plugin.watches("default"));
    quota(
        &srv,
        "q",
        json!({"count/configmaps": "2"}),
        Some(json!({"count/configmaps": "1"})),
    )
    .await;
    assert!(plugin.watches("default"));
    cms.create(&PostParams::default(), &cm("second"))
        .await
        .unwrap();
    let (_, msg) = refusal(
        cms.create(&PostParams::default(), &cm("third"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        msg,
        r#"configmaps "third" is forbidden: exceeded quota: q, requested: count/configmaps=1, used: count/configmaps=2, limited: count/configmaps=2"#
    );
    // Deleting the quota lifts the limit at once.
    let quotas: Api<Quota> = Api::namespaced(srv.admin(), "default");
    quotas.delete("q", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &cm("third"))
        .await
        .unwrap();
}
