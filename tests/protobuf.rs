//! Protobuf answers through the real binary: get, list, Status errors, writes and watch
//! streams asked for with `Accept: application/vnd.kubernetes.protobuf`, decoded here with
//! k8s-pb (prost, built from the upstream .proto files); custom resources fall back to JSON
//! or get 406; kubectl (client-go typed clients, which now read protobuf) still works.

mod common;

use common::{manifests, TestServer};
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const CLIENT_GO: &str = "application/vnd.kubernetes.protobuf, application/json";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// The `runtime.Unknown` of an enveloped body, with its kind.
#[track_caller]
fn envelope(body: &[u8]) -> (String, String, Vec<u8>) {
    assert!(body.starts_with(b"k8s\0"), "no protobuf envelope: {body:?}");
    let u = Unknown::decode(&body[4..]).expect("runtime.Unknown decodes");
    let tm = u.type_meta.expect("typeMeta");
    (
        tm.api_version.unwrap_or_default(),
        tm.kind.unwrap_or_default(),
        u.raw.unwrap_or_default(),
    )
}

fn create_configmap(server: &TestServer, name: &str) {
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","labels":{{"app":"pb"}}}},"data":{{"k":"v-{name}"}},"binaryData":{{"b":"AAEC/w=="}}}}"#
    );
    let reply = server
        .request("POST", CONFIGMAPS)
        .content_type("application/json")
        .body(body)
        .send();
    assert_eq!(reply.status, 201, "{}", reply.text());
}

#[test]
fn get_list_and_errors_are_answered_in_protobuf() {
    let server = TestServer::start();
    create_configmap(&server, "one");
    create_configmap(&server, "two");

    let reply = server
        .request("GET", &format!("{CONFIGMAPS}/one"))
        .header("Accept", CLIENT_GO)
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type").as_deref(), Some(PROTOBUF));
    let (api_version, kind, raw) = envelope(&reply.body);
    assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "ConfigMap"));
    let cm = core::ConfigMap::decode(raw.as_slice()).expect("ConfigMap decodes");
    let m = cm.metadata.expect("metadata");
    assert_eq!(m.name.as_deref(), Some("one"));
    assert_eq!(m.namespace.as_deref(), Some("default"));
    assert!(m.uid.as_deref().is_some_and(|u| !u.is_empty()));
    assert!(m.creation_timestamp.and_then(|t| t.seconds).unwrap_or(0) > 1_600_000_000);
    assert_eq!(cm.data["k"], "v-one");
    assert_eq!(cm.binary_data["b"], vec![0, 1, 2, 255]);

    // A list, limited so ListMeta carries continue and remainingItemCount.
    let reply = server
        .request(
            "GET",
            &format!("{CONFIGMAPS}?labelSelector=app%3Dpb&limit=1"),
        )
        .header("Accept", PROTOBUF)
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (_, kind, raw) = envelope(&reply.body);
    assert_eq!(kind, "ConfigMapList");
    let list = core::ConfigMapList::decode(raw.as_slice()).expect("list decodes");
    assert_eq!(list.items.len(), 1);
    let lm = list.metadata.expect("ListMeta");
    assert!(lm
        .resource_version
        .is_some_and(|rv| rv.parse::<u64>().is_ok()));
    assert!(lm.r#continue.is_some_and(|c| !c.is_empty()));
    assert_eq!(lm.remaining_item_count, Some(1));
    let reply = server
        .request("GET", CONFIGMAPS)
        .header("Accept", PROTOBUF)
        .send();
    let (_, _, raw) = envelope(&reply.body);
    let names: Vec<String> = core::ConfigMapList::decode(raw.as_slice())
        .expect("list decodes")
        .items
        .into_iter()
        .filter_map(|i| i.metadata.and_then(|m| m.name))
        .filter(|n| n == "one" || n == "two")
        .collect();
    assert_eq!(names, ["one", "two"]);

    // A 404 to a protobuf client is a protobuf meta/v1 Status.
    let reply = server
        .request("GET", &format!("{CONFIGMAPS}/missing"))
        .header("Accept", CLIENT_GO)
        .send();
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("content-type").as_deref(), Some(PROTOBUF));
    let (api_version, kind, raw) = envelope(&reply.body);
    assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "Status"));
    let status = meta::Status::decode(raw.as_slice()).expect("Status decodes");
    assert_eq!(status.code, Some(404));
    assert_eq!(status.reason.as_deref(), Some("NotFound"));
    assert_eq!(
        status.message.as_deref(),
        Some("configmaps \"missing\" not found")
    );
    // JSON first in Accept: JSON, as before.
    let reply = server
        .request("GET", &format!("{CONFIGMAPS}/one"))
        .header(
            "Accept",
            "application/json, application/vnd.kubernetes.protobuf",
        )
        .send();
    assert_eq!(reply.json()["data"]["k"], "v-one");
}

