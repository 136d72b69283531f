//! Objects encoded with k8s-pb (prost, the upstream .proto files) decode to JSON that
//! deserializes into the same object built directly with k8s-openapi.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::core::v1 as oa;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as OaQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as oam;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as OaIntOrString;
use k8s_openapi::{ByteString, Resource};
use k8s_pb::api::core::v1 as pb;
use k8s_pb::apimachinery::pkg::api::resource::Quantity as PbQuantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as pbm;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString as PbIntOrString;
use serde::de::DeserializeOwned;

use super::decode_to_json;
use super::tests::envelope;

pub(super) fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

pub(super) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

pub(super) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(super) fn pb_meta(name: &str) -> Option<pbm::ObjectMeta> {
    Some(pbm::ObjectMeta {
        name: s(name),
        namespace: s("default"),
        labels: labels(&[("app", name)]),
        annotations: labels(&[("note", "x")]),
        ..Default::default()
    })
}

pub(super) fn oa_meta(name: &str) -> oam::ObjectMeta {
    oam::ObjectMeta {
        name: s(name),
        namespace: s("default"),
        labels: Some(labels(&[("app", name)])),
        annotations: Some(labels(&[("note", "x")])),
        ..Default::default()
    }
}

pub(super) fn pb_int(v: i32) -> Option<PbIntOrString> {
    Some(PbIntOrString {
        r#type: Some(0),
        int_val: Some(v),
        str_val: None,
    })
}

pub(super) fn pb_str(v: &str) -> Option<PbIntOrString> {
    Some(PbIntOrString {
        r#type: Some(1),
        int_val: None,
        str_val: s(v),
    })
}

pub(super) fn pb_q(v: &str) -> PbQuantity {
    PbQuantity { string: s(v) }
}

pub(super) fn oa_q(v: &str) -> OaQuantity {
    OaQuantity(v.to_owned())
}

pub(super) fn time(seconds: i64) -> pbm::Time {
    pbm::Time {
        seconds: Some(seconds),
        nanos: Some(0),
    }
}

pub(super) fn oa_time(seconds: i64) -> oam::Time {
    oam::Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("valid test time"))
}

/// Encodes `object` under the kind of `R`, decodes it, and compares with `expected`.
pub(super) fn roundtrip<R>(object: &impl prost::Message, expected: &R)
where
    R: Resource + DeserializeOwned + PartialEq + Debug,
{
    let body = envelope(R::API_VERSION, R::KIND, object.encode_to_vec());
    let json = decode_to_json(&body).unwrap_or_else(|e| panic!("{}: {e}", R::KIND));
    let got: R =
        serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{}: {e}\n{json}", R::KIND));
    assert_eq!(&got, expected, "{}", R::KIND);
}

