//! More k8s-pb → JSON → k8s-openapi roundtrips: workloads, Service, RBAC, Ingress and a
//! Pod with status. Value-typed Go structs a sender left unset (`status`, `strategy`)
//! print as `{}`, so k8s-openapi sees them as present and default.

use k8s_openapi::api::apps::v1 as oapps;
use k8s_openapi::api::batch::v1 as obatch;
use k8s_openapi::api::core::v1 as oa;
use k8s_openapi::api::networking::v1 as onet;
use k8s_openapi::api::rbac::v1 as orbac;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as oam;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as OaIntOrString;
use k8s_pb::api::apps::v1 as papps;
use k8s_pb::api::batch::v1 as pbatch;
use k8s_pb::api::core::v1 as pb;
use k8s_pb::api::networking::v1 as pnet;
use k8s_pb::api::rbac::v1 as prbac;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pbm;

use super::roundtrip_tests::{
    labels, oa_meta, oa_selector, oa_time, pb_int, pb_meta, pb_selector, pb_str, pod_template,
    roundtrip, s, strings, time,
};

#[test]
fn deployment_with_full_pod_template_roundtrips() {
    let (pb_template, oa_template) = pod_template();
    let deployment = papps::Deployment {
        metadata: pb_meta("web"),
        spec: Some(papps::DeploymentSpec {
            replicas: Some(0),
            selector: pb_selector(),
            template: Some(pb_template),
            strategy: Some(papps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(papps::RollingUpdateDeployment {
                    max_unavailable: pb_int(0),
                    max_surge: pb_str("25%"),
                }),
            }),
            revision_history_limit: Some(0),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: None,
    };
    let expected = oapps::Deployment {
        metadata: oa_meta("web"),
        spec: Some(oapps::DeploymentSpec {
            replicas: Some(0),
            selector: oa_selector(),
            template: oa_template,
            strategy: Some(oapps::DeploymentStrategy {
                type_: s("RollingUpdate"),
                rolling_update: Some(oapps::RollingUpdateDeployment {
                    max_unavailable: Some(OaIntOrString::Int(0)),
                    max_surge: Some(OaIntOrString::String("25%".into())),
                }),
            }),
            revision_history_limit: Some(0),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: Some(Default::default()),
    };
    roundtrip(&deployment, &expected);
}

#[test]
fn statefulset_daemonset_and_replicaset_roundtrip() {
    let (pb_template, oa_template) = pod_template();
    let sts = papps::StatefulSet {
        metadata: pb_meta("db"),
        spec: Some(papps::StatefulSetSpec {
            replicas: Some(3),
            selector: pb_selector(),
            template: Some(pb_template.clone()),
            volume_claim_templates: vec![pb::PersistentVolumeClaim {
                metadata: Some(pbm::ObjectMeta {
                    name: s("data"),
                    ..Default::default()
                }),
                spec: Some(pb::PersistentVolumeClaimSpec {
                    access_modes: strings(&["ReadWriteOnce"]),
                    resources: Some(pb::VolumeResourceRequirements {
                        requests: [("storage".to_owned(), super::roundtrip_tests::pb_q("10Gi"))]
                            .into(),
                        limits: Default::default(),
                    }),
                    ..Default::default()
                }),
                status: None,
            }],
            service_name: s("db"),
            ..Default::default()
        }),
        status: None,
    };
    let expected = oapps::StatefulSet {
        metadata: oa_meta("db"),
        spec: Some(oapps::StatefulSetSpec {
            replicas: Some(3),
            selector: oa_selector(),
            template: oa_template.clone(),
            volume_claim_templates: Some(vec![oa::PersistentVolumeClaim {
                metadata: oam::ObjectMeta {
                    name: s("data"),
                    ..Default::default()
                },
                spec: Some(oa::PersistentVolumeClaimSpec {
                    access_modes: Some(strings(&["ReadWriteOnce"])),
                    resources: Some(oa::VolumeResourceRequirements {
                        requests: Some(
                            [("storage".to_owned(), super::roundtrip_tests::oa_q("10Gi"))].into(),
                        ),
                        limits: None,
                    }),
                    ..Default::default()
                }),
                status: Some(Default::default()),
            }]),
            service_name: s("db"),
            update_strategy: Some(Default::default()),
            ..Default::default()
        }),
        // availableReplicas is a Go int32 without omitempty: printed even when unset.
        status: Some(oapps::StatefulSetStatus {
            available_replicas: Some(0),
            ..Default::default()
        }),
    };
    roundtrip(&sts, &expected);

    let ds = papps::DaemonSet {
        metadata: pb_meta("agent"),
        spec: Some(papps::DaemonSetSpec {
            selector: pb_selector(),
            template: Some(pb_template.clone()),
            update_strategy: Some(papps::DaemonSetUpdateStrategy {
                r#type: s("OnDelete"),
                rolling_update: None,
            }),
            ..Default::default()
        }),
        status: None,
    };
    let expected = oapps::DaemonSet {
        metadata: oa_meta("agent"),
        spec: Some(oapps::DaemonSetSpec {
            selector: oa_selector(),
            template: oa_template.clone(),
            update_strategy: Some(oapps::DaemonSetUpdateStrategy {
                type_: s("OnDelete"),
                rolling_update: None,
            }),
            ..Default::default()
        }),
        status: Some(Default::default()),
    };
    roundtrip(&ds, &expected);

    let rs = papps::ReplicaSet {
        metadata: pb_meta("web-abc"),
        spec: Some(papps::ReplicaSetSpec {
            replicas: Some(2),
            min_ready_seconds: Some(5),
            selector: pb_selector(),
            template: Some(pb_template),
        }),
        status: None,
    };
    let expected = oapps::ReplicaSet {
        metadata: oa_meta("web-abc"),
        spec: Some(oapps::ReplicaSetSpec {
            replicas: Some(2),
            min_ready_seconds: Some(5),
            selector: oa_selector(),
            template: Some(oa_template),
        }),
        status: Some(Default::default()),
    };
    roundtrip(&rs, &expected);
}

#[test]
fn job_and_cronjob_roundtrip() {
    let (mut pb_template, mut oa_template) = pod_template();
    if let Some(spec) = pb_template.spec.as_mut() {
        spec.restart_policy = s("Never");
    }
    if let Some(spec) = oa_template.spec.as_mut() {
        spec.restart_policy = s("Never");
    }
    let pb_job_spec = pbatch::JobSpec {
        parallelism: Some(2),
        completions: Some(4),
        backoff_limit: Some(0),
        template: Some(pb_template),
        ttl_seconds_after_finished: Some(60),
        suspend: Some(false),
        ..Default::default()
    };
    let oa_job_spec = obatch::JobSpec {
        parallelism: Some(2),
        completions: Some(4),
        backoff_limit: Some(0),
        template: oa_template,
        ttl_seconds_after_finished: Some(60),
        suspend: Some(false),
        ..Default::default()
    };
    let job = pbatch::Job {
        metadata: pb_meta("migrate"),
        spec: Some(pb_job_spec.clone()),
        status: None,
    };
    let expected = obatch::Job {
        metadata: oa_meta("migrate"),
        spec: Some(oa_job_spec.clone()),
        status: Some(Default::default()),
    };
    roundtrip(&job, &expected);

    let cronjob = pbatch::CronJob {
        metadata: pb_meta("nightly"),
        spec: Some(pbatch::CronJobSpec {
            schedule: s("0 3 * * *"),
            time_zone: s("Etc/UTC"),
            concurrency_policy: s("Forbid"),
            suspend: Some(true),
            job_template: Some(pbatch::JobTemplateSpec {
                metadata: None,
                spec: Some(pb_job_spec),
            }),
            successful_jobs_history_limit: Some(0),
            ..Default::default()
        }),
        status: None,
    };
    let expected = obatch::CronJob {
        metadata: oa_meta("nightly"),
        spec: Some(obatch::CronJobSpec {
            schedule: "0 3 * * *".into(),
            time_zone: s("Etc/UTC"),
            concurrency_policy: s("Forbid"),
            suspend: Some(true),
            job_template: obatch::JobTemplateSpec {
                metadata: Some(Default::default()),
                spec: Some(oa_job_spec),
            },
            successful_jobs_history_limit: Some(0),
            ..Default::default()
        }),
        status: Some(Default::default()),
    };
    roundtrip(&cronjob, &expected);
}

#[test]
fn service_with_int_and_named_target_ports_roundtrips() {
    let service = pb::Service {
        metadata: pb_meta("web"),
        spec: Some(pb::ServiceSpec {
            ports: vec![
                pb::ServicePort {
                    name: s("http"),
                    protocol: s("TCP"),
                    port: Some(80),
                    target_port: pb_int(8080),
                    node_port: Some(30080),
                    ..Default::default()
                },
                pb::ServicePort {
                    name: s("https"),
                    port: Some(443),
                    target_port: pb_str("https"),
                    ..Default::default()
                },
            ],
            selector: labels(&[("app", "web")]),
            r#type: s("NodePort"),
            session_affinity: s("ClientIP"),
            session_affinity_config: Some(pb::SessionAffinityConfig {
                client_ip: Some(pb::ClientIpConfig {
                    timeout_seconds: Some(10800),
                }),
            }),
            ip_families: strings(&["IPv4"]),
            ..Default::default()
        }),
        status: None,
    };
    let expected = oa::Service {
        metadata: oa_meta("web"),
        spec: Some(oa::ServiceSpec {
            ports: Some(vec![
                oa::ServicePort {
                    name: s("http"),
                    protocol: s("TCP"),
                    port: 80,
                    target_port: Some(OaIntOrString::Int(8080)),
                    node_port: Some(30080),
                    ..Default::default()
                },
                oa::ServicePort {
                    name: s("https"),
                    port: 443,
                    target_port: Some(OaIntOrString::String("https".into())),
                    ..Default::default()
                },
            ]),
            selector: Some(labels(&[("app", "web")])),
            type_: s("NodePort"),
            session_affinity: s("ClientIP"),
            session_affinity_config: Some(oa::SessionAffinityConfig {
                client_ip: Some(oa::ClientIPConfig {
                    timeout_seconds: Some(10800),
                }),
            }),
            ip_families: Some(strings(&["IPv4"])),
            ..Default::default()
        }),
        status: Some(oa::ServiceStatus {
            load_balancer: Some(Default::default()),
            conditions: None,
        }),
    };
    roundtrip(&service, &expected);
}

#[test]
fn rbac_kinds_roundtrip() {
    let rule = prbac::PolicyRule {
        verbs: strings(&["get", "list"]),
        api_groups: strings(&["", "apps"]),
        resources: strings(&["pods", "deployments"]),
        resource_names: strings(&["x"]),
        non_resource_ur_ls: vec![],
    };
    let oa_rule = orbac::PolicyRule {
        verbs: strings(&["get", "list"]),
        api_groups: Some(strings(&["", "apps"])),
        resources: Some(strings(&["pods", "deployments"])),
        resource_names: Some(strings(&["x"])),
        non_resource_urls: None,
    };
    let role = prbac::Role {
        metadata: pb_meta("reader"),
        rules: vec![rule.clone()],
    };
    roundtrip(
        &role,
        &orbac::Role {
            metadata: oa_meta("reader"),
            rules: Some(vec![oa_rule.clone()]),
        },
    );

    let cluster_role = prbac::ClusterRole {
        metadata: pb_meta("aggregate"),
        rules: vec![rule],
        aggregation_rule: Some(prbac::AggregationRule {
            cluster_role_selectors: vec![pbm::LabelSelector {
                match_labels: labels(&[("rbac.example/aggregate", "true")]),
                match_expressions: vec![],
            }],
        }),
    };
    roundtrip(
        &cluster_role,
        &orbac::ClusterRole {
            metadata: oa_meta("aggregate"),
            rules: Some(vec![oa_rule]),
            aggregation_rule: Some(orbac::AggregationRule {
                cluster_role_selectors: Some(vec![oam::LabelSelector {
                    match_labels: Some(labels(&[("rbac.example/aggregate", "true")])),
                    match_expressions: None,
                }]),
            }),
        },
    );

    let subjects = vec![
        prbac::Subject {
            kind: s("User"),
            api_group: s("rbac.authorization.k8s.io"),
            name: s("alice"),
            namespace: None,
        },
        prbac::Subject {
            kind: s("ServiceAccount"),
            api_group: s(""),
            name: s("builder"),
            namespace: s("default"),
        },
    ];
    let oa_subjects = vec![
        orbac::Subject {
            kind: "User".into(),
            api_group: s("rbac.authorization.k8s.io"),
            name: "alice".into(),
            namespace: None,
        },
        // An empty apiGroup is a value field with omitempty: Go drops it.
        orbac::Subject {
            kind: "ServiceAccount".into(),
            api_group: None,
            name: "builder".into(),
            namespace: s("default"),
        },
    ];
    let role_ref = prbac::RoleRef {
        api_group: s("rbac.authorization.k8s.io"),
        kind: s("Role"),
        name: s("reader"),
    };
    let oa_role_ref = orbac::RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: "Role".into(),
        name: "reader".into(),
    };
    roundtrip(
        &prbac::RoleBinding {
            metadata: pb_meta("read"),
            subjects: subjects.clone(),
            role_ref: Some(role_ref.clone()),
        },
        &orbac::RoleBinding {
            metadata: oa_meta("read"),
            subjects: Some(oa_subjects.clone()),
            role_ref: oa_role_ref.clone(),
        },
    );
    roundtrip(
        &prbac::ClusterRoleBinding {
            metadata: pb_meta("read"),
            subjects,
            role_ref: Some(role_ref),
        },
        &orbac::ClusterRoleBinding {
            metadata: oa_meta("read"),
            subjects: Some(oa_subjects),
            role_ref: oa_role_ref,
        },
    );
}

#[test]
fn ingress_roundtrips() {
    let backend = |name: &str, number: Option<i32>, port: Option<&str>| pnet::IngressBackend {
        service: Some(pnet::IngressServiceBackend {
            name: s(name),
            port: Some(pnet::ServiceBackendPort {
                name: port.and_then(s),
                number,
            }),
        }),
        resource: None,
    };
    let oa_backend = |name: &str, number: Option<i32>, port: Option<&str>| onet::IngressBackend {
        service: Some(onet::IngressServiceBackend {
            name: name.into(),
            port: Some(onet::ServiceBackendPort {
                name: port.and_then(s),
                number,
            }),
        }),
        resource: None,
    };
    let ingress = pnet::Ingress {
        metadata: pb_meta("web"),
        spec: Some(pnet::IngressSpec {
            ingress_class_name: s("nginx"),
            default_backend: Some(backend("fallback", Some(80), None)),
            tls: vec![pnet::IngressTls {
                hosts: strings(&["foo.example"]),
                secret_name: s("foo-tls"),
            }],
            rules: vec![pnet::IngressRule {
                host: s("foo.example"),
                ingress_rule_value: Some(pnet::IngressRuleValue {
                    http: Some(pnet::HttpIngressRuleValue {
                        paths: vec![pnet::HttpIngressPath {
                            path: s("/api"),
                            path_type: s("Prefix"),
                            backend: Some(backend("api", None, Some("http"))),
                        }],
                    }),
                }),
            }],
        }),
        status: None,
    };
    let expected = onet::Ingress {
        metadata: oa_meta("web"),
        spec: Some(onet::IngressSpec {
            ingress_class_name: s("nginx"),
            default_backend: Some(oa_backend("fallback", Some(80), None)),
            tls: Some(vec![onet::IngressTLS {
                hosts: Some(strings(&["foo.example"])),
                secret_name: s("foo-tls"),
            }]),
            rules: Some(vec![onet::IngressRule {
                host: s("foo.example"),
                http: Some(onet::HTTPIngressRuleValue {
                    paths: vec![onet::HTTPIngressPath {
                        path: s("/api"),
                        path_type: "Prefix".into(),
                        backend: oa_backend("api", None, Some("http")),
                    }],
                }),
            }]),
        }),
        status: Some(onet::IngressStatus {
            load_balancer: Some(Default::default()),
        }),
    };
    roundtrip(&ingress, &expected);
}

#[test]
fn pod_status_with_times_roundtrips() {
    let (pb_template, oa_template) = pod_template();
    let pod = pb::Pod {
        metadata: Some(pbm::ObjectMeta {
            name: s("web-1"),
            creation_timestamp: Some(time(1_700_000_000)),
            owner_references: vec![pbm::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("ReplicaSet"),
                name: s("web-abc"),
                uid: s("1234"),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            ..Default::default()
        }),
        spec: pb_template.spec,
        status: Some(pb::PodStatus {
            phase: s("Running"),
            conditions: vec![pb::PodCondition {
                r#type: s("Ready"),
                status: s("True"),
                last_transition_time: Some(time(1_700_000_100)),
                ..Default::default()
            }],
            pod_ip: s("10.42.0.7"),
            pod_ips: vec![pb::PodIp { ip: s("10.42.0.7") }],
            start_time: Some(time(1_700_000_001)),
            container_statuses: vec![pb::ContainerStatus {
                name: s("app"),
                state: Some(pb::ContainerState {
                    running: Some(pb::ContainerStateRunning {
                        started_at: Some(time(1_700_000_002)),
                    }),
                    ..Default::default()
                }),
                ready: Some(true),
                restart_count: Some(0),
                image: s("registry.example/app:1.2"),
                image_id: s(""),
                started: Some(true),
                ..Default::default()
            }],
            qos_class: s("Burstable"),
            ..Default::default()
        }),
    };
    let expected = oa::Pod {
        metadata: oam::ObjectMeta {
            name: s("web-1"),
            creation_timestamp: Some(oa_time(1_700_000_000)),
            owner_references: Some(vec![oam::OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web-abc".into(),
                uid: "1234".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: oa_template.spec,
        status: Some(oa::PodStatus {
            phase: s("Running"),
            conditions: Some(vec![oa::PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(oa_time(1_700_000_100)),
                ..Default::default()
            }]),
            pod_ip: s("10.42.0.7"),
            pod_ips: Some(vec![oa::PodIP {
                ip: "10.42.0.7".into(),
            }]),
            start_time: Some(oa_time(1_700_000_001)),
            container_statuses: Some(vec![oa::ContainerStatus {
                name: "app".into(),
                state: Some(oa::ContainerState {
                    running: Some(oa::ContainerStateRunning {
                        started_at: Some(oa_time(1_700_000_002)),
                    }),
                    ..Default::default()
                }),
                ready: true,
                restart_count: 0,
                image: "registry.example/app:1.2".into(),
                image_id: String::new(),
                // lastState is a value struct: Go prints it as {} when unset.
                last_state: Some(Default::default()),
                started: Some(true),
                ..Default::default()
            }]),
            qos_class: s("Burstable"),
            ..Default::default()
        }),
    };
    roundtrip(&pod, &expected);
}