#[test]
fn writes_deletes_and_scale_answer_in_protobuf() {
    let server = TestServer::start();
    let deployment = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},
        "spec":{"replicas":0,"selector":{"matchLabels":{"app":"web"}},
        "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}"#;
    let reply = server
        .request("POST", "/apis/apps/v1/namespaces/default/deployments")
        .content_type("application/json")
        .header("Accept", CLIENT_GO)
        .body(deployment)
        .send();
    assert_eq!(reply.status, 201, "{}", reply.text());
    let (_, kind, raw) = envelope(&reply.body);
    assert_eq!(kind, "Deployment");
    let d = apps::Deployment::decode(raw.as_slice()).expect("Deployment decodes");
    let spec = d.spec.expect("spec");
    assert_eq!(spec.replicas, Some(0));
    let c = &spec
        .template
        .and_then(|t| t.spec)
        .expect("pod spec")
        .containers[0];
    assert_eq!(c.image.as_deref(), Some("nginx"));
    // Defaults the server filled in come back too.
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );

    let reply = server
        .request(
            "GET",
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
        )
        .header("Accept", PROTOBUF)
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (api_version, kind, raw) = envelope(&reply.body);
    assert_eq!(
        (api_version.as_str(), kind.as_str()),
        ("autoscaling/v1", "Scale")
    );
    let scale = k8s_pb::api::autoscaling::v1::Scale::decode(raw.as_slice()).expect("Scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(0));

    let reply = server
        .request("DELETE", "/apis/apps/v1/namespaces/default/deployments/web")
        .header("Accept", PROTOBUF)
        .send();
    assert!(
        reply.status == 200 || reply.status == 202,
        "{}",
        reply.text()
    );
    let (_, kind, _) = envelope(&reply.body);
    assert!(kind == "Deployment" || kind == "Status", "{kind}");
}

/// Splits a protobuf watch stream into its WatchEvents.
fn frames(mut body: &[u8]) -> Vec<meta::WatchEvent> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let len = u32::from_be_bytes(body[..4].try_into().expect("length prefix")) as usize;
        out.push(meta::WatchEvent::decode(&body[4..4 + len]).expect("WatchEvent decodes"));
        body = &body[4 + len..];
    }
    out
}

