//! Real kubectl bodies, Go's printing rules for unset fields, errors, and hostile input.

use prost::Message as _;
use serde_json::{json, Value};

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("testdata/", $name, ".pb")),
            include_str!(concat!("testdata/", $name, ".json")),
        )
    };
}

/// Bodies kubectl 1.32 POSTed for `kubectl create <generator>` (captured from a stub server),
/// next to what `kubectl create … --dry-run=client -o json` printed for the same object
/// (`token` has no dry-run; its JSON is written from the Go types, see testdata/README.md).
const KUBECTL: &[(&str, &[u8], &str)] = &[
    fixture!("clusterrole"),
    fixture!("clusterrole-aggregated"),
    fixture!("clusterrolebinding"),
    fixture!("configmap"),
    fixture!("cronjob"),
    fixture!("deployment"),
    fixture!("deployment-multi"),
    fixture!("ingress"),
    fixture!("job"),
    fixture!("namespace"),
    fixture!("pdb"),
    fixture!("priorityclass"),
    fixture!("quota"),
    fixture!("role"),
    fixture!("rolebinding"),
    fixture!("secret-docker"),
    fixture!("secret-generic"),
    fixture!("service-clusterip"),
    fixture!("service-externalname"),
    fixture!("service-nodeport"),
    fixture!("serviceaccount"),
    fixture!("token"),
];

/// kubectl 1.32's Go types predate `omitzero` on `creationTimestamp`, so it printed `null`
/// where 1.35 types print nothing.
fn drop_null_creation_timestamps(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.get("creationTimestamp") == Some(&Value::Null) {
                map.remove("creationTimestamp");
            }
            map.values_mut().for_each(drop_null_creation_timestamps);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null_creation_timestamps),
        _ => {}
    }
}