/// A pod template using most of what a Deployment's template carries, in both encodings.
pub(super) fn pod_template() -> (pb::PodTemplateSpec, oa::PodTemplateSpec) {
    let pb_container = pb::Container {
        name: s("app"),
        image: s("registry.example/app:1.2"),
        command: strings(&["/app"]),
        args: strings(&["--port", "8080"]),
        ports: vec![pb::ContainerPort {
            name: s("http"),
            container_port: Some(8080),
            protocol: s("TCP"),
            ..Default::default()
        }],
        env: vec![
            pb::EnvVar {
                name: s("MODE"),
                value: s("prod"),
                value_from: None,
            },
            pb::EnvVar {
                name: s("POD_IP"),
                value: None,
                value_from: Some(pb::EnvVarSource {
                    field_ref: Some(pb::ObjectFieldSelector {
                        api_version: s("v1"),
                        field_path: s("status.podIP"),
                    }),
                    ..Default::default()
                }),
            },
            pb::EnvVar {
                name: s("TOKEN"),
                value: None,
                value_from: Some(pb::EnvVarSource {
                    secret_key_ref: Some(pb::SecretKeySelector {
                        local_object_reference: Some(pb::LocalObjectReference { name: s("creds") }),
                        key: s("token"),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            },
        ],
        env_from: vec![pb::EnvFromSource {
            prefix: s("CFG_"),
            config_map_ref: Some(pb::ConfigMapEnvSource {
                local_object_reference: Some(pb::LocalObjectReference { name: s("cfg") }),
                optional: Some(true),
            }),
            secret_ref: None,
        }],
        resources: Some(pb::ResourceRequirements {
            limits: [
                ("cpu".to_owned(), pb_q("500m")),
                ("memory".to_owned(), pb_q("128Mi")),
            ]
            .into(),
            requests: [("cpu".to_owned(), pb_q("0.1"))].into(),
            claims: vec![],
        }),
        volume_mounts: vec![pb::VolumeMount {
            name: s("config"),
            mount_path: s("/etc/app"),
            read_only: Some(true),
            ..Default::default()
        }],
        liveness_probe: Some(pb::Probe {
            handler: Some(pb::ProbeHandler {
                http_get: Some(pb::HttpGetAction {
                    path: s("/healthz"),
                    port: pb_int(8080),
                    scheme: s("HTTP"),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(3),
            period_seconds: Some(10),
            ..Default::default()
        }),
        readiness_probe: Some(pb::Probe {
            handler: Some(pb::ProbeHandler {
                tcp_socket: Some(pb::TcpSocketAction {
                    port: pb_str("http"),
                    host: None,
                }),
                ..Default::default()
            }),
            failure_threshold: Some(1),
            ..Default::default()
        }),
        startup_probe: Some(pb::Probe {
            handler: Some(pb::ProbeHandler {
                exec: Some(pb::ExecAction {
                    command: strings(&["cat", "/tmp/ready"]),
                }),
                ..Default::default()
            }),
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        image_pull_policy: s("IfNotPresent"),
        security_context: Some(pb::SecurityContext {
            capabilities: Some(pb::Capabilities {
                add: strings(&["NET_BIND_SERVICE"]),
                drop: strings(&["ALL"]),
            }),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pb_spec = pb::PodSpec {
        volumes: vec![
            pb::Volume {
                name: s("config"),
                volume_source: Some(pb::VolumeSource {
                    config_map: Some(pb::ConfigMapVolumeSource {
                        local_object_reference: Some(pb::LocalObjectReference { name: s("cfg") }),
                        items: vec![pb::KeyToPath {
                            key: s("app.yaml"),
                            path: s("app.yaml"),
                            mode: Some(0o600),
                        }],
                        default_mode: Some(0o644),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            },
            pb::Volume {
                name: s("scratch"),
                volume_source: Some(pb::VolumeSource {
                    empty_dir: Some(pb::EmptyDirVolumeSource {
                        medium: s("Memory"),
                        size_limit: Some(pb_q("1Gi")),
                    }),
                    ..Default::default()
                }),
            },
        ],
        containers: vec![pb_container],
        restart_policy: s("Always"),
        termination_grace_period_seconds: Some(0),
        node_selector: labels(&[("kubernetes.io/os", "linux")]),
        automount_service_account_token: Some(false),
        security_context: Some(pb::PodSecurityContext {
            run_as_group: Some(1000),
            fs_group: Some(2000),
            supplemental_groups: vec![1, 2],
            ..Default::default()
        }),
        tolerations: vec![pb::Toleration {
            key: s("node.kubernetes.io/not-ready"),
            operator: s("Exists"),
            effect: s("NoExecute"),
            toleration_seconds: Some(300),
            ..Default::default()
        }],
        affinity: Some(pb::Affinity {
            node_affinity: Some(pb::NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(pb::NodeSelector {
                    node_selector_terms: vec![pb::NodeSelectorTerm {
                        match_expressions: vec![pb::NodeSelectorRequirement {
                            key: s("zone"),
                            operator: s("In"),
                            values: strings(&["a", "b"]),
                        }],
                        match_fields: vec![],
                    }],
                }),
                preferred_during_scheduling_ignored_during_execution: vec![],
            }),
            ..Default::default()
        }),
        enable_service_links: Some(false),
        ..Default::default()
    };
    let pb_template = pb::PodTemplateSpec {
        metadata: Some(pbm::ObjectMeta {
            labels: labels(&[("app", "web")]),
            ..Default::default()
        }),
        spec: Some(pb_spec),
    };

    let oa_container = oa::Container {
        name: "app".into(),
        image: s("registry.example/app:1.2"),
        command: Some(strings(&["/app"])),
        args: Some(strings(&["--port", "8080"])),
        ports: Some(vec![oa::ContainerPort {
            name: s("http"),
            container_port: 8080,
            protocol: s("TCP"),
            ..Default::default()
        }]),
        env: Some(vec![
            oa::EnvVar {
                name: "MODE".into(),
                value: s("prod"),
                value_from: None,
            },
            oa::EnvVar {
                name: "POD_IP".into(),
                value: None,
                value_from: Some(oa::EnvVarSource {
                    field_ref: Some(oa::ObjectFieldSelector {
                        api_version: s("v1"),
                        field_path: "status.podIP".into(),
                    }),
                    ..Default::default()
                }),
            },
            oa::EnvVar {
                name: "TOKEN".into(),
                value: None,
                value_from: Some(oa::EnvVarSource {
                    secret_key_ref: Some(oa::SecretKeySelector {
                        name: "creds".into(),
                        key: "token".into(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
            },
        ]),
        env_from: Some(vec![oa::EnvFromSource {
            prefix: s("CFG_"),
            config_map_ref: Some(oa::ConfigMapEnvSource {
                name: "cfg".into(),
                optional: Some(true),
            }),
            secret_ref: None,
        }]),
        resources: Some(oa::ResourceRequirements {
            limits: Some(
                [
                    ("cpu".to_owned(), oa_q("500m")),
                    ("memory".to_owned(), oa_q("128Mi")),
                ]
                .into(),
            ),
            requests: Some([("cpu".to_owned(), oa_q("0.1"))].into()),
            claims: None,
        }),
        volume_mounts: Some(vec![oa::VolumeMount {
            name: "config".into(),
            mount_path: "/etc/app".into(),
            read_only: Some(true),
            ..Default::default()
        }]),
        liveness_probe: Some(oa::Probe {
            http_get: Some(oa::HTTPGetAction {
                path: s("/healthz"),
                port: OaIntOrString::Int(8080),
                scheme: s("HTTP"),
                ..Default::default()
            }),
            initial_delay_seconds: Some(3),
            period_seconds: Some(10),
            ..Default::default()
        }),
        readiness_probe: Some(oa::Probe {
            tcp_socket: Some(oa::TCPSocketAction {
                port: OaIntOrString::String("http".into()),
                host: None,
            }),
            failure_threshold: Some(1),
            ..Default::default()
        }),
        startup_probe: Some(oa::Probe {
            exec: Some(oa::ExecAction {
                command: Some(strings(&["cat", "/tmp/ready"])),
            }),
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        image_pull_policy: s("IfNotPresent"),
        security_context: Some(oa::SecurityContext {
            capabilities: Some(oa::Capabilities {
                add: Some(strings(&["NET_BIND_SERVICE"])),
                drop: Some(strings(&["ALL"])),
            }),
            run_as_user: Some(0),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let oa_spec = oa::PodSpec {
        volumes: Some(vec![
            oa::Volume {
                name: "config".into(),
                config_map: Some(oa::ConfigMapVolumeSource {
                    name: "cfg".into(),
                    items: Some(vec![oa::KeyToPath {
                        key: "app.yaml".into(),
                        path: "app.yaml".into(),
                        mode: Some(0o600),
                    }]),
                    default_mode: Some(0o644),
                    optional: None,
                }),
                ..Default::default()
            },
            oa::Volume {
                name: "scratch".into(),
                empty_dir: Some(oa::EmptyDirVolumeSource {
                    medium: s("Memory"),
                    size_limit: Some(oa_q("1Gi")),
                }),
                ..Default::default()
            },
        ]),
        containers: vec![oa_container],
        restart_policy: s("Always"),
        termination_grace_period_seconds: Some(0),
        node_selector: Some(labels(&[("kubernetes.io/os", "linux")])),
        automount_service_account_token: Some(false),
        security_context: Some(oa::PodSecurityContext {
            run_as_group: Some(1000),
            fs_group: Some(2000),
            supplemental_groups: Some(vec![1, 2]),
            ..Default::default()
        }),
        tolerations: Some(vec![oa::Toleration {
            key: s("node.kubernetes.io/not-ready"),
            operator: s("Exists"),
            effect: s("NoExecute"),
            toleration_seconds: Some(300),
            ..Default::default()
        }]),
        affinity: Some(oa::Affinity {
            node_affinity: Some(oa::NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(oa::NodeSelector {
                    node_selector_terms: vec![oa::NodeSelectorTerm {
                        match_expressions: Some(vec![oa::NodeSelectorRequirement {
                            key: "zone".into(),
                            operator: "In".into(),
                            values: Some(strings(&["a", "b"])),
                        }]),
                        match_fields: None,
                    }],
                }),
                preferred_during_scheduling_ignored_during_execution: None,
            }),
            ..Default::default()
        }),
        enable_service_links: Some(false),
        ..Default::default()
    };
    let oa_template = oa::PodTemplateSpec {
        metadata: Some(oam::ObjectMeta {
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        }),
        spec: Some(oa_spec),
    };
    (pb_template, oa_template)
}

pub(super) fn pb_selector() -> Option<pbm::LabelSelector> {
    Some(pbm::LabelSelector {
        match_labels: labels(&[("app", "web")]),
        match_expressions: vec![pbm::LabelSelectorRequirement {
            key: s("tier"),
            operator: s("NotIn"),
            values: strings(&["db"]),
        }],
    })
}

pub(super) fn oa_selector() -> oam::LabelSelector {
    oam::LabelSelector {
        match_labels: Some(labels(&[("app", "web")])),
        match_expressions: Some(vec![oam::LabelSelectorRequirement {
            key: "tier".into(),
            operator: "NotIn".into(),
            values: Some(strings(&["db"])),
        }]),
    }
}

#[test]
fn secret_with_binary_data_roundtrips() {
    let binary: Vec<u8> = (0..=255).collect();
    let secret = pb::Secret {
        metadata: pb_meta("creds"),
        immutable: Some(false),
        data: [
            ("bin".to_owned(), binary.clone()),
            ("empty".to_owned(), vec![]),
        ]
        .into(),
        string_data: [("plain".to_owned(), "text".to_owned())].into(),
        r#type: s("helm.sh/release.v1"),
    };
    let expected = oa::Secret {
        metadata: oa_meta("creds"),
        immutable: Some(false),
        data: Some(
            [
                ("bin".to_owned(), ByteString(binary)),
                ("empty".to_owned(), ByteString(vec![])),
            ]
            .into(),
        ),
        string_data: Some([("plain".to_owned(), "text".to_owned())].into()),
        type_: s("helm.sh/release.v1"),
    };
    roundtrip(&secret, &expected);
}

#[test]
fn configmap_and_namespace_and_service_account_roundtrip() {
    let cm = pb::ConfigMap {
        metadata: pb_meta("cfg"),
        immutable: Some(true),
        data: labels(&[("app.yaml", "a: 1\n"), ("empty", "")]),
        binary_data: [("logo".to_owned(), vec![0x89, b'P', b'N', b'G', 0])].into(),
    };
    let expected = oa::ConfigMap {
        metadata: oa_meta("cfg"),
        immutable: Some(true),
        data: Some(labels(&[("app.yaml", "a: 1\n"), ("empty", "")])),
        binary_data: Some(
            [(
                "logo".to_owned(),
                ByteString(vec![0x89, b'P', b'N', b'G', 0]),
            )]
            .into(),
        ),
    };
    roundtrip(&cm, &expected);

    let ns = pb::Namespace {
        metadata: Some(pbm::ObjectMeta {
            name: s("team-a"),
            ..Default::default()
        }),
        spec: Some(pb::NamespaceSpec {
            finalizers: strings(&["kubernetes"]),
        }),
        status: Some(pb::NamespaceStatus {
            phase: s("Active"),
            conditions: vec![],
        }),
    };
    let expected = oa::Namespace {
        metadata: oam::ObjectMeta {
            name: s("team-a"),
            ..Default::default()
        },
        spec: Some(oa::NamespaceSpec {
            finalizers: Some(strings(&["kubernetes"])),
        }),
        status: Some(oa::NamespaceStatus {
            phase: s("Active"),
            conditions: None,
        }),
    };
    roundtrip(&ns, &expected);

    let sa = pb::ServiceAccount {
        metadata: pb_meta("builder"),
        secrets: vec![pb::ObjectReference {
            name: s("builder-token"),
            ..Default::default()
        }],
        image_pull_secrets: vec![pb::LocalObjectReference { name: s("regcred") }],
        automount_service_account_token: Some(false),
    };
    let expected = oa::ServiceAccount {
        metadata: oa_meta("builder"),
        secrets: Some(vec![oa::ObjectReference {
            name: s("builder-token"),
            ..Default::default()
        }]),
        image_pull_secrets: Some(vec![oa::LocalObjectReference {
            name: "regcred".into(),
        }]),
        automount_service_account_token: Some(false),
    };
    roundtrip(&sa, &expected);
}