#[test]
fn watch_streams_length_prefixed_watch_events() {
    let server = TestServer::start();
    // The root-CA publisher writes its ConfigMap on its own schedule: let it land before
    // the watched window opens.
    let start = std::time::Instant::now();
    while server
        .request("GET", &format!("{CONFIGMAPS}/kube-root-ca.crt"))
        .send()
        .status
        != 200
    {
        assert!(start.elapsed().as_secs() < 30, "no kube-root-ca.crt");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let reply = server.request("GET", CONFIGMAPS).send();
    let rv = reply.json()["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    create_configmap(&server, "w1");
    create_configmap(&server, "w2");
    let reply = server
        .request(
            "GET",
            &format!("{CONFIGMAPS}?watch=true&resourceVersion={rv}&timeoutSeconds=2"),
        )
        .header("Accept", CLIENT_GO)
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/vnd.kubernetes.protobuf;stream=watch")
    );
    let events = frames(&reply.body);
    assert_eq!(events.len(), 2, "{events:?}");
    for (ev, name) in events.iter().zip(["w1", "w2"]) {
        assert_eq!(ev.r#type.as_deref(), Some("ADDED"));
        let raw = ev
            .object
            .as_ref()
            .and_then(|o| o.raw.clone())
            .expect("object");
        let (_, kind, inner) = envelope(&raw);
        assert_eq!(kind, "ConfigMap");
        let cm = core::ConfigMap::decode(inner.as_slice()).expect("ConfigMap decodes");
        assert_eq!(cm.metadata.and_then(|m| m.name).as_deref(), Some(name));
    }

    // WatchList: initial events, then the initial-events-end bookmark.
    let reply = server
        .request(
            "GET",
            &format!("{CONFIGMAPS}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1&labelSelector=app%3Dpb"),
        )
        .header("Accept", CLIENT_GO)
        .send();
    let events = frames(&reply.body);
    let types: Vec<_> = events.iter().filter_map(|e| e.r#type.clone()).collect();
    assert_eq!(types, ["ADDED", "ADDED", "BOOKMARK"]);
    let raw = events[2]
        .object
        .as_ref()
        .and_then(|o| o.raw.clone())
        .expect("bookmark");
    let (_, kind, inner) = envelope(&raw);
    assert_eq!(kind, "ConfigMap");
    let m = core::ConfigMap::decode(inner.as_slice())
        .expect("bookmark decodes")
        .metadata
        .expect("metadata");
    assert_eq!(m.annotations["k8s.io/initial-events-end"], "true");
}

#[test]
fn custom_resources_are_json_only() {
    let server = TestServer::start();
    server.apply("crd.yaml", manifests::WIDGET_CRD);
    server.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
    ]);
    server.apply("w.yaml", &manifests::widget("w1", "default", 3, "blue"));
    let path = "/apis/example.com/v1/namespaces/default/widgets/w1";

    let reply = server
        .request("GET", path)
        .header("Accept", CLIENT_GO)
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(reply.json()["spec"]["color"], "blue");

    let reply = server
        .request("GET", path)
        .header("Accept", PROTOBUF)
        .send();
    assert_eq!(reply.status, 406);
    let (_, kind, raw) = envelope(&reply.body);
    assert_eq!(kind, "Status");
    let status = meta::Status::decode(raw.as_slice()).expect("Status decodes");
    assert_eq!(status.reason.as_deref(), Some("NotAcceptable"));
    assert_eq!(
        status.message.as_deref(),
        Some("object *unstructured.Unstructured does not implement the protobuf marshalling interface and cannot be encoded to a protobuf message")
    );
    // client-go's metadata client gets PartialObjectMetadataList in protobuf, custom
    // resources included.
    let reply = server
        .request("GET", "/apis/example.com/v1/namespaces/default/widgets")
        .header("Accept", "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json")
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (api_version, kind, raw) = envelope(&reply.body);
    assert_eq!(
        (api_version.as_str(), kind.as_str()),
        ("meta.k8s.io/v1", "PartialObjectMetadataList")
    );
    let list = meta::PartialObjectMetadataList::decode(raw.as_slice()).expect("list decodes");
    let names: Vec<_> = list
        .items
        .into_iter()
        .filter_map(|i| i.metadata.and_then(|m| m.name))
        .collect();
    assert_eq!(names, ["w1"]);
    // The CRD itself is a built-in kind and has a protobuf form.
    let reply = server
        .request(
            "GET",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com",
        )
        .header("Accept", PROTOBUF)
        .send();
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (_, kind, raw) = envelope(&reply.body);
    assert_eq!(kind, "CustomResourceDefinition");
    assert!(
        k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition::decode(raw.as_slice())
            .expect("CRD decodes")
            .spec
            .and_then(|s| s.names)
            .and_then(|n| n.kind)
            .is_some_and(|k| k == "Widget")
    );
}

/// kubectl's typed clients ask for protobuf first: what it prints (`-o json`) is decoded
/// from our protobuf answers.
#[test]
fn kubectl_create_reads_protobuf_answers() {
    let server = TestServer::start();
    let out = server.kubectl_json(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=1",
        "--from-literal=b=two",
        "-o",
        "json",
    ]);
    assert_eq!(out["data"], serde_json::json!({"a": "1", "b": "two"}));
    assert!(out["metadata"]["uid"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));
    let out = server.kubectl_json(&[
        "create",
        "secret",
        "generic",
        "sec",
        "--from-literal=password=hunter2",
        "-o",
        "json",
    ]);
    assert_eq!(out["data"]["password"], "aHVudGVyMg==");
    let out = server.kubectl_json(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=0",
        "-o",
        "json",
    ]);
    assert_eq!(out["spec"]["replicas"], 0);
    assert_eq!(out["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    let out = server.kubectl_json(&[
        "create",
        "job",
        "j",
        "--image=busybox",
        "-o",
        "json",
        "--",
        "true",
    ]);
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["command"][0],
        "true"
    );
    let out = server.kubectl_json(&["create", "namespace", "ns1", "-o", "json"]);
    assert_eq!(out["status"]["phase"], "Active");
    let out = server.kubectl_json(&["create", "serviceaccount", "sa1", "-n", "ns1", "-o", "json"]);
    assert_eq!(out["metadata"]["namespace"], "ns1");
    // The answers above were protobuf: kubectl logs the response headers at -v=8.
    let run = server
        .kubectl(&[
            "create",
            "configmap",
            "logged",
            "--from-literal=a=1",
            "-v=8",
        ])
        .ok();
    assert!(
        run.stderr
            .contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "{run}"
    );
    // A review through a typed client, answered in protobuf.
    let run = server
        .kubectl(&["auth", "can-i", "create", "configmaps", "-v=8"])
        .ok();
    assert_eq!(run.stdout.trim(), "yes", "{run}");
    assert!(
        run.stderr
            .contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "{run}"
    );
    // Reads and deletes through typed clients too.
    server.kubectl_ok(&["delete", "configmap", "cfg"]);
    let run = server.kubectl(&["get", "configmap", "cfg"]).fails();
    assert!(run.stderr.contains("configmaps \"cfg\" not found"), "{run}");
}

