//! The encoder against independent oracles: kubectl's own (gogo-written) bodies byte for
//! byte, k8s-pb/prost decoding our bytes into the typed messages, and decode ∘ encode over
//! objects generated from the schema for every kind in the table.

use prost::Message as _;
use serde_json::{json, Map, Value};

use super::encode::all_kinds;
use super::table::{kind_message, Field, Kind, Label, Message, Special};
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

/// The `runtime.Unknown` of an enveloped body, read with k8s-pb.
fn unknown(body: &[u8]) -> k8s_pb::apimachinery::pkg::runtime::Unknown {
    assert_eq!(&body[..4], b"k8s\0");
    k8s_pb::apimachinery::pkg::runtime::Unknown::decode(&body[4..]).expect("Unknown decodes")
}

/// Decodes `raw` as the typed k8s-pb message of `kind` and re-encodes it with prost.
fn through_prost(kind: &str, raw: &[u8]) -> Vec<u8> {
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::authentication::v1 as authn;
    use k8s_pb::api::batch::v1 as batch;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::api::networking::v1 as net;
    use k8s_pb::api::policy::v1 as policy;
    use k8s_pb::api::rbac::v1 as rbac;
    use k8s_pb::api::scheduling::v1 as sched;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    macro_rules! via {
        ($($k:literal => $t:ty),* $(,)?) => {
            match kind {
                $($k => <$t>::decode(raw).unwrap_or_else(|e| panic!("{kind}: {e}")).encode_to_vec(),)*
                other => panic!("no k8s-pb type mapped for {other}"),
            }
        };
    }
    via! {
        "ConfigMap" => core::ConfigMap, "Secret" => core::Secret, "Namespace" => core::Namespace,
        "ServiceAccount" => core::ServiceAccount, "Service" => core::Service,
        "ResourceQuota" => core::ResourceQuota, "Pod" => core::Pod,
        "ConfigMapList" => core::ConfigMapList, "Status" => meta::Status,
        "Deployment" => apps::Deployment, "Job" => batch::Job, "CronJob" => batch::CronJob,
        "Role" => rbac::Role, "RoleBinding" => rbac::RoleBinding,
        "ClusterRole" => rbac::ClusterRole, "ClusterRoleBinding" => rbac::ClusterRoleBinding,
        "Ingress" => net::Ingress, "PodDisruptionBudget" => policy::PodDisruptionBudget,
        "PriorityClass" => sched::PriorityClass, "TokenRequest" => authn::TokenRequest,
    }
}

#[test]
fn kubectl_bodies_reencode_byte_for_byte() {
    for (name, body, _) in KUBECTL {
        let json = decode_to_json(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let ours = encode_object(&json).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            ours == *body,
            "{name}: bytes differ\n ours {ours:?}\ngogo {body:?}"
        );
    }
}

#[test]
fn fixture_json_encodes_to_what_prost_reads_back_as_the_same_object() {
    for (name, body, printed) in KUBECTL {
        let mut want: Value = serde_json::from_str(printed).expect("fixture is JSON");
        drop_nulls_named(&mut want, "creationTimestamp");
        let ours = encode_object(&want).unwrap_or_else(|e| panic!("{name}: {e}"));
        let env = unknown(&ours);
        let meta = env.type_meta.clone().expect("typeMeta");
        assert_eq!(meta.api_version.as_deref(), want["apiVersion"].as_str());
        assert_eq!(meta.kind.as_deref(), want["kind"].as_str());
        assert_eq!(env.content_type.as_deref(), Some(""));
        let kind = meta.kind.unwrap_or_default();
        let raw = env.raw.unwrap_or_default();
        // The typed message prost decodes from our bytes is the one it decodes from kubectl's.
        let theirs = unknown(body).raw.unwrap_or_default();
        assert_eq!(
            through_prost(&kind, &raw),
            through_prost(&kind, &theirs),
            "{name}"
        );
        // And prost's re-encoding of it decodes to the JSON we started from.
        let again = tests::envelope(
            want["apiVersion"].as_str().unwrap_or_default(),
            &kind,
            through_prost(&kind, &raw),
        );
        assert_eq!(decode_to_json(&again).expect("decodes"), want, "{name}");
    }
}

