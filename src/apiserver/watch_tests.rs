//! The glance path must send exactly what the full filter would, or step aside.

use super::*;
use crate::api::registry::Registry;
use serde_json::json;

fn pods() -> Arc<ResourceType> {
    Registry::new().lookup("", "v1", "pods").unwrap()
}

fn pod(name: &str, node: Option<&str>, api_version: &str) -> Value {
    let mut p = json!({"apiVersion": api_version, "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"}},
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

/// What the full path decides: parse, filter the new and the previous object.
fn full(f: &Filter, ev: &Event) -> Option<&'static str> {
    let now_matches = f.matches(ev.value_json().unwrap());
    match ev.kind {
        EventKind::Delete => now_matches.then_some("DELETED"),
        EventKind::Put => transition(ev.prev_json().map(|p| f.matches(p)), now_matches),
    }
}

#[test]
fn a_glance_decides_every_pod_change_as_the_full_filter_does() {
    let rt = pods();
    let unbound = pod("a", None, "v1");
    let bound = pod("a", Some("n1"), "v1");
    let mut running = bound.clone();
    running["status"]["phase"] = json!("Running");
    let other = pod("b", Some("n2"), "v1");
    let events = [
        event(EventKind::Put, &unbound, None),
        event(EventKind::Put, &bound, Some(&unbound)),
        event(EventKind::Put, &running, Some(&bound)),
        event(EventKind::Delete, &running, None),
        event(EventKind::Put, &other, None),
        event(EventKind::Delete, &other, None),
    ];
    let filters = [
        (None, None),
        (Some("spec.nodeName=n1"), None),
        (Some("spec.nodeName=n2"), None),
        (Some("spec.nodeName="), None),
        (Some("metadata.name=a"), None),
        (None, Some("b")),
    ];
    let mut decided = 0;
    for (fs, name) in filters {
        let f = filter(&rt, fs, name);
        let glance = Glance::of(&rt, &f, Output::Json)
            .unwrap_or_else(|| panic!("{fs:?} {name:?} should be decided at a glance"));
        for ev in &events {
            assert_eq!(
                glance.decide(ev, "v1"),
                Some(full(&f, ev)),
                "{fs:?} {name:?} on {} {:?}",
                ev.key,
                ev.kind
            );
            decided += full(&f, ev).is_some() as usize;
        }
    }
    // Not vacuous: the table sends events as well as skipping them.
    assert!(decided >= 10, "{decided}");
}

#[test]
fn the_kubelets_watch_sees_its_pod_arrive_change_and_go() {
    let rt = pods();
    let f = filter(&rt, Some("spec.nodeName=n1"), None);
    let g = Glance::of(&rt, &f, Output::Json).unwrap();
    let unbound = pod("a", None, "v1");
    let bound = pod("a", Some("n1"), "v1");
    assert_eq!(
        g.decide(&event(EventKind::Put, &unbound, None), "v1"),
        Some(None)
    );
    assert_eq!(
        g.decide(&event(EventKind::Put, &bound, Some(&unbound)), "v1"),
        Some(Some("ADDED"))
    );
    assert_eq!(
        g.decide(&event(EventKind::Put, &bound, Some(&bound)), "v1"),
        Some(Some("MODIFIED"))
    );
    assert_eq!(
        g.decide(&event(EventKind::Delete, &bound, None), "v1"),
        Some(Some("DELETED"))
    );
}

#[test]
fn objects_stored_in_another_version_or_unreadable_take_the_full_path() {
    let rt = pods();
    let g = Glance::of(&rt, &filter(&rt, None, None), Output::Json).unwrap();
    let old = pod("a", None, "v1beta1");
    assert_eq!(g.decide(&event(EventKind::Put, &old, None), "v1"), None);
    let mut corrupt = event(EventKind::Put, &pod("a", None, "v1"), None);
    corrupt.value = Bytes::from_static(b"{not json");
    assert_eq!(g.decide(&corrupt, "v1"), None);
}

#[test]
fn filters_a_glance_cannot_decide_are_left_to_the_full_path() {
    let rt = pods();
    let labelled = Filter::new(
        &rt,
        &Query {
            label_selector: Some("app=web".into()),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert!(Glance::of(&rt, &labelled, Output::Json).is_none());
    let two_terms = filter(&rt, Some("spec.nodeName=n1,metadata.name=a"), None);
    assert!(Glance::of(&rt, &two_terms, Output::Json).is_none());
    let not_equal = filter(&rt, Some("spec.nodeName!=n1"), None);
    assert!(Glance::of(&rt, &not_equal, Output::Json).is_none());
    let phase = filter(&rt, Some("status.phase=Running"), None);
    assert!(Glance::of(&rt, &phase, Output::Json).is_none());
    // Tables and protobuf need the object itself.
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
