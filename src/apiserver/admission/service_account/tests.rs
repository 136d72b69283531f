//! The ServiceAccount plugin through the in-process API.

use super::*;
use crate::apiserver::admission::Chain;
use crate::apiserver::testing::TestServer;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount as Sa};
use kube::api::{Api, PostParams};

async fn server() -> (TestServer, Api<Pod>, Api<Sa>) {
    let srv = TestServer::with_admission(Chain::of(vec![Box::new(ServiceAccount)])).await;
    let pods = Api::namespaced(srv.admin(), "default");
    let sas = Api::namespaced(srv.admin(), "default");
    (srv, pods, sas)
}

async fn sa(api: &Api<Sa>, v: Value) {
    api.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
        .await
        .unwrap();
}

fn pod(name: &str, spec: Value) -> Pod {
    let mut v = json!({"metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    for (k, val) in spec.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

async fn create(api: &Api<Pod>, p: Pod) -> Value {
    serde_json::to_value(api.create(&PostParams::default(), &p).await.unwrap()).unwrap()
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
async fn pods_get_the_default_account_and_the_token_volume() {
    let (_srv, pods, sas) = server().await;
    sa(&sas, json!({"metadata": {"name": "default"}})).await;
    let p = create(
        &pods,
        pod("a", json!({"initContainers": [{"name": "init", "image": "i"}],
            "containers": [{"name": "c", "image": "i"},
                {"name": "own", "image": "i", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]}],
            "volumes": [{"name": "mine", "emptyDir": {}}]})),
    )
    .await;
    let spec = &p["spec"];
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(spec["serviceAccount"], "default");
    let volumes = spec["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 2);
    let name = volumes[1]["name"].as_str().unwrap();
    assert!(
        name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5,
        "{name}"
    );
    assert_eq!(
        volumes[1]["projected"],
        json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]})
    );
    let mount = json!([{"name": name, "readOnly": true, "mountPath": MOUNT_PATH}]);
    assert_eq!(spec["containers"][0]["volumeMounts"], mount);
    assert_eq!(spec["initContainers"][0]["volumeMounts"], mount);
    // A container that mounts something there already keeps its own.
    assert_eq!(
        spec["containers"][1]["volumeMounts"],
        json!([{"name": "mine", "mountPath": MOUNT_PATH}])
    );
}

#[tokio::test]
async fn automount_false_on_the_pod_or_the_account_adds_nothing() {
    let (_srv, pods, sas) = server().await;
    sa(&sas, json!({"metadata": {"name": "default"}})).await;
    sa(
        &sas,
        json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false}),
    )
    .await;
    let p = create(
        &pods,
        pod("a", json!({"automountServiceAccountToken": false})),
    )
    .await;
    assert!(p["spec"]["volumes"].is_null(), "{}", p["spec"]);
    let p = create(&pods, pod("b", json!({"serviceAccountName": "quiet"}))).await;
    assert!(p["spec"]["volumes"].is_null(), "{}", p["spec"]);
    assert_eq!(p["spec"]["serviceAccountName"], "quiet");
    // The pod's own setting wins over the account's.
    let p = create(
        &pods,
        pod(
            "c",
            json!({"serviceAccountName": "quiet", "automountServiceAccountToken": true}),
        ),
    )
    .await;
    assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_missing_account_is_refused() {
    let (_srv, pods, _) = server().await;
    let e = pods
        .create(
            &PostParams::default(),
            &pod("a", json!({"serviceAccountName": "robot"})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        r#"pods "a" is forbidden: error looking up service account default/robot: serviceaccount "robot" not found"#
    );
}

#[tokio::test]
async fn image_pull_secrets_come_from_the_account_when_the_pod_has_none() {
    let (_srv, pods, sas) = server().await;
    sa(
        &sas,
        json!({"metadata": {"name": "default"}, "imagePullSecrets": [{"name": "reg"}]}),
    )
    .await;
    let p = create(&pods, pod("a", json!({}))).await;
    assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "reg"}]));
    let p = create(
        &pods,
        pod("b", json!({"imagePullSecrets": [{"name": "mine"}]})),
    )
    .await;
    assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
}

#[tokio::test]
async fn enforced_mountable_secrets_limit_what_pods_reference() {
    let (_srv, pods, sas) = server().await;
    sa(
        &sas,
        json!({"metadata": {"name": "strict",
        "annotations": {ENFORCE_MOUNTABLE_SECRETS: "true"}},
        "secrets": [{"name": "ok"}]}),
    )
    .await;
    let base = |extra: Value| {
        let mut spec =
            json!({"serviceAccountName": "strict", "automountServiceAccountToken": false});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec
    };
    create(
        &pods,
        pod(
            "a",
            base(json!({"volumes": [{"name": "s", "secret": {"secretName": "ok"}}]})),
        ),
    )
    .await;
    let e = pods
        .create(
            &PostParams::default(),
            &pod(
                "b",
                base(json!({"volumes": [{"name": "s", "secret": {"secretName": "other"}}]})),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        r#"pods "b" is forbidden: volume with secret.secretName="other" is not allowed because service account strict does not reference that secret"#
    );
    let e = pods
        .create(&PostParams::default(), &pod("c", base(json!({"containers": [{"name": "c", "image": "i",
            "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}}]}]}))))
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        r#"pods "c" is forbidden: container c with envVar PW referencing secret.secretName="other" is not allowed because service account strict does not reference that secret"#
    );
    let e = pods
        .create(
            &PostParams::default(),
            &pod("d", base(json!({"imagePullSecrets": [{"name": "reg"}]}))),
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        r#"pods "d" is forbidden: imagePullSecrets[0].name="reg" is not allowed because service account strict does not reference that imagePullSecret"#
    );
}

#[tokio::test]
async fn mirror_pods_may_not_use_accounts_or_secrets() {
    let (_srv, pods, _) = server().await;
    let mirror = |name: &str, spec: Value| {
        let mut p = pod(name, spec);
        p.metadata.annotations = Some([(MIRROR_POD.to_owned(), "x".to_owned())].into());
        p
    };
    // No account is defaulted or looked up for a mirror pod.
    let p = create(&pods, mirror("static", json!({}))).await;
    assert!(p["spec"]["serviceAccountName"].is_null());
    assert!(p["spec"]["volumes"].is_null());
    let e = pods
        .create(
            &PostParams::default(),
            &mirror("a", json!({"serviceAccountName": "default"})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        r#"pods "a" is forbidden: a mirror pod may not reference service accounts"#
    );
    let e = pods
        .create(
            &PostParams::default(),
            &mirror(
                "b",
                json!({"volumes": [{"name": "s", "secret": {"secretName": "x"}}]}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused(e),
        r#"pods "b" is forbidden: a mirror pod may not reference secrets"#
    );
}