fn drop_nulls_named(v: &mut Value, key: &str) {
    match v {
        Value::Object(map) => {
            if map.get(key) == Some(&Value::Null) {
                map.remove(key);
            }
            map.values_mut().for_each(|v| drop_nulls_named(v, key));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| drop_nulls_named(v, key)),
        _ => {}
    }
}

/// A JSON object for message `index` with every field set to a non-zero value (recursion
/// stops setting optional fields below `budget`), as Go would print it.
fn sample(index: u16, budget: usize, seed: &mut u32) -> Value {
    let msg = Message::get(index);
    match msg.special {
        Special::Object => {
            let mut map = Map::new();
            fill(msg, budget, seed, &mut map);
            Value::Object(map)
        }
        Special::Time => json!("2024-01-02T03:04:05Z"),
        Special::MicroTime => json!("2024-01-02T03:04:05.123456Z"),
        Special::Quantity => json!("1500m"),
        Special::IntOrString => {
            *seed += 1;
            if seed.is_multiple_of(2) {
                json!(8080)
            } else {
                json!("http")
            }
        }
        Special::RawJson => json!({"a": [1, "b"]}),
        Special::ListWrapper => {
            let f = &msg.fields()[0];
            json!([scalar_sample(f, index, budget, seed)])
        }
        Special::SchemaOrBool => json!(false),
        Special::SchemaOrArray => json!({"type": "string"}),
        Special::SchemaOrStringArray => json!(["x", "y"]),
    }
}

fn scalar_sample(f: &Field, _parent: u16, budget: usize, seed: &mut u32) -> Value {
    *seed += 1;
    match f.kind {
        Kind::Str => json!(format!("s{seed}")),
        Kind::Bytes => json!("AAEC/w=="),
        Kind::Bool => json!(true),
        Kind::I32 => json!(-(*seed as i64)),
        Kind::I64 => json!(1_i64 << 40),
        Kind::F64 => json!(1.5),
        Kind::Msg => sample(f.msg, budget.saturating_sub(1), seed),
    }
}

fn fill(msg: &Message, budget: usize, seed: &mut u32, map: &mut Map<String, Value>) {
    for f in msg.fields() {
        if f.inline() {
            fill(Message::get(f.msg), budget, seed, map);
            continue;
        }
        let optional = f.pointer() || f.label != Label::One;
        if budget == 0 && optional {
            continue;
        }
        let v = match f.label {
            Label::One => scalar_sample(f, 0, budget, seed),
            Label::Many => json!([scalar_sample(f, 0, budget, seed)]),
            Label::Map => json!({"k1": scalar_sample(f, 0, budget, seed)}),
        };
        map.insert(f.name().to_owned(), v);
    }
}

/// Whether every leaf of `small` is in `big` at the same path.
fn contains(big: &Value, small: &Value) -> bool {
    match (big, small) {
        (Value::Object(b), Value::Object(s)) => s
            .iter()
            .all(|(k, v)| b.get(k).is_some_and(|bv| contains(bv, v))),
        (Value::Array(b), Value::Array(s)) => {
            b.len() == s.len() && b.iter().zip(s).all(|(b, s)| contains(b, s))
        }
        _ => big == small,
    }
}

#[test]
fn every_kind_in_the_table_survives_encode_then_decode() {
    let mut checked = 0;
    for (api_version, kind) in all_kinds() {
        let index = kind_message(api_version, kind).expect("kind");
        let mut seed = 0;
        let mut obj = sample(index, 6, &mut seed);
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(kind);
        let bytes = encode_object(&obj).unwrap_or_else(|e| panic!("{kind}: {e}"));
        let back = decode_to_json(&bytes).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(
            contains(&back, &obj),
            "{api_version} {kind}: lost fields\n{obj}\n{back}"
        );
        // What we decoded is a fixpoint: encoding it again gives the same bytes.
        assert_eq!(encode_object(&back).expect("re-encodes"), bytes, "{kind}");
        checked += 1;
    }
    assert!(checked > 90, "{checked} kinds");
}

