//! Unit tests of the webhook machinery: rule matching, the AdmissionReview shape, answer
//! checks, patches and failure policies as pure functions; selectors, reinvocation, dry runs
//! and failures through an in-process server calling a real HTTPS webhook.

use super::config::{hooks_of, Flavor, Hook};
use super::dispatch::{apply_patch, denial, settle, Failure, Webhooks};
use super::matching::{invocation_for, may_match};
use super::review;
use crate::api::registry::{Registry, ResourceType};
use crate::apiserver::admission::{Attributes, Chain, Operation};
use crate::apiserver::testing::TestServer;
use crate::apiserver::UserInfo;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Service};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};
use std::sync::Arc;

#[path = "../../../../tests/common/webhook_server.rs"]
mod webhook_server;
use webhook_server::{WebhookServer, DENY_MESSAGE, LABEL, SERVICE, WARNING};

fn rt(group: &str, version: &str, plural: &str) -> Arc<ResourceType> {
    Registry::new()
        .lookup(group, version, plural)
        .unwrap_or_else(|| panic!("{group}/{version}/{plural} is served"))
}

fn hook(webhook: Value) -> Hook {
    let config = json!({"metadata": {"name": "cfg"}, "webhooks": [webhook]});
    let mut no_client = |_: &str, _: Option<&str>| Err("no client in this test".to_owned());
    hooks_of(Flavor::Validating, &config, &mut no_client)
        .pop()
        .expect("one webhook")
}

fn rule_hook(rule: Value) -> Hook {
    hook(json!({"name": "h.example.com", "rules": [rule]}))
}

struct Req {
    rt: Arc<ResourceType>,
    user: UserInfo,
}

impl Req {
    fn new(group: &str, version: &str, plural: &str) -> Req {
        Req {
            rt: rt(group, version, plural),
            user: UserInfo::new("alice", &["devs"]),
        }
    }
    fn attrs<'a>(
        &'a self,
        op: Operation,
        sub: Option<&'a str>,
        ns: Option<&'a str>,
    ) -> Attributes<'a> {
        Attributes::new(op, &self.rt, sub, ns, "x", &self.user, false)
    }
}

#[test]
fn rules_match_operations_groups_versions_and_wildcards() {
    let pods = Req::new("", "v1", "pods");
    let create = pods.attrs(Operation::Create, None, Some("default"));
    let update = pods.attrs(Operation::Update, None, Some("default"));
    let reg = Registry::new();
    let h = rule_hook(
        json!({"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}),
    );
    assert!(invocation_for(&h, &create, &reg).is_some());
    assert!(invocation_for(&h, &update, &reg).is_none());
    let any = rule_hook(
        json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]}),
    );
    assert!(invocation_for(&any, &update, &reg).is_some());
    let apps = rule_hook(
        json!({"operations": ["*"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["*"]}),
    );
    assert!(invocation_for(&apps, &create, &reg).is_none());
    assert!(!may_match(&apps, &create));
}