pub(super) fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_owned()),
            kind: Some(kind.to_owned()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = MAGIC.to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

/// Key + length + bytes of a length-delimited field, for hand-built messages.
fn len_field(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut out);
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

#[test]
fn kubectl_create_bodies_decode_to_the_json_kubectl_prints_for_them() {
    for (name, body, printed) in KUBECTL {
        let got = decode_to_json(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut want: Value = serde_json::from_str(printed).expect("fixture is JSON");
        drop_null_creation_timestamps(&mut want);
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn kubectl_secret_keeps_binary_data_as_base64() {
    let (_, body, _) = KUBECTL
        .iter()
        .find(|f| f.0 == "secret-generic")
        .expect("fixture");
    let got = decode_to_json(body).expect("decodes");
    let all_bytes: Vec<u8> = (0..=255).collect();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, all_bytes);
    assert_eq!(got["data"]["bin"], Value::String(b64));
    assert_eq!(got["type"], "Opaque");
}

#[test]
fn value_fields_sent_as_zero_are_dropped_but_set_pointers_are_kept() {
    use k8s_pb::api::apps::v1::{Deployment, DeploymentSpec};
    use k8s_pb::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    // What gogo writes: every value field, even when zero; pointers only when set.
    let meta = ObjectMeta {
        name: Some("web".into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        self_link: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(Time::default()),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: Some(meta),
        spec: Some(DeploymentSpec {
            replicas: Some(0),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    let body = envelope("apps/v1", "Deployment", deployment.encode_to_vec());
    let expected = json!({
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 0,
            "selector": null,
            "template": {"metadata": {}, "spec": {"containers": null}},
            "strategy": {},
        },
        "status": {},
    });
    assert_eq!(decode_to_json(&body), Ok(expected));
}

#[test]
fn absent_required_fields_print_their_go_zero_values() {
    use k8s_pb::api::rbac::v1::{PolicyRule, Role};
    let role = Role {
        metadata: None,
        rules: vec![PolicyRule::default()],
    };
    let body = envelope("rbac.authorization.k8s.io/v1", "Role", role.encode_to_vec());
    let expected = json!({
        "kind": "Role",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {},
        "rules": [{"verbs": null}],
    });
    assert_eq!(decode_to_json(&body), Ok(expected));
}

#[test]
fn times_print_in_utc_with_seconds_and_micro_times_with_microseconds() {
    use k8s_pb::api::events::v1::Event;
    use k8s_pb::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
    let event = Event {
        metadata: Some(ObjectMeta {
            creation_timestamp: Some(Time {
                seconds: Some(1_700_000_000),
                nanos: Some(999_999_999),
            }),
            ..Default::default()
        }),
        event_time: Some(MicroTime {
            seconds: Some(1_700_000_000),
            nanos: Some(123_456_789),
        }),
        deprecated_first_timestamp: Some(Time {
            seconds: Some(0),
            nanos: None,
        }),
        deprecated_last_timestamp: Some(Time {
            seconds: Some(-62_135_596_800),
            nanos: None,
        }),
        ..Default::default()
    };
    let body = envelope("events.k8s.io/v1", "Event", event.encode_to_vec());
    let got = decode_to_json(&body).expect("decodes");
    assert_eq!(got["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(got["eventTime"], "2023-11-14T22:13:20.123456Z");
    assert_eq!(got["deprecatedFirstTimestamp"], "1970-01-01T00:00:00Z");
    // A set pointer to Go's zero time prints as null.
    assert_eq!(got.get("deprecatedLastTimestamp"), Some(&Value::Null));
}

#[test]
fn crd_schema_unions_and_embedded_json_print_as_go_does() {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let string = ext::JsonSchemaProps {
        r#type: Some("string".into()),
        ..Default::default()
    };
    let props = ext::JsonSchemaProps {
        r#type: Some("object".into()),
        properties: [
            (
                "free".to_owned(),
                ext::JsonSchemaProps {
                    additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
                        allows: Some(true),
                        schema: None,
                    })),
                    x_kubernetes_preserve_unknown_fields: Some(true),
                    ..Default::default()
                },
            ),
            (
                "names".to_owned(),
                ext::JsonSchemaProps {
                    items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                        schema: Some(Box::new(string.clone())),
                        j_son_schemas: vec![],
                    })),
                    default: Some(ext::Json {
                        raw: Some(br#"["a", 1]"#.to_vec()),
                    }),
                    maximum: Some(10.0),
                    multiple_of: Some(0.5),
                    ..Default::default()
                },
            ),
        ]
        .into(),
        ..Default::default()
    };
    let version = ext::CustomResourceDefinitionVersion {
        name: Some("v1".into()),
        schema: Some(ext::CustomResourceValidation {
            open_apiv3_schema: Some(props),
        }),
        ..Default::default()
    };
    let crd = ext::CustomResourceDefinition {
        spec: Some(ext::CustomResourceDefinitionSpec {
            versions: vec![version],
            ..Default::default()
        }),
        ..Default::default()
    };
    let body = envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        crd.encode_to_vec(),
    );
    let got = decode_to_json(&body).expect("decodes");
    let schema = &got["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert_eq!(
        schema,
        &json!({
            "type": "object",
            "properties": {
                "free": {"additionalProperties": true, "x-kubernetes-preserve-unknown-fields": true},
                "names": {"items": {"type": "string"}, "default": ["a", 1], "maximum": 10, "multipleOf": 0.5},
            },
        })
    );
}

#[test]
fn named_slices_wrapped_by_protobuf_print_as_arrays() {
    use k8s_pb::api::authorization::v1::{
        ExtraValue, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let review = SubjectAccessReview {
        spec: Some(SubjectAccessReviewSpec {
            user: Some("alice".into()),
            extra: [(
                "scopes".to_owned(),
                ExtraValue {
                    items: vec!["a".into(), "b".into()],
                },
            )]
            .into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let body = envelope(
        "authorization.k8s.io/v1",
        "SubjectAccessReview",
        review.encode_to_vec(),
    );
    let got = decode_to_json(&body).expect("decodes");
    assert_eq!(got["spec"]["extra"], json!({"scopes": ["a", "b"]}));
}

#[test]
fn raw_extension_and_fields_v1_embed_their_json() {
    use k8s_pb::api::apps::v1::ControllerRevision;
    use k8s_pb::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
    use k8s_pb::apimachinery::pkg::runtime::RawExtension;
    let revision = ControllerRevision {
        metadata: Some(ObjectMeta {
            managed_fields: vec![ManagedFieldsEntry {
                manager: Some("kubectl".into()),
                fields_type: Some("FieldsV1".into()),
                fields_v1: Some(FieldsV1 {
                    raw: Some(br#"{"f:data":{}}"#.to_vec()),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        data: Some(RawExtension {
            raw: Some(br#"{"spec":{"x":1}}"#.to_vec()),
        }),
        revision: Some(3),
    };
    let body = envelope("apps/v1", "ControllerRevision", revision.encode_to_vec());
    let got = decode_to_json(&body).expect("decodes");
    assert_eq!(got["data"], json!({"spec": {"x": 1}}));
    assert_eq!(
        got["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {}})
    );
    assert_eq!(got["revision"], 3);
}

#[test]
fn delete_options_are_accepted_in_every_served_group_version() {
    use k8s_pb::apimachinery::pkg::apis::meta::v1::DeleteOptions;
    let options = DeleteOptions {
        propagation_policy: Some("Background".into()),
        ..Default::default()
    };
    for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let body = envelope(api_version, "DeleteOptions", options.encode_to_vec());
        let expected = json!({"kind": "DeleteOptions", "apiVersion": api_version, "propagationPolicy": "Background"});
        assert_eq!(decode_to_json(&body), Ok(expected));
    }
    let body = envelope("nope.example/v1", "DeleteOptions", options.encode_to_vec());
    assert!(matches!(
        decode_to_json(&body),
        Err(ProtobufError::UnknownKind { .. })
    ));
}

#[test]
fn delete_options_with_preconditions_roundtrip() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as oam;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as pbm;
    let options = pbm::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(pbm::Preconditions {
            uid: Some("5f6e".into()),
            resource_version: Some("42".into()),
        }),
        orphan_dependents: None,
        propagation_policy: Some("Foreground".into()),
        dry_run: vec!["All".to_owned()],
        ignore_store_read_error_with_cluster_breaking_potential: Some(false),
    };
    let body = envelope("v1", "DeleteOptions", options.encode_to_vec());
    let json = decode_to_json(&body).expect("decodes");
    let got: oam::DeleteOptions = serde_json::from_value(json).expect("is DeleteOptions");
    let expected = oam::DeleteOptions {
        api_version: Some("v1".into()),
        kind: Some("DeleteOptions".into()),
        grace_period_seconds: Some(0),
        preconditions: Some(oam::Preconditions {
            uid: Some("5f6e".into()),
            resource_version: Some("42".into()),
        }),
        orphan_dependents: None,
        propagation_policy: Some("Foreground".into()),
        dry_run: Some(vec!["All".to_owned()]),
        ignore_store_read_error_with_cluster_breaking_potential: Some(false),
    };
    assert_eq!(got, expected);
}

#[test]
fn content_type_check_ignores_parameters_and_case() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf(
        "Application/VND.kubernetes.protobuf; charset=utf-8"
    ));
    assert!(!is_protobuf("application/json"));
    assert!(!is_protobuf("application/vnd.kubernetes.protobuf+json"));
    assert!(!is_protobuf(""));
}

#[test]
fn envelope_errors_say_what_is_wrong() {
    assert_eq!(decode_to_json(b""), Err(ProtobufError::Empty));
    assert_eq!(decode_to_json(b"k8s\0"), Err(ProtobufError::Empty));
    assert_eq!(
        decode_to_json(b"{\"kind\":1}"),
        Err(ProtobufError::NotProtobuf)
    );
    assert_eq!(decode_to_json(b"k8s"), Err(ProtobufError::NotProtobuf));
    let unknown = decode_to_json(&envelope("v1", "Foo", vec![])).expect_err("unknown kind");
    assert_eq!(
        unknown.to_string(),
        r#"no kind "Foo" is registered for version "v1""#
    );
    assert_eq!(
        decode_to_json(&envelope("v1", "", vec![])),
        Err(ProtobufError::MissingKind)
    );
    assert_eq!(
        decode_to_json(&envelope("", "Secret", vec![])),
        Err(ProtobufError::MissingVersion)
    );
    let truncated = decode_to_json(b"k8s\0\x0a\x05\x0a\x02v1");
    assert!(
        matches!(truncated, Err(ProtobufError::Malformed { .. })),
        "{truncated:?}"
    );
}

#[test]
fn field_errors_name_the_json_path() {
    // Secret.metadata (1) → ObjectMeta.name (1) sent as a varint instead of a string.
    let raw = len_field(1, &[0x08, 0x01]);
    let err = decode_to_json(&envelope("v1", "Secret", raw)).expect_err("wrong wire type");
    assert_eq!(
        err.to_string(),
        "proto: wrong wireType = 0 for field metadata.name"
    );
    // A Service port's targetPort (ServiceSpec.ports (1) → ServicePort.targetPort (4)) with an impossible type.
    let port = len_field(4, &[0x08, 0x07]);
    let raw = len_field(2, &len_field(1, &port));
    let err = decode_to_json(&envelope("v1", "Service", raw)).expect_err("bad intstr");
    assert_eq!(
        err.to_string(),
        "invalid value at spec.ports[0].targetPort: impossible IntOrString.Type 7"
    );
}

#[test]
fn hostile_nesting_is_refused_before_the_stack_runs_out() {
    // CRD spec (2) → versions (7) → schema (4) → openAPIV3Schema (1) → not (28) → not → …
    let mut schema = Vec::new();
    for _ in 0..1_000 {
        schema = len_field(28, &schema);
    }
    let raw = len_field(2, &len_field(7, &len_field(4, &len_field(1, &schema))));
    let err = decode_to_json(&envelope(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        raw,
    ));
    assert!(matches!(err, Err(ProtobufError::TooDeep { .. })), "{err:?}");
}

#[test]
fn nesting_just_under_the_limit_decodes_within_half_a_worker_stack() {
    // The decoder runs on tokio workers (2 MiB stacks); half of that must do even in an
    // unoptimised build.
    let mut schema = Vec::new();
    for _ in 0..(decode::MAX_DEPTH - 10) {
        schema = len_field(28, &schema);
    }
    let raw = len_field(2, &len_field(7, &len_field(4, &len_field(1, &schema))));
    let body = envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", raw);
    let decoded = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || decode_to_json(&body).map(|_| ()))
        .expect("spawn")
        .join()
        .expect("no stack overflow");
    assert_eq!(decoded, Ok(()));
}

/// xorshift64*: deterministic bytes for the hostile-input test, no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn truncated_mutated_and_random_bodies_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut err) = (0, 0);
    let mut count = |r: Result<Value, ProtobufError>| match r {
        Ok(_) => ok += 1,
        Err(_) => err += 1,
    };
    for (_, body, _) in KUBECTL {
        for len in 0..body.len() {
            count(decode_to_json(&body[..len]));
        }
        for _ in 0..300 {
            let mut mutated = body.to_vec();
            for _ in 0..=rng.below(4) {
                let at = 4 + rng.below(mutated.len() - 4);
                mutated[at] = rng.next() as u8;
            }
            count(decode_to_json(&mutated));
        }
    }
    for _ in 0..3000 {
        let mut body = MAGIC.to_vec();
        body.extend((0..rng.below(64)).map(|_| rng.next() as u8));
        count(decode_to_json(&body));
    }
    assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
}