#[test]
fn zero_and_absent_values_follow_gogo_presence() {
    // A ConfigMap with no data: gogo writes metadata (a value struct) and immutable is a
    // pointer, so absent; a Deployment with replicas 0 keeps the pointer.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let raw = unknown(&encode_object(&cm).expect("encodes"))
        .raw
        .expect("raw");
    let typed = k8s_pb::api::core::v1::ConfigMap::decode(raw.as_slice()).expect("decodes");
    assert_eq!(typed.immutable, None);
    let meta = typed.metadata.expect("metadata is a value field");
    assert_eq!(meta.name.as_deref(), Some("c"));
    assert_eq!(
        meta.namespace.as_deref(),
        Some(""),
        "value strings are always written"
    );
    assert_eq!(meta.generation, Some(0));
    assert_eq!(meta.deletion_timestamp, None, "pointer time absent");
    let created = meta
        .creation_timestamp
        .expect("value time written (empty: zero)");
    assert_eq!((created.seconds, created.nanos), (None, None));

    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d",
        "creationTimestamp": "2024-05-06T07:08:09Z"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"b": "2", "a": "1"}},
                 "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                 "template": {"spec": {"containers": [{"name": "c", "image": "i",
                     "resources": {"limits": {"cpu": "500m"}}}]}}}});
    let raw = unknown(&encode_object(&d).expect("encodes"))
        .raw
        .expect("raw");
    let typed = k8s_pb::api::apps::v1::Deployment::decode(raw.as_slice()).expect("decodes");
    let meta = typed.metadata.expect("metadata");
    let created = meta.creation_timestamp.expect("time");
    assert_eq!(
        (created.seconds, created.nanos),
        (Some(1_714_979_289), Some(0))
    );
    let spec = typed.spec.expect("spec");
    assert_eq!(spec.replicas, Some(0));
    assert_eq!(spec.paused, Some(false));
    let ru = spec
        .strategy
        .and_then(|s| s.rolling_update)
        .expect("rollingUpdate");
    let surge = ru.max_surge.expect("maxSurge");
    assert_eq!(
        (surge.r#type, surge.str_val.as_deref()),
        (Some(1), Some("25%"))
    );
    let unavailable = ru.max_unavailable.expect("maxUnavailable");
    assert_eq!(
        (unavailable.r#type, unavailable.int_val),
        (Some(0), Some(1))
    );
    let c = &spec
        .template
        .and_then(|t| t.spec)
        .expect("pod spec")
        .containers[0];
    let cpu = &c.resources.as_ref().expect("resources").limits["cpu"];
    assert_eq!(cpu.string.as_deref(), Some("500m"));
    // Map entries go out sorted by key, as gogo writes them.
    let labels = spec.selector.expect("selector").match_labels;
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn lists_carry_list_meta_and_items() {
    let list = json!({"apiVersion": "v1", "kind": "ConfigMapList",
        "metadata": {"resourceVersion": "42", "continue": "tok", "remainingItemCount": 7},
        "items": [{"metadata": {"name": "a"}, "data": {"k": "v"}}, {"metadata": {"name": "b"}}]});
    let bytes = encode_object(&list).expect("encodes");
    let env = unknown(&bytes);
    assert_eq!(
        env.type_meta.and_then(|t| t.kind).as_deref(),
        Some("ConfigMapList")
    );
    let raw = env.raw.expect("raw");
    let typed = k8s_pb::api::core::v1::ConfigMapList::decode(raw.as_slice()).expect("decodes");
    let meta = typed.metadata.expect("metadata");
    assert_eq!(meta.resource_version.as_deref(), Some("42"));
    assert_eq!(meta.r#continue.as_deref(), Some("tok"));
    assert_eq!(meta.remaining_item_count, Some(7));
    assert_eq!(typed.items.len(), 2);
    assert_eq!(typed.items[0].data["k"], "v");
    let names: Vec<_> = typed
        .items
        .iter()
        .map(|i| i.metadata.as_ref().and_then(|m| m.name.clone()))
        .collect();
    assert_eq!(names, [Some("a".to_owned()), Some("b".to_owned())]);

    // The streaming writer gives the same bytes as encoding the whole list.
    let mut w = ListWriter::new("v1", "ConfigMap", &list["metadata"], 64).expect("kind");
    for item in list["items"].as_array().expect("items") {
        w.push(item).expect("item");
    }
    assert_eq!(&w.finish()[..], &bytes[..]);
    assert!(supports_list("v1", "ConfigMapList"));
    assert!(!supports_list("example.com/v1", "WidgetList"));
    assert!(ListWriter::new("example.com/v1", "Widget", &json!({}), 0).is_err());
}

#[test]
fn status_errors_encode_as_meta_v1_status() {
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "configmaps \"x\" not found", "reason": "NotFound",
        "details": {"name": "x", "kind": "configmaps"}, "code": 404});
    let bytes = encode_object(&status).expect("encodes");
    let env = unknown(&bytes);
    let tm = env.type_meta.expect("typeMeta");
    assert_eq!(
        (tm.api_version.as_deref(), tm.kind.as_deref()),
        (Some("v1"), Some("Status"))
    );
    let raw = env.raw.expect("raw");
    let s =
        k8s_pb::apimachinery::pkg::apis::meta::v1::Status::decode(raw.as_slice()).expect("decodes");
    assert_eq!(s.code, Some(404));
    assert_eq!(s.reason.as_deref(), Some("NotFound"));
    assert_eq!(s.message.as_deref(), Some("configmaps \"x\" not found"));
    let d = s.details.expect("details");
    assert_eq!(
        (d.name.as_deref(), d.kind.as_deref()),
        (Some("x"), Some("configmaps"))
    );
    assert_eq!(decode_to_json(&bytes).expect("decodes")["code"], 404);
}

#[test]
fn watch_frames_are_length_prefixed_raw_watch_events_around_enveloped_objects() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "resourceVersion": "5"}});
    let mut out = Vec::new();
    encode_watch_frame("ADDED", &cm, &mut out).expect("encodes");
    let first_len = out.len();
    encode_watch_frame("DELETED", &cm, &mut out).expect("encodes");
    let mut frames = Vec::new();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        frames.push(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].len() + 4, first_len);
    for (frame, ty) in frames.iter().zip(["ADDED", "DELETED"]) {
        // The frame itself has no `k8s\0` envelope (upstream's raw stream serializer).
        let ev =
            k8s_pb::apimachinery::pkg::apis::meta::v1::WatchEvent::decode(*frame).expect("event");
        assert_eq!(ev.r#type.as_deref(), Some(ty));
        let inner = ev.object.and_then(|o| o.raw).expect("raw object");
        assert_eq!(inner, encode_object(&cm).expect("encodes"));
        assert_eq!(
            decode_to_json(&inner).expect("decodes")["metadata"]["name"],
            "c"
        );
    }
}

