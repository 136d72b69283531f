use serde_json::{json, Value};

use super::super::strategy::testing::of;
use super::*;

fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
    of(group, kind).apply_defaults(&mut obj);
    obj
}

fn minimal_pod_spec() -> Value {
    json!({"containers": [{"name": "app", "image": "nginx",
        "ports": [{"containerPort": 80}],
        "livenessProbe": {"httpGet": {"port": 80}}}]})
}

fn samples() -> Vec<(&'static str, &'static str, Value)> {
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": minimal_pod_spec()});
    vec![
        (
            "",
            "Pod",
            json!({"metadata": {"name": "p"}, "spec": minimal_pod_spec()}),
        ),
        (
            "",
            "Service",
            json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}}),
        ),
        (
            "",
            "Service",
            json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP",
            "ports": [{"port": 443, "targetPort": "https"}]}}),
        ),
        ("", "Secret", json!({"type": "", "data": {}})),
        ("", "Namespace", json!({"metadata": {"name": "dev"}})),
        (
            "",
            "PersistentVolumeClaim",
            json!({"spec": {"accessModes": ["ReadWriteOnce"]}}),
        ),
        ("", "PersistentVolume", json!({"spec": {}})),
        (
            "",
            "ReplicationController",
            json!({"spec": {"template": template.clone()}}),
        ),
        (
            "apps",
            "Deployment",
            json!({"spec": {"template": template.clone()}}),
        ),
        (
            "apps",
            "ReplicaSet",
            json!({"spec": {"template": template.clone()}}),
        ),
        (
            "apps",
            "StatefulSet",
            json!({"spec": {"template": template.clone(),
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}}),
        ),
        (
            "apps",
            "DaemonSet",
            json!({"spec": {"template": template.clone()}}),
        ),
        (
            "batch",
            "Job",
            json!({"spec": {"template": template.clone()}}),
        ),
        (
            "batch",
            "CronJob",
            json!({"spec": {"schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": template}}}}),
        ),
        (
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"apiVersion": "autoscaling/v2",
            "spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
        ),
        (
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}}),
        ),
        (
            "storage.k8s.io",
            "StorageClass",
            json!({"provisioner": "x"}),
        ),
        (
            "discovery.k8s.io",
            "EndpointSlice",
            json!({"ports": [{"port": 80}]}),
        ),
        (
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}),
        ),
        (
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            json!({"spec": {"names": {"kind": "CronTab"}}}),
        ),
    ]
}

#[test]
fn defaults_are_idempotent_for_every_kind() {
    for (group, kind, obj) in samples() {
        let once = defaulted(group, kind, obj.clone());
        assert_ne!(once, obj, "{kind} got no defaults");
        let twice = defaulted(group, kind, once.clone());
        assert_eq!(once, twice, "{kind} defaults are not idempotent");
    }
}

#[test]
fn pod_gets_spec_container_probe_and_pod_only_defaults() {
    let pod = defaulted("", "Pod", json!({"spec": minimal_pod_spec()}));
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["terminationGracePeriodSeconds"], 30);
    assert_eq!(spec["schedulerName"], "default-scheduler");
    assert_eq!(spec["securityContext"], json!({}));
    assert_eq!(spec["enableServiceLinks"], true);
    let c = &spec["containers"][0];
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["terminationMessagePolicy"], "File");
    assert_eq!(c["resources"], json!({}));
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
               "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
}

#[test]
fn pod_requests_default_to_limits_and_volumes_get_a_source() {
    let pod = defaulted(
        "",
        "Pod",
        json!({"spec": {
            "hostNetwork": true,
            "containers": [{"name": "a", "image": "x:1",
                "ports": [{"containerPort": 8080}],
                "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}],
            "volumes": [{"name": "scratch"}, {"name": "cfg", "configMap": {"name": "c"}}]
        }}),
    );
    let c = &pod["spec"]["containers"][0];
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "500m", "memory": "1Gi"})
    );
    assert_eq!(c["ports"][0]["hostPort"], 8080);
    assert_eq!(pod["spec"]["volumes"][0]["emptyDir"], json!({}));
    assert_eq!(pod["spec"]["volumes"][1]["configMap"]["defaultMode"], 420);
}