#[test]
fn rules_match_subresources_only_when_named() {
    let pods = Req::new("", "v1", "pods");
    let status = pods.attrs(Operation::Update, Some("status"), Some("default"));
    let main = pods.attrs(Operation::Update, None, Some("default"));
    let reg = Registry::new();
    let rule = |res: &str| {
        rule_hook(
            json!({"operations": ["UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": [res]}),
        )
    };
    assert!(invocation_for(&rule("pods"), &status, &reg).is_none());
    assert!(invocation_for(&rule("pods/status"), &status, &reg).is_some());
    assert!(invocation_for(&rule("*/status"), &status, &reg).is_some());
    assert!(invocation_for(&rule("pods/*"), &status, &reg).is_some());
    assert!(invocation_for(&rule("*/status"), &main, &reg).is_none());
    assert!(invocation_for(&rule("*"), &status, &reg).is_none());
    // As upstream: a `*` subresource also matches the resource itself.
    assert!(invocation_for(&rule("*/*"), &main, &reg).is_some());
    assert!(invocation_for(&rule("pods/*"), &main, &reg).is_some());
    assert!(invocation_for(&rule("*/*"), &status, &reg).is_some());
}

#[test]
fn rule_scope_tells_namespaced_from_cluster_requests_and_namespaces_are_cluster() {
    let reg = Registry::new();
    let scoped = |scope: &str| {
        rule_hook(
            json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"], "scope": scope}),
        )
    };
    let cms = Req::new("", "v1", "configmaps");
    let nss = Req::new("", "v1", "namespaces");
    let nodes = Req::new("", "v1", "nodes");
    let cm = cms.attrs(Operation::Create, None, Some("default"));
    let ns = nss.attrs(Operation::Update, None, None);
    let node = nodes.attrs(Operation::Create, None, None);
    assert!(invocation_for(&scoped("Namespaced"), &cm, &reg).is_some());
    assert!(invocation_for(&scoped("Namespaced"), &ns, &reg).is_none());
    assert!(invocation_for(&scoped("Namespaced"), &node, &reg).is_none());
    assert!(invocation_for(&scoped("Cluster"), &cm, &reg).is_none());
    assert!(invocation_for(&scoped("Cluster"), &ns, &reg).is_some());
    assert!(invocation_for(&scoped("Cluster"), &node, &reg).is_some());
    assert!(invocation_for(&scoped("*"), &cm, &reg).is_some());
}

#[test]
fn match_policy_equivalent_finds_another_served_version_and_exact_does_not() {
    let reg = Registry::new();
    let hpa_v2 = Req::new("autoscaling", "v2", "horizontalpodautoscalers");
    let attrs = hpa_v2.attrs(Operation::Create, None, Some("default"));
    let rule = json!({"operations": ["CREATE"], "apiGroups": ["autoscaling"], "apiVersions": ["v1"], "resources": ["horizontalpodautoscalers"]});
    let equivalent = hook(json!({"name": "e", "rules": [rule]}));
    let inv = invocation_for(&equivalent, &attrs, &reg).expect("equivalent match");
    assert_eq!(
        (inv.version.as_str(), inv.kind.as_str()),
        ("v1", "HorizontalPodAutoscaler")
    );
    assert!(may_match(&equivalent, &attrs));
    let exact = hook(json!({"name": "x", "matchPolicy": "Exact", "rules": [rule]}));
    assert!(invocation_for(&exact, &attrs, &reg).is_none());
    assert!(!may_match(&exact, &attrs));
}

#[test]
fn a_subresource_with_its_own_kind_is_reviewed_as_that_kind_of_the_parent_resource() {
    let any = rule_hook(
        json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*/*"]}),
    );
    let reg = Registry::new();
    let kinds = |group: &str, plural: &str, sub: Option<&str>| {
        let req = Req::new(group, "v1", plural);
        let attrs = req.attrs(Operation::Update, sub, Some("default"));
        let inv = invocation_for(&any, &attrs, &reg).expect("matches */*");
        let r = review::request("v1", "u", &inv, &attrs, None, None)["request"].clone();
        (
            r["kind"].clone(),
            r["requestKind"].clone(),
            r["resource"]["resource"].clone(),
            r["subResource"].clone(),
        )
    };
    // As upstream: a Scale of a Deployment is an autoscaling/v1 Scale of apps/v1
    // deployments, an eviction a policy/v1 Eviction of pods; a status write is the parent
    // kind itself.
    let scale = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
    assert_eq!(
        kinds("apps", "deployments", Some("scale")),
        (scale.clone(), scale, json!("deployments"), json!("scale"))
    );
    let eviction = json!({"group": "policy", "version": "v1", "kind": "Eviction"});
    assert_eq!(
        kinds("", "pods", Some("eviction")),
        (eviction.clone(), eviction, json!("pods"), json!("eviction"))
    );
    let deployment = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    assert_eq!(
        kinds("apps", "deployments", Some("status")),
        (
            deployment.clone(),
            deployment,
            json!("deployments"),
            json!("status")
        )
    );
}

#[test]
fn a_mutating_webhooks_patch_of_a_scale_gets_no_defaults_of_the_parent_kind() {
    let deployments = Req::new("apps", "v1", "deployments");
    let scale_write = deployments.attrs(Operation::Update, Some("scale"), Some("default"));
    let mut scale = json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": "web"}, "spec": {"replicas": 5}});
    let cap = json!([{"op": "replace", "path": "/spec/replicas", "value": 2}]);
    assert!(apply_patch(&scale_write, &mut scale, &cap).unwrap());
    assert_eq!(
        scale,
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": "web"}, "spec": {"replicas": 2}})
    );
    // A patch of the Deployment itself is decoded as a Deployment: a field it does not
    // have is dropped, defaults are applied.
    let main_write = deployments.attrs(Operation::Update, None, Some("default"));
    let mut d = json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let cap_and_more = json!([
        {"op": "replace", "path": "/spec/replicas", "value": 2},
        {"op": "add", "path": "/spec/notAField", "value": "dropped"},
    ]);
    apply_patch(&main_write, &mut d, &cap_and_more).unwrap();
    assert_eq!(d["spec"]["replicas"], 2, "{d}");
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate", "{d}");
    assert!(d["spec"].get("notAField").is_none(), "{d}");
}

#[test]
fn defaults_are_upstreams_and_timeouts_are_capped() {
    let h = hook(json!({"name": "d"}));
    assert!(!h.fail_open, "failurePolicy defaults to Fail");
    assert!(h.equivalent, "matchPolicy defaults to Equivalent");
    assert_eq!(h.timeout.as_secs(), 10);
    assert!(h.namespace_selector.as_ref().unwrap().is_empty());
    let h = hook(json!({"name": "d", "timeoutSeconds": 300, "failurePolicy": "Ignore"}));
    assert_eq!(h.timeout.as_secs(), 30);
    assert!(h.fail_open);
}

#[test]
fn the_admission_review_carries_what_upstream_sends() {
    let cms = Req::new("", "v1", "configmaps");
    let mut user = UserInfo::new("alice", &["devs", "system:authenticated"]);
    user.uid = "u-1".into();
    user.extra.insert("scopes".into(), vec!["a".into()]);
    let mut attrs = Attributes::new(
        Operation::Update,
        &cms.rt,
        None,
        Some("team"),
        "cm",
        &user,
        true,
    );
    attrs.options =
        json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl"});
    let inv = invocation_for(
        &rule_hook(json!({"operations": ["*"], "apiGroups": ["*"], "apiVersions": ["*"], "resources": ["*"]})),
        &attrs,
        &Registry::new(),
    )
    .unwrap();
    let new = json!({"metadata": {"name": "cm", "namespace": "team"}, "data": {"k": "2"}});
    let old = json!({"metadata": {"name": "cm", "namespace": "team"}, "data": {"k": "1"}});
    let r = review::request("v1", "the-uid", &inv, &attrs, Some(&new), Some(&old));
    assert_eq!(
        r,
        json!({
            "kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
            "request": {
                "uid": "the-uid",
                "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                "resource": {"group": "", "version": "v1", "resource": "configmaps"},
                "requestKind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                "requestResource": {"group": "", "version": "v1", "resource": "configmaps"},
                "name": "cm", "namespace": "team", "operation": "UPDATE",
                "userInfo": {"username": "alice", "uid": "u-1", "groups": ["devs", "system:authenticated"], "extra": {"scopes": ["a"]}},
                "object": new, "oldObject": old, "dryRun": true,
                "options": {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": "kubectl"},
            }
        })
    );
    // A create has no old object and gets CreateOptions; a Namespace update names itself.
    let nss = Req::new("", "v1", "namespaces");
    let attrs = Attributes::new(Operation::Delete, &nss.rt, None, None, "team", &user, false);
    let r = review::request("v1", "u", &inv, &attrs, None, Some(&old));
    assert_eq!(r["request"]["namespace"], "team");
    assert_eq!(r["request"]["object"], Value::Null);
    assert_eq!(r["request"]["options"]["kind"], "DeleteOptions");
    assert_eq!(
        review::choose_version(&["v1beta1".into(), "v1".into()]).unwrap(),
        "v1beta1"
    );
    assert!(review::choose_version(&["v2".into()])
        .unwrap_err()
        .contains("does not accept known AdmissionReview versions (v1, v1beta1)"));
}

#[test]
fn answers_are_checked_as_upstream_checks_them() {
    let ok = |resp: Value| json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp});
    let a = review::verify(
        "v1",
        "u",
        false,
        &ok(json!({"uid": "u", "allowed": true, "warnings": ["w"]})),
    )
    .unwrap();
    assert!(a.allowed);
    assert_eq!(a.warnings, vec!["w"]);
    let err =
        review::verify("v1", "u", false, &ok(json!({"uid": "v", "allowed": true}))).unwrap_err();
    assert_eq!(
        err,
        "received invalid webhook response: expected response.uid=\"u\", got \"v\""
    );
    let err = review::verify("v1", "u", false, &json!({"response": {"uid": "u"}})).unwrap_err();
    assert!(
        err.ends_with(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got /, Kind="
        ),
        "{err}"
    );
    let err = review::verify("v1", "u", false, &json!({})).unwrap_err();
    assert_eq!(
        err,
        "received invalid webhook response: webhook response was absent"
    );
    let err = review::verify(
        "v1",
        "u",
        false,
        &ok(json!({"uid": "u", "allowed": true, "patchType": "JSONPatch"})),
    )
    .unwrap_err();
    assert!(
        err.ends_with("validating webhook may not return response.patchType"),
        "{err}"
    );
    let err = review::verify(
        "v1",
        "u",
        true,
        &ok(json!({"uid": "u", "allowed": true, "patch": "W10="})),
    )
    .unwrap_err();
    assert!(
        err.ends_with("webhook returned response.patch but not response.patchType"),
        "{err}"
    );
    let a = review::verify(
        "v1",
        "u",
        true,
        &ok(json!({"uid": "u", "allowed": true, "patch": "W10=", "patchType": "JSONPatch"})),
    )
    .unwrap();
    assert_eq!(a.patch, Some(json!([])));
}