#[test]
fn objects_without_a_protobuf_form_are_refused() {
    let cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    assert!(matches!(
        encode_object(&cr),
        Err(EncodeError::UnknownKind { .. })
    ));
    assert!(!supports("example.com/v1", "Widget"));
    assert!(supports("v1", "Secret"));
    assert_eq!(
        encode_object(&json!({"kind": "Secret"})),
        Err(EncodeError::MissingTypeMeta)
    );
    let bad = json!({"apiVersion": "v1", "kind": "Secret", "data": {"a": "not base64!"}});
    assert!(matches!(
        encode_object(&bad),
        Err(EncodeError::Invalid { .. })
    ));
}

#[test]
fn partial_object_metadata_carries_only_object_meta() {
    let partial = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": "p", "labels": {"a": "b"}, "resourceVersion": "9"}});
    let bytes = encode_object(&partial).expect("encodes");
    let env = unknown(&bytes);
    let tm = env.type_meta.expect("typeMeta");
    assert_eq!(tm.kind.as_deref(), Some("PartialObjectMetadata"));
    let raw = env.raw.expect("raw");
    let typed =
        k8s_pb::apimachinery::pkg::apis::meta::v1::PartialObjectMetadata::decode(raw.as_slice())
            .expect("decodes");
    let meta = typed.metadata.expect("metadata");
    assert_eq!(meta.name.as_deref(), Some("p"));
    assert_eq!(meta.labels["a"], "b");

    let mut w = ListWriter::new(
        "meta.k8s.io/v1",
        "PartialObjectMetadata",
        &json!({"resourceVersion": "9"}),
        0,
    )
    .expect("partial lists are supported");
    w.push(&partial).expect("item");
    let env = unknown(&w.finish());
    assert_eq!(
        env.type_meta.and_then(|t| t.kind).as_deref(),
        Some("PartialObjectMetadataList")
    );
    let list = k8s_pb::apimachinery::pkg::apis::meta::v1::PartialObjectMetadataList::decode(
        env.raw.expect("raw").as_slice(),
    )
    .expect("decodes");
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        list.metadata.and_then(|m| m.resource_version).as_deref(),
        Some("9")
    );
}