#[test]
fn defaults_never_overwrite_user_values() {
    let pod = defaulted(
        "",
        "Pod",
        json!({"spec": {
            "restartPolicy": "Never", "dnsPolicy": "Default", "terminationGracePeriodSeconds": 5,
            "enableServiceLinks": false,
            "containers": [{"name": "a", "image": "nginx", "imagePullPolicy": "Never",
                "ports": [{"containerPort": 53, "protocol": "UDP"}],
                "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 3}}]
        }}),
    );
    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["dnsPolicy"], "Default");
    assert_eq!(spec["terminationGracePeriodSeconds"], 5);
    assert_eq!(spec["enableServiceLinks"], false);
    let c = &spec["containers"][0];
    assert_eq!(c["imagePullPolicy"], "Never");
    assert_eq!(c["ports"][0]["protocol"], "UDP");
    assert_eq!(c["readinessProbe"]["periodSeconds"], 3);

    let svc = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "NodePort",
        "ports": [{"port": 80, "targetPort": 8080, "protocol": "UDP"}]}}),
    );
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "UDP");
    assert_eq!(svc["spec"]["type"], "NodePort");

    let secret = defaulted("", "Secret", json!({"type": "kubernetes.io/tls"}));
    assert_eq!(secret["type"], "kubernetes.io/tls");

    let dep = defaulted(
        "apps",
        "Deployment",
        json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"}}}),
    );
    assert_eq!(dep["spec"]["replicas"], 3);
    assert_eq!(dep["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn pod_templates_do_not_get_pod_only_defaults() {
    let dep = defaulted(
        "apps",
        "Deployment",
        json!({"spec": {"template": {"spec": minimal_pod_spec()}}}),
    );
    let spec = &dep["spec"]["template"]["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert!(spec.get("enableServiceLinks").is_none());
    assert_eq!(spec["containers"][0]["resources"], json!({}));
}

#[test]
fn deployment_defaults() {
    let dep = defaulted("apps", "Deployment", json!({"spec": {}}));
    assert_eq!(
        dep["spec"],
        json!({"replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "template": {"spec": {"dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                "securityContext": {}, "terminationGracePeriodSeconds": 30,
                "schedulerName": "default-scheduler"}}})
    );
    let partial = defaulted(
        "apps",
        "Deployment",
        json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 1}}}}),
    );
    assert_eq!(
        partial["spec"]["strategy"]["rollingUpdate"],
        json!({"maxSurge": 1, "maxUnavailable": "25%"})
    );
}

#[test]
fn statefulset_and_daemonset_defaults() {
    let sts = defaulted(
        "apps",
        "StatefulSet",
        json!({"spec": {
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}}),
    );
    let spec = &sts["spec"];
    assert_eq!(spec["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        spec["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(
        spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
        "Filesystem"
    );
    assert_eq!(
        spec["volumeClaimTemplates"][0]["status"]["phase"],
        "Pending"
    );

    // An explicit RollingUpdate without parameters stays without them, as upstream.
    let explicit = defaulted(
        "apps",
        "StatefulSet",
        json!({"spec": {"updateStrategy": {"type": "RollingUpdate"}}}),
    );
    assert_eq!(
        explicit["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate"})
    );

    let ds = defaulted("apps", "DaemonSet", json!({"spec": {}}));
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
}

#[test]
fn job_and_cronjob_defaults() {
    let job = defaulted(
        "batch",
        "Job",
        json!({"spec": {"template": {
        "metadata": {"labels": {"app": "batch"}}, "spec": {"restartPolicy": "Never"}}}}),
    );
    let spec = &job["spec"];
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert_eq!(spec["manualSelector"], false);
    assert_eq!(job["metadata"]["labels"], json!({"app": "batch"}));
    assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");

    let parallel = defaulted("batch", "Job", json!({"spec": {"parallelism": 3}}));
    assert!(parallel["spec"].get("completions").is_none());
    assert_eq!(parallel["spec"]["parallelism"], 3);

    let cj = defaulted(
        "batch",
        "CronJob",
        json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {}}}}}}),
    );
    let spec = &cj["spec"];
    assert_eq!(spec["concurrencyPolicy"], "Allow");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["successfulJobsHistoryLimit"], 3);
    assert_eq!(spec["failedJobsHistoryLimit"], 1);
    assert_eq!(
        spec["jobTemplate"]["spec"]["template"]["spec"]["dnsPolicy"],
        "ClusterFirst"
    );
    assert!(spec["jobTemplate"]["spec"].get("backoffLimit").is_none());
}