#[test]
fn patches_are_applied_defaults_follow_and_bad_ones_are_internal_errors() {
    let pods = Req::new("", "v1", "configmaps");
    let attrs = pods.attrs(Operation::Create, None, Some("default"));
    let mut obj = json!({"metadata": {"name": "x"}});
    let changed = apply_patch(
        &attrs,
        &mut obj,
        &json!([{"op": "add", "path": "/data", "value": {"a": "b"}}]),
    )
    .unwrap();
    assert!(changed);
    assert_eq!(obj["data"]["a"], "b");
    assert!(!apply_patch(
        &attrs,
        &mut obj,
        &json!([{"op": "test", "path": "/data/a", "value": "b"}])
    )
    .unwrap());
    let err = apply_patch(
        &attrs,
        &mut obj,
        &json!([{"op": "remove", "path": "/nope"}]),
    )
    .unwrap_err();
    assert_eq!(err.code, 500);
    assert!(
        err.message.starts_with("Internal error occurred: "),
        "{}",
        err.message
    );
}

#[test]
fn failure_policy_decides_about_failed_calls_but_never_about_denials() {
    let fail = hook(json!({"name": "f.example.com"}));
    let ignore = hook(json!({"name": "i.example.com", "failurePolicy": "Ignore"}));
    let calling = || {
        Failure::Calling(
            "failed to call webhook: Post \"https://x\": context deadline exceeded".into(),
        )
    };
    let err = settle(&fail, calling()).unwrap_err();
    assert_eq!(err.code, 500);
    assert_eq!(err.reason, "InternalError");
    assert_eq!(
        err.message,
        "Internal error occurred: failed calling webhook \"f.example.com\": failed to call webhook: Post \"https://x\": context deadline exceeded"
    );
    assert!(settle(&ignore, calling()).is_ok());
    let denied = denial("i.example.com", &json!({"code": 200, "message": "no"}));
    assert!(settle(&ignore, Failure::Refused(denied)).is_err());
}