#[test]
fn a_watch_from_a_compacted_revision_gets_a_protobuf_410_status() {
    let server = TestServer::start_with(&[
        "--store-compaction-interval",
        "1",
        "--store-compaction-keep",
        "5",
    ]);
    create_configmap(&server, "old");
    let reply = server.request("GET", &format!("{CONFIGMAPS}/old")).send();
    let old_rv = reply.json()["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    for i in 0..20 {
        create_configmap(&server, &format!("filler-{i}"));
    }
    // Compaction runs every second; the error comes as an ERROR event (or, once the
    // revision is known gone up front, as the reply itself), a protobuf Status either way.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        let reply = server
            .request(
                "GET",
                &format!("{CONFIGMAPS}?watch=true&resourceVersion={old_rv}&timeoutSeconds=1"),
            )
            .header("Accept", CLIENT_GO)
            .send();
        let status_bytes = if reply.status == 200 {
            frames(&reply.body)
                .into_iter()
                .find(|e| e.r#type.as_deref() == Some("ERROR"))
                .and_then(|e| e.object.and_then(|o| o.raw))
        } else {
            Some(reply.body.clone())
        };
        if let Some(bytes) = status_bytes {
            let (_, kind, raw) = envelope(&bytes);
            assert_eq!(kind, "Status");
            break meta::Status::decode(raw.as_slice()).expect("Status decodes");
        }
        assert!(std::time::Instant::now() < deadline, "no 410 for {old_rv}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(status.code, Some(410), "{status:?}");
    assert_eq!(status.reason.as_deref(), Some("Expired"), "{status:?}");
}

/// client-go's read-modify-write of a pod in protobuf (what the e2e suite's label updates
/// do): the pod goes back with whatever empty lists the protobuf decoding yields, and the
/// metadata change is accepted rather than refused as a spec change.
#[test]
fn a_pod_written_back_in_protobuf_may_change_its_labels() {
    let server = TestServer::start();
    server.kubectl_ok(&["run", "p", "--image=busybox:1.36", "--", "sleep", "100"]);
    // The scheduler marks the pod unschedulable (this server has no node) at its own pace:
    // a write between the read and the write-back is a 409, and the client reads again.
    let mut attempts = 0;
    let reply = loop {
        attempts += 1;
        let reply = server
            .request("GET", "/api/v1/namespaces/default/pods/p")
            .header("Accept", PROTOBUF)
            .send();
        assert_eq!(reply.status, 200, "{}", reply.text());
        let (_, kind, raw) = envelope(&reply.body);
        assert_eq!(kind, "Pod");
        let mut pod = core::Pod::decode(raw.as_slice()).expect("Pod decodes");
        pod.metadata
            .as_mut()
            .expect("metadata")
            .labels
            .insert("released".into(), "yes".into());
        let unknown = Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
            }),
            raw: Some(pod.encode_to_vec()),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = b"k8s\0".to_vec();
        body.extend(unknown.encode_to_vec());
        let reply = server
            .request("PUT", "/api/v1/namespaces/default/pods/p")
            .content_type(PROTOBUF)
            .header("Accept", "application/json")
            .body(body)
            .send();
        if reply.status != 409 || attempts == 5 {
            break reply;
        }
    };
    assert_eq!(reply.status, 200, "{}", reply.text());
    let got = server.kubectl_json(&["get", "pod", "p"]);
    assert_eq!(got["metadata"]["labels"]["released"], "yes", "{got}");
}