#[test]
fn job_selector_defaults_label_pods_with_uid_and_name() {
    let mut job = json!({"metadata": {"name": "pi"},
        "spec": {"manualSelector": false, "template": {"metadata": {"labels": {"app": "pi"}}}}});
    job_selector_defaults(&mut job, "u-1");
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"],
        json!({"app": "pi", "job-name": "pi", "batch.kubernetes.io/job-name": "pi",
               "controller-uid": "u-1", "batch.kubernetes.io/controller-uid": "u-1"})
    );
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
    );

    let mut manual = json!({"metadata": {"name": "m"}, "spec": {"manualSelector": true,
        "selector": {"matchLabels": {"a": "b"}}}});
    let before = manual.clone();
    job_selector_defaults(&mut manual, "u-2");
    assert_eq!(manual, before);
}

#[test]
fn service_defaults_by_type() {
    let svc = defaulted(
        "",
        "Service",
        json!({"spec": {"ports": [{"port": 80}, {"port": 81, "targetPort": 0}]}}),
    );
    let spec = &svc["spec"];
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert_eq!(
        spec["ports"][0],
        json!({"port": 80, "protocol": "TCP", "targetPort": 80})
    );
    assert_eq!(spec["ports"][1]["targetPort"], 81);
    assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
    assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
    assert_eq!(spec["internalTrafficPolicy"], "Cluster");
    assert!(spec.get("externalTrafficPolicy").is_none());

    let lb = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP"}}),
    );
    assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
    assert_eq!(
        lb["spec"]["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );

    let ext = defaulted(
        "",
        "Service",
        json!({"spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
    );
    assert!(ext["spec"].get("ipFamilies").is_none());
    assert!(ext["spec"].get("internalTrafficPolicy").is_none());
}

#[test]
fn secret_namespace_and_storage_defaults() {
    assert_eq!(
        defaulted("", "Secret", json!({"type": ""}))["type"],
        "Opaque"
    );
    assert_eq!(defaulted("", "Secret", json!({}))["type"], "Opaque");
    let ns = defaulted("", "Namespace", json!({"metadata": {"name": "x"}}));
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    let pv = defaulted("", "PersistentVolume", json!({"spec": {}}));
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["spec"]["volumeMode"], "Filesystem");
    let sc = defaulted("storage.k8s.io", "StorageClass", json!({}));
    assert_eq!(sc["reclaimPolicy"], "Delete");
    assert_eq!(sc["volumeBindingMode"], "Immediate");
}

#[test]
fn group_kind_defaults() {
    let hpa = defaulted(
        "autoscaling",
        "HorizontalPodAutoscaler",
        json!({"apiVersion": "autoscaling/v2",
        "spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
    );
    assert_eq!(hpa["spec"]["minReplicas"], 1);
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        80
    );
    assert_eq!(
        hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        60
    );
    assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Max");
    assert_eq!(
        hpa["spec"]["behavior"]["scaleUp"]["policies"][0]["value"],
        4
    );
    let v1 = defaulted(
        "autoscaling",
        "HorizontalPodAutoscaler",
        json!({"apiVersion": "autoscaling/v1", "spec": {"targetCPUUtilizationPercentage": 50}}),
    );
    assert!(v1["spec"].get("metrics").is_none());

    let np = defaulted(
        "networking.k8s.io",
        "NetworkPolicy",
        json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}}),
    );
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
    let np2 = defaulted(
        "networking.k8s.io",
        "NetworkPolicy",
        json!({"spec": {"podSelector": {}}}),
    );
    assert_eq!(np2["spec"]["policyTypes"], json!(["Ingress"]));

    let rb = defaulted(
        "rbac.authorization.k8s.io",
        "RoleBinding",
        json!({"roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}),
    );
    assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
    assert_eq!(rb["subjects"][1]["apiGroup"], "");

    let crd = defaulted(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        json!({"spec": {"names": {"kind": "CronTab", "plural": "crontabs"}}}),
    );
    assert_eq!(crd["spec"]["names"]["singular"], "crontab");
    assert_eq!(crd["spec"]["names"]["listKind"], "CronTabList");
    assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));

    let slice = defaulted(
        "discovery.k8s.io",
        "EndpointSlice",
        json!({"ports": [{"port": 80}]}),
    );
    assert_eq!(
        slice["ports"][0],
        json!({"port": 80, "name": "", "protocol": "TCP"})
    );
}

#[test]
fn unknown_kinds_and_non_objects_are_left_alone() {
    let cr = json!({"spec": {"x": 1}});
    assert_eq!(defaulted("example.com", "CronTab", cr.clone()), cr);
    assert_eq!(defaulted("", "Pod", json!("oops")), json!("oops"));
}