#[test]
fn denials_read_as_upstreams() {
    let e = denial(
        "d.example.com",
        &json!({"code": 403, "message": "nope", "reason": "Forbidden"}),
    );
    assert_eq!((e.code, e.reason), (403, "Forbidden"));
    assert_eq!(
        e.message,
        "admission webhook \"d.example.com\" denied the request: nope"
    );
    let e = denial("d.example.com", &Value::Null);
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        "admission webhook \"d.example.com\" denied the request without explanation"
    );
    let e = denial("d.example.com", &json!({"reason": "TooOld"}));
    assert_eq!(
        e.message,
        "admission webhook \"d.example.com\" denied the request: TooOld"
    );
}

// --- through an in-process server and a real HTTPS webhook ---

async fn server() -> TestServer {
    TestServer::with_admission(Chain::standard()).await
}

fn webhook(name: &str, url: &str, ca: &str, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "clientConfig": {"url": url, "caBundle": ca},
        "rules": [{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    if let (Some(w), Some(extra)) = (w.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            w.insert(k.clone(), v.clone());
        }
    }
    w
}

async fn mutating(srv: &TestServer, name: &str, hooks: Vec<Value>) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(srv.admin());
    let cfg =
        serde_json::from_value(json!({"metadata": {"name": name}, "webhooks": hooks})).unwrap();
    api.create(&PostParams::default(), &cfg).await.unwrap();
}

