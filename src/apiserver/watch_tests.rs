//! The glance path must send exactly what the full filter would, or step aside.

use super::*;
use crate::api::registry::Registry;
use serde_json::json;

fn pods() -> Arc<ResourceType> {
    Registry::new().lookup("", "v1", "pods").unwrap()
}

fn pod(name: &str, node: Option<&str>, api_version: &str) -> Value {
    let mut p = json!({"apiVersion": api_version, "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"},
            // Escapes and nesting that metadata sent as its stored text must keep.
            "annotations": {"note": "a \"b\" \u{e9} <c>\n\t"},
            "managedFields": [{"manager": "m", "operation": "Update",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}}]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": "Pending"}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

fn event(kind: EventKind, now: &Value, prev: Option<&Value>) -> Event {
    Event {
        revision: 7,
        kind,
        key: format!(
            "/registry/pods/ns/{}",
            now["metadata"]["name"].as_str().unwrap()
        ),
        value: Bytes::from(serde_json::to_vec(now).unwrap()),
        prev_value: prev.map(|p| Bytes::from(serde_json::to_vec(p).unwrap())),
        prev_revisions: None,
        parsed: Default::default(),
    }
}

fn filter(rt: &ResourceType, field_selector: Option<&str>, name: Option<&str>) -> Filter {
    let q = Query {
        field_selector: field_selector.map(str::to_owned),
        ..Default::default()
    };
    Filter::new(rt, &q, name).unwrap()
}

/// The event type a glance decides.
fn kind_of(g: &Glance, ev: &Event, api_version: &str) -> Option<Option<&'static str>> {
    g.decide(ev, api_version).map(|d| d.map(|d| d.kind))
}

/// What the full path decides: parse, filter the new and the previous object.
fn full(f: &Filter, ev: &Event) -> Option<&'static str> {
    let now_matches = f.matches(ev.value_json().unwrap());
    match ev.kind {
        EventKind::Delete => now_matches.then_some("DELETED"),
        EventKind::Put => transition(ev.prev_json().map(|p| f.matches(p)), now_matches),
    }
}

fn labelled(rt: &ResourceType, labels: &str, field_selector: Option<&str>) -> Filter {
    let q = Query {
        label_selector: Some(labels.to_owned()),
        field_selector: field_selector.map(str::to_owned),
        ..Default::default()
    };
    Filter::new(rt, &q, None).unwrap()
}

#[test]
fn a_glance_decides_every_pod_change_as_the_full_filter_does() {
    let rt = pods();
    let unbound = pod("a", None, "v1");
    let bound = pod("a", Some("n1"), "v1");
    let mut running = bound.clone();
    running["status"]["phase"] = json!("Running");
    // Relabelled: leaves `app=web`, enters `app=db`.
    let mut relabelled = running.clone();
    relabelled["metadata"]["labels"] = json!({"app": "db", "tier": "x"});
    let other = pod("b", Some("n2"), "v1");
    let events = [
        event(EventKind::Put, &unbound, None),
        event(EventKind::Put, &bound, Some(&unbound)),
        event(EventKind::Put, &running, Some(&bound)),
        event(EventKind::Put, &relabelled, Some(&running)),
        event(EventKind::Put, &running, Some(&relabelled)),
        event(EventKind::Delete, &running, None),
        event(EventKind::Delete, &relabelled, None),
        event(EventKind::Put, &other, None),
        event(EventKind::Delete, &other, None),
    ];
    let filters = [
        filter(&rt, None, None),
        filter(&rt, Some("spec.nodeName=n1"), None),
        filter(&rt, Some("spec.nodeName=n2"), None),
        filter(&rt, Some("spec.nodeName="), None),
        filter(&rt, Some("metadata.name=a"), None),
        filter(&rt, None, Some("b")),
        labelled(&rt, "app=web", None),
        labelled(&rt, "app in (db),tier", None),
        labelled(&rt, "app!=web", Some("spec.nodeName=n1")),
        labelled(&rt, "app", Some("metadata.name=a")),
        labelled(&rt, "!tier", None),
    ];
    let mut decided = 0;
    for (i, f) in filters.iter().enumerate() {
        for output in [
            Output::Json,
            Output::PartialMetadata,
            Output::PartialMetadataProtobuf,
        ] {
            let glance = Glance::of(&rt, f, output)
                .unwrap_or_else(|| panic!("filter {i} should be decided at a glance"));
            for ev in &events {
                let full_kind = full(f, ev);
                let d = glance.decide(ev, "v1").expect("decided");
                assert_eq!(
                    d.as_ref().map(|d| d.kind),
                    full_kind,
                    "filter {i} {output:?} on {} {:?}",
                    ev.key,
                    ev.kind
                );
                // A partial watch sends what the full path would: the stored metadata, as
                // the same bytes in JSON.
                let metadata = d.and_then(|d| d.metadata);
                let full_partial = || table::partial_object_metadata(ev.value_json().unwrap());
                match (output, metadata) {
                    (Output::PartialMetadata, Some(PartialMetadata::Text(m))) => assert_eq!(
                        partial_metadata_line(full_kind.unwrap(), m),
                        Some(event_line(output, full_kind.unwrap(), &full_partial()))
                    ),
                    (Output::PartialMetadataProtobuf, Some(PartialMetadata::Tree(m))) => {
                        assert_eq!(table::partial_metadata_of(m), full_partial())
                    }
                    (_, None) => assert!(output == Output::Json || full_kind.is_none()),
                    _ => panic!("filter {i} {output:?}: metadata in the wrong form"),
                }
                decided += full_kind.is_some() as usize;
            }
        }
    }
    // Not vacuous: the table sends events as well as skipping them.
    assert!(decided >= 40, "{decided}");
}

/// Labels that are not strings and metadata that is not an object (not valid as stored,
/// but possible in a corrupt record), and a record that is not JSON, are left to the full
/// path.
#[test]
fn odd_labels_and_metadata_are_left_to_the_full_filter() {
    let rt = pods();
    let f = labelled(&rt, "app=web", None);
    let g = Glance::of(&rt, &f, Output::Json).unwrap();
    let mut odd = pod("a", None, "v1");
    odd["metadata"]["labels"]["app"] = json!(7);
    let mut no_meta = pod("b", None, "v1");
    no_meta["metadata"] = json!("x");
    for obj in [&odd, &no_meta] {
        let mut ev = event(
            EventKind::Put,
            &pod("a", None, "v1"),
            Some(&pod("a", None, "v1")),
        );
        ev.value = Bytes::from(serde_json::to_vec(obj).unwrap());
        assert_eq!(kind_of(&g, &ev, "v1"), None, "{obj}");
        let partial = Glance::of(&rt, &filter(&rt, None, None), Output::PartialMetadata).unwrap();
        if obj["metadata"].is_object() {
            assert!(partial.decide(&ev, "v1").is_some(), "{obj}");
        } else {
            assert!(partial.decide(&ev, "v1").is_none(), "{obj}");
        }
    }
    let mut corrupt = event(EventKind::Put, &odd, None);
    corrupt.value = Bytes::from_static(b"{\"apiVersion\": \"v1\", \"metadata\": ");
    assert!(g.decide(&corrupt, "v1").is_none());
}

#[test]
fn the_kubelets_watch_sees_its_pod_arrive_change_and_go() {
    let rt = pods();
    let f = filter(&rt, Some("spec.nodeName=n1"), None);
    let g = Glance::of(&rt, &f, Output::Json).unwrap();
    let unbound = pod("a", None, "v1");
    let bound = pod("a", Some("n1"), "v1");
    assert_eq!(
        kind_of(&g, &event(EventKind::Put, &unbound, None), "v1"),
        Some(None)
    );
    assert_eq!(
        kind_of(&g, &event(EventKind::Put, &bound, Some(&unbound)), "v1"),
        Some(Some("ADDED"))
    );
    assert_eq!(
        kind_of(&g, &event(EventKind::Put, &bound, Some(&bound)), "v1"),
        Some(Some("MODIFIED"))
    );
    assert_eq!(
        kind_of(&g, &event(EventKind::Delete, &bound, None), "v1"),
        Some(Some("DELETED"))
    );
}

#[test]
fn objects_stored_in_another_version_or_unreadable_take_the_full_path() {
    let rt = pods();
    let g = Glance::of(&rt, &filter(&rt, None, None), Output::Json).unwrap();
    let old = pod("a", None, "v1beta1");
    assert_eq!(kind_of(&g, &event(EventKind::Put, &old, None), "v1"), None);
    let mut corrupt = event(EventKind::Put, &pod("a", None, "v1"), None);
    corrupt.value = Bytes::from_static(b"{not json");
    assert_eq!(kind_of(&g, &corrupt, "v1"), None);
}

#[test]
fn filters_a_glance_cannot_decide_are_left_to_the_full_path() {
    let rt = pods();
    let labels_and_phase = labelled(&rt, "app=web", Some("status.phase=Running"));
    assert!(Glance::of(&rt, &labels_and_phase, Output::Json).is_none());
    let two_terms = filter(&rt, Some("spec.nodeName=n1,metadata.name=a"), None);
    assert!(Glance::of(&rt, &two_terms, Output::Json).is_none());
    let not_equal = filter(&rt, Some("spec.nodeName!=n1"), None);
    assert!(Glance::of(&rt, &not_equal, Output::Json).is_none());
    let phase = filter(&rt, Some("status.phase=Running"), None);
    assert!(Glance::of(&rt, &phase, Output::Json).is_none());
    // Tables and protobuf objects need the object itself.
    let all = filter(&rt, None, None);
    assert!(Glance::of(&rt, &all, Output::Table).is_none());
    assert!(Glance::of(&rt, &all, Output::Protobuf).is_none());
}

#[test]
fn a_pod_route_reads_the_node_of_both_sides_of_a_change() {
    let unbound = pod("a", None, "v1");
    let bound = pod("a", Some("n1"), "v1");
    let ev = event(EventKind::Put, &bound, Some(&unbound));
    let [now, prev] = pod_node_shards(&ev);
    assert_eq!(now.as_deref(), Some("n1"));
    assert_eq!(prev.as_deref(), Some(""));
    let created = event(EventKind::Put, &unbound, None);
    let [now, prev] = pod_node_shards(&created);
    assert_eq!((now.as_deref(), prev), (Some(""), None));
}