async fn validating(srv: &TestServer, name: &str, hooks: Vec<Value>) {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(srv.admin());
    let cfg =
        serde_json::from_value(json!({"metadata": {"name": name}, "webhooks": hooks})).unwrap();
    api.create(&PostParams::default(), &cfg).await.unwrap();
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn no_configurations_means_no_request_is_handled_once_loaded() {
    let srv = server().await;
    let hooks = Webhooks::new(Flavor::Validating);
    let cms = Req::new("", "v1", "configmaps");
    let attrs = cms.attrs(Operation::Create, None, Some("default"));
    assert!(
        hooks.handles(&attrs),
        "a stale snapshot must be loaded first"
    );
    hooks.cache.current(&srv.state).await.unwrap();
    assert!(!hooks.handles(&attrs));
}

#[tokio::test]
async fn a_mutating_webhook_patches_the_object_before_it_is_stored() {
    let wh = WebhookServer::start();
    let srv = server().await;
    mutating(
        &srv,
        "label",
        vec![webhook(
            "label.example.com",
            &wh.url("/label"),
            &wh.ca_bundle(),
            json!({}),
        )],
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let created = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    assert_eq!(created.metadata.labels.unwrap()[LABEL], "yes");
    let stored = api.get("a").await.unwrap();
    assert_eq!(stored.metadata.labels.unwrap()[LABEL], "yes");
    let reqs = wh.requests("/label");
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0]["request"];
    assert_eq!(r["operation"], "CREATE");
    assert_eq!(r["name"], "a");
    assert_eq!(r["namespace"], "default");
    assert_eq!(r["userInfo"]["username"], "system:admin");
    assert_eq!(
        r["kind"],
        json!({"group": "", "version": "v1", "kind": "ConfigMap"})
    );
    assert_eq!(r["object"]["data"]["k"], "v");
    assert_eq!(r["oldObject"], Value::Null);
    assert_eq!(r["dryRun"], false);
    assert_eq!(r["options"]["kind"], "CreateOptions");
}

#[tokio::test]
async fn a_denying_validating_webhook_refuses_creates_and_deletes_with_its_message() {
    let wh = WebhookServer::start();
    let srv = server().await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    api.create(&PostParams::default(), &cm("old", json!({})))
        .await
        .unwrap();
    validating(
        &srv,
        "deny",
        vec![webhook(
            "deny.example.com",
            &wh.url("/deny"),
            &wh.ca_bundle(),
            json!({}),
        )],
    )
    .await;
    let e = api_error(
        api.create(&PostParams::default(), &cm("b", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        format!("admission webhook \"deny.example.com\" denied the request: {DENY_MESSAGE}")
    );
    let e = api_error(
        api.delete("old", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert!(api.get_opt("old").await.unwrap().is_some());
    let del = &wh.requests("/deny")[1]["request"];
    assert_eq!(del["operation"], "DELETE");
    assert_eq!(del["oldObject"]["metadata"]["name"], "old");
    // Webhook configurations are exempt: the deny-all webhook cannot block its removal.
    let cfgs: Api<ValidatingWebhookConfiguration> = Api::all(srv.admin());
    cfgs.delete("deny", &DeleteParams::default()).await.unwrap();
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_webhook_past_its_timeout_fails_by_its_failure_policy() {
    let wh = WebhookServer::start();
    let srv = server().await;
    let url = wh.url("/sleep");
    validating(
        &srv,
        "slow-fail",
        vec![webhook(
            "slow.example.com",
            &url,
            &wh.ca_bundle(),
            json!({"timeoutSeconds": 1, "objectSelector": {"matchLabels": {"policy": "fail"}}}),
        )],
    )
    .await;
    validating(&srv, "slow-ignore", vec![webhook("slow-ignore.example.com", &url, &wh.ca_bundle(), json!({"timeoutSeconds": 1, "failurePolicy": "Ignore", "objectSelector": {"matchLabels": {"policy": "ignore"}}}))]).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let started = std::time::Instant::now();
    let e = api_error(
        api.create(&PostParams::default(), &cm("f", json!({"policy": "fail"})))
            .await
            .unwrap_err(),
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(e.code, 500);
    assert_eq!(
        e.message,
        format!("Internal error occurred: failed calling webhook \"slow.example.com\": failed to call webhook: Post \"{url}?timeout=1s\": context deadline exceeded")
    );
    api.create(
        &PostParams::default(),
        &cm("i", json!({"policy": "ignore"})),
    )
    .await
    .unwrap();
    // Neither selector matches: no webhook is called.
    api.create(&PostParams::default(), &cm("n", json!({})))
        .await
        .unwrap();
    assert_eq!(wh.requests("/sleep").len(), 2);
}

#[tokio::test]
async fn unreachable_and_untrusted_webhooks_fail_with_go_wording() {
    let wh = WebhookServer::start();
    let srv = server().await;
    let other_ca = WebhookServer::start();
    validating(
        &srv,
        "a",
        vec![
            webhook(
                "refused.example.com",
                "https://127.0.0.1:1/x",
                &wh.ca_bundle(),
                json!({"objectSelector": {"matchLabels": {"t": "refused"}}}),
            ),
            webhook(
                "untrusted.example.com",
                &wh.url("/allow"),
                &other_ca.ca_bundle(),
                json!({"objectSelector": {"matchLabels": {"t": "untrusted"}}}),
            ),
            webhook(
                "baduid.example.com",
                &wh.url("/bad-uid"),
                &wh.ca_bundle(),
                json!({"objectSelector": {"matchLabels": {"t": "baduid"}}}),
            ),
        ],
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let msg = |t: &'static str| {
        let api = api.clone();
        async move {
            api_error(
                api.create(&PostParams::default(), &cm(t, json!({"t": t})))
                    .await
                    .unwrap_err(),
            )
            .message
        }
    };
    assert_eq!(msg("refused").await, "Internal error occurred: failed calling webhook \"refused.example.com\": failed to call webhook: Post \"https://127.0.0.1:1/x?timeout=10s\": dial tcp 127.0.0.1:1: connect: connection refused");
    let untrusted = msg("untrusted").await;
    assert!(
        untrusted.ends_with(
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
        ),
        "{untrusted}"
    );
    let bad = msg("baduid").await;
    assert!(bad.contains("failed calling webhook \"baduid.example.com\": received invalid webhook response: expected response.uid="), "{bad}");
    assert!(bad.ends_with(", got \"not-the-request-uid\""), "{bad}");
}

#[tokio::test]
async fn reinvocation_runs_an_if_needed_webhook_again_after_a_later_patch() {
    let wh = WebhookServer::start();
    let srv = server().await;
    let ca = wh.ca_bundle();
    mutating(
        &srv,
        "m",
        vec![
            webhook(
                "again.example.com",
                &wh.url("/label-again"),
                &ca,
                json!({"reinvocationPolicy": "IfNeeded"}),
            ),
            webhook("label.example.com", &wh.url("/label"), &ca, json!({})),
        ],
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let created = api
        .create(&PostParams::default(), &cm("r", json!({})))
        .await
        .unwrap();
    let labels = created.metadata.labels.unwrap();
    assert_eq!(labels[LABEL], "yes");
    assert_eq!(labels["webhook.example.com/seen"], "yes");
    assert_eq!(wh.requests("/label-again").len(), 2);
    assert_eq!(wh.requests("/label").len(), 1);
}

#[tokio::test]
async fn the_namespace_selector_uses_the_namespace_labels_and_a_namespace_its_own() {
    let wh = WebhookServer::start();
    let srv = server().await;
    mutating(&srv, "ns", vec![webhook("ns.example.com", &wh.url("/label"), &wh.ca_bundle(), json!({
        "namespaceSelector": {"matchLabels": {"webhooks": "on"}},
        "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps", "namespaces"]}],
    }))]).await;
    let ns: Api<Namespace> = Api::all(srv.admin());
    let created = ns
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "on", "labels": {"webhooks": "on"}}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.labels.unwrap()[LABEL], "yes");
    let on: Api<ConfigMap> = Api::namespaced(srv.admin(), "on");
    let c = on
        .create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    assert_eq!(c.metadata.labels.unwrap()[LABEL], "yes");
    let def: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let c = def
        .create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    assert!(!c.metadata.labels.unwrap_or_default().contains_key(LABEL));
    assert_eq!(wh.requests("/label").len(), 2);
}

#[tokio::test]
async fn dry_runs_reach_only_webhooks_without_side_effects() {
    let wh = WebhookServer::start();
    let srv = server().await;
    validating(
        &srv,
        "d",
        vec![webhook(
            "safe.example.com",
            &wh.url("/allow"),
            &wh.ca_bundle(),
            json!({"sideEffects": "NoneOnDryRun"}),
        )],
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&dry, &cm("d", json!({}))).await.unwrap();
    assert!(api.get_opt("d").await.unwrap().is_none());
    let r = &wh.requests("/allow")[0]["request"];
    assert_eq!(r["dryRun"], true);
    assert_eq!(r["options"]["dryRun"], json!(["All"]));
    // admissionregistration/v1 accepts only side-effect-free webhooks, so a webhook with
    // side effects (which a dry run must not reach) cannot even be configured.
    let cfg: ValidatingWebhookConfiguration = serde_json::from_value(json!({
        "metadata": {"name": "u"},
        "webhooks": [webhook("unsafe.example.com", &wh.url("/allow"), &wh.ca_bundle(), json!({"sideEffects": "Some"}))],
    }))
    .unwrap();
    let e = api_error(
        Api::<ValidatingWebhookConfiguration>::all(srv.admin())
            .create(&PostParams::default(), &cfg)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422, "{}", e.message);
}

#[tokio::test]
async fn service_webhooks_are_called_at_a_ready_endpoint_and_fail_by_policy_without_one() {
    let wh = WebhookServer::start();
    let srv = server().await;
    let (namespace, name) = SERVICE;
    let svc = |hook: &str, policy: &str, label: &str, path: &str| {
        json!({
            "name": hook, "failurePolicy": policy, "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "clientConfig": {"service": {"namespace": namespace, "name": name, "path": path},
                             "caBundle": wh.ca_bundle()},
            "objectSelector": {"matchLabels": {"t": label}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        })
    };
    validating(
        &srv,
        "svc",
        vec![
            svc("fail.example.com", "Fail", "fail", "/allow"),
            svc("ignore.example.com", "Ignore", "ignore", "/allow"),
            svc("deny.example.com", "Fail", "deny", "/deny"),
        ],
    )
    .await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let create = |n: &str, label: &str| {
        let api = api.clone();
        let cm = cm(n, json!({"t": label}));
        async move { api.create(&PostParams::default(), &cm).await }
    };

    // No Service: the call fails, and the failurePolicy decides.
    let e = api_error(create("f1", "fail").await.unwrap_err());
    assert_eq!(e.code, 500);
    assert!(e.message.contains("failed calling webhook \"fail.example.com\": failed to call webhook: Post \"https://webhook.hooks.svc:443/allow?timeout=10s\": service \"webhook\" not found"), "{}", e.message);
    create("i1", "ignore").await.unwrap();

    // A Service without a ready endpoint: the same, with upstream's reason.
    let pp = PostParams::default();
    Api::<Namespace>::all(srv.admin())
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(srv.admin(), namespace);
    let endpoints: Api<Endpoints> = Api::namespaced(srv.admin(), namespace);
    let endpoints_of = |name: &str, ready: bool| -> Endpoints {
        let addresses = if ready {
            "addresses"
        } else {
            "notReadyAddresses"
        };
        serde_json::from_value(json!({"metadata": {"name": name}, "subsets": [
            {addresses: [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": wh.port()}]}]}))
        .unwrap()
    };
    for service in [name, "elsewhere"] {
        let body = json!({"metadata": {"name": service},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}});
        services
            .create(&pp, &serde_json::from_value(body).unwrap())
            .await
            .unwrap();
    }
    endpoints
        .create(&pp, &endpoints_of(name, false))
        .await
        .unwrap();
    let e = api_error(create("f2", "fail").await.unwrap_err());
    assert!(
        e.message
            .contains("no endpoints available for service \"webhook\""),
        "{}",
        e.message
    );

    // With a ready endpoint, the webhook is called there.
    let current = endpoints.get(name).await.unwrap();
    let mut ready = endpoints_of(name, true);
    ready.metadata.resource_version = current.metadata.resource_version;
    endpoints.replace(name, &pp, &ready).await.unwrap();
    create("f3", "fail").await.unwrap();
    assert_eq!(wh.requests("/allow").len(), 1);
    let e = api_error(create("d", "deny").await.unwrap_err());
    assert_eq!(e.code, 403);
    assert!(e.message.contains(DENY_MESSAGE), "{}", e.message);

    // The certificate is verified against the Service's name, not the endpoint's address
    // (which the certificate also names): another Service leading to the same server fails.
    endpoints
        .create(&pp, &endpoints_of("elsewhere", true))
        .await
        .unwrap();
    let mut misnamed = svc("misnamed.example.com", "Fail", "misnamed", "/allow");
    misnamed["clientConfig"]["service"]["name"] = json!("elsewhere");
    validating(&srv, "misnamed", vec![misnamed]).await;
    let e = api_error(create("m", "misnamed").await.unwrap_err());
    assert!(
        e.message
            .contains("Post \"https://elsewhere.hooks.svc:443/allow?timeout=10s\": tls: "),
        "{}",
        e.message
    );
    assert_eq!(wh.requests("/allow").len(), 1);
}

#[tokio::test]
async fn match_conditions_are_not_ignored() {
    let wh = WebhookServer::start();
    let srv = server().await;
    validating(&srv, "mc", vec![webhook("cel.example.com", &wh.url("/allow"), &wh.ca_bundle(), json!({
        "matchConditions": [{"name": "not-kube-system", "expression": "request.namespace != 'kube-system'"}],
    }))]).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.admin(), "default");
    let e = api_error(
        api.create(&PostParams::default(), &cm("m", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
    assert!(e.message.contains("matchConditions"), "{}", e.message);
    assert!(wh.requests("/allow").is_empty());
}

#[tokio::test]
async fn webhook_warnings_reach_the_client() {
    let wh = WebhookServer::start();
    let srv = server().await;
    validating(
        &srv,
        "w",
        vec![webhook(
            "warn.example.com",
            &wh.url("/warn"),
            &wh.ca_bundle(),
            json!({}),
        )],
    )
    .await;
    let svc = crate::apiserver::InProcessService::new(
        srv.state.clone(),
        UserInfo::new("system:admin", &["system:masters"]),
    );
    let req = http::Request::builder()
        .method("POST")
        .uri("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            r#"{"metadata":{"name":"w"}}"#,
        )))
        .unwrap();
    use tower::ServiceExt;
    let resp = svc.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 201);
    let warnings: Vec<_> = resp
        .headers()
        .get_all(http::header::WARNING)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(warnings, vec![format!("299 - \"{WARNING}\"")]);
}
