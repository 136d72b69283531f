//! Slice packing: sizes, placement of new endpoints, and how few slices a change touches.

use super::*;
use k8s_openapi::api::discovery::v1::EndpointConditions;

fn svc() -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
                     "labels": {"app": "web"}},
        "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.20", "ipFamilies": ["IPv4"]}}))
    .expect("valid service")
}

fn port() -> Vec<EndpointPort> {
    vec![EndpointPort {
        name: Some("http".into()),
        port: Some(8080),
        protocol: Some("TCP".into()),
        app_protocol: None,
    }]
}

fn ep(i: usize, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![format!("10.42.{}.{}", i / 250, i % 250 + 2)],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(ready),
            terminating: Some(false),
        }),
        target_ref: Some(k8s_openapi::api::core::v1::ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some("default".into()),
            name: Some(format!("pod-{i:04}")),
            uid: Some(format!("uid-{i}")),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn desired(eps: impl IntoIterator<Item = Endpoint>) -> Desired {
    let group = Group {
        ports: port(),
        endpoints: eps.into_iter().map(|e| (endpoint_key(&e), e)).collect(),
    };
    BTreeMap::from([(Family::V4, BTreeMap::from([(ports_key(&port()), group)]))])
}

/// What the API would answer: the plan's creates and updates named, the rest as they were.
fn apply(existing: Vec<EndpointSlice>, plan: &Plan) -> Vec<EndpointSlice> {
    let mut by_name: BTreeMap<String, EndpointSlice> = existing
        .into_iter()
        .map(|s| (s.metadata.name.clone().unwrap_or_default(), s))
        .collect();
    for s in &plan.delete {
        by_name.remove(s.metadata.name.as_deref().unwrap_or_default());
    }
    for s in &plan.update {
        by_name.insert(s.metadata.name.clone().unwrap_or_default(), s.clone());
    }
    for (i, s) in plan.create.iter().enumerate() {
        let mut s = s.clone();
        let name = format!("web-{}{i}", by_name.len());
        s.metadata.name = Some(name.clone());
        by_name.insert(name, s);
    }
    by_name.into_values().collect()
}

fn sizes(slices: &[EndpointSlice]) -> Vec<usize> {
    let mut v: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    v.sort();
    v
}

#[test]
fn more_than_a_hundred_endpoints_take_two_slices_labelled_and_owned_by_the_service() {
    let p = plan(
        &svc(),
        desired((0..150).map(|i| ep(i, true))),
        vec![],
        MAX_ENDPOINTS_PER_SLICE,
    );
    assert!(p.update.is_empty() && p.delete.is_empty());
    assert_eq!(sizes(&p.create), vec![50, 100]);
    for s in &p.create {
        assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(s.address_type, "IPv4");
        let labels = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[LABEL_SERVICE_NAME], "web");
        assert_eq!(labels[LABEL_MANAGED_BY], CONTROLLER_NAME);
        assert_eq!(labels["app"], "web");
        assert!(owned_by(s, &svc()));
    }
}

#[test]
fn a_steady_service_plans_no_writes() {
    let svc = svc();
    let p = plan(&svc, desired((0..150).map(|i| ep(i, true))), vec![], 100);
    let existing = apply(vec![], &p);
    let again = plan(&svc, desired((0..150).map(|i| ep(i, true))), existing, 100);
    assert!(again.create.is_empty() && again.update.is_empty() && again.delete.is_empty());
    assert_eq!(again.unchanged.len(), 2);
}

#[test]
fn one_changed_endpoint_rewrites_only_its_slice() {
    let svc = svc();
    let p = plan(&svc, desired((0..150).map(|i| ep(i, true))), vec![], 100);
    let existing = apply(vec![], &p);
    let p = plan(
        &svc,
        desired((0..150).map(|i| ep(i, i != 7))),
        existing.clone(),
        100,
    );
    assert!(p.create.is_empty() && p.delete.is_empty());
    assert_eq!(p.update.len(), 1);
    assert_eq!(p.unchanged.len(), 1);
    let holder = existing
        .iter()
        .find(|s| {
            s.endpoints
                .iter()
                .any(|e| e.addresses[0] == ep(7, true).addresses[0])
        })
        .expect("a slice holds endpoint 7");
    assert_eq!(p.update[0].metadata.name, holder.metadata.name);
}

#[test]
fn new_endpoints_fill_the_slice_being_updated_before_any_new_slice() {
    let svc = svc();
    let p = plan(&svc, desired((0..150).map(|i| ep(i, true))), vec![], 100);
    let existing = apply(vec![], &p);
    // Remove 5 from the full slice and add 30: the full slice is updated anyway and takes
    // 5 of them; the rest goes into the half-empty one, and nothing is created.
    let full = existing
        .iter()
        .find(|s| s.endpoints.len() == 100)
        .expect("a full slice");
    let gone: Vec<String> = full.endpoints[..5]
        .iter()
        .map(|e| e.addresses[0].clone())
        .collect();
    let want = (0..180)
        .map(|i| ep(i, true))
        .filter(|e| !gone.contains(&e.addresses[0]));
    let p = plan(&svc, desired(want), existing.clone(), 100);
    assert!(
        p.create.is_empty() && p.delete.is_empty(),
        "{}",
        summary(&p)
    );
    assert_eq!(sizes(&p.update), vec![75, 100]);
    assert_eq!(sizes(&apply(existing, &p)), vec![75, 100]);
}

#[test]
fn a_remainder_goes_into_the_unchanged_slice_it_fits_best() {
    let svc = svc();
    // Slices of 40 and 90 (as if pods had gone): 8 new endpoints fit both; the fuller wins.
    let a = plan(&svc, desired((0..40).map(|i| ep(i, true))), vec![], 100);
    let mut existing = apply(vec![], &a);
    let b = plan(&svc, desired((100..190).map(|i| ep(i, true))), vec![], 100);
    let mut second = apply(vec![], &b);
    second[0].metadata.name = Some("web-second".into());
    existing.extend(second);
    let want = (0..40).chain(100..190).chain(300..308).map(|i| ep(i, true));
    let p = plan(&svc, desired(want), existing, 100);
    assert!(p.create.is_empty());
    assert_eq!(p.update.len(), 1);
    assert_eq!(p.update[0].metadata.name.as_deref(), Some("web-second"));
    assert_eq!(p.update[0].endpoints.len(), 98);
}

#[test]
fn a_service_without_endpoints_keeps_one_empty_placeholder_slice() {
    let svc = svc();
    let p = plan(&svc, desired((0..3).map(|i| ep(i, true))), vec![], 100);
    let existing = apply(vec![], &p);
    let empty = BTreeMap::from([(Family::V4, BTreeMap::new())]);
    // Scaling to 0: the one slice is rewritten empty (reused rather than deleted and
    // created again), then stays.
    let p = plan(&svc, empty.clone(), existing.clone(), 100);
    assert!(
        p.create.is_empty() && p.delete.is_empty(),
        "{}",
        summary(&p)
    );
    assert_eq!(p.update.len(), 1);
    assert!(p.update[0].endpoints.is_empty());
    assert!(p.update[0].ports.as_deref().unwrap_or_default().is_empty());
    let existing = apply(existing, &p);
    let p = plan(&svc, empty, existing, 100);
    assert!(p.create.is_empty() && p.update.is_empty() && p.delete.is_empty());
}

#[test]
fn slices_of_another_owner_or_unwanted_address_type_are_deleted() {
    let svc = svc();
    let p = plan(&svc, desired((0..3).map(|i| ep(i, true))), vec![], 100);
    let mut stale = apply(vec![], &p);
    stale[0].metadata.owner_references = Some(vec![]);
    stale[0].metadata.name = Some("web-old".into());
    let mut v6 = stale[0].clone();
    v6.address_type = "IPv6".into();
    v6.metadata.name = Some("web-v6".into());
    let p = plan(
        &svc,
        desired((0..3).map(|i| ep(i, true))),
        vec![stale[0].clone(), v6],
        100,
    );
    let deleted: Vec<&str> = p
        .delete
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(deleted, vec!["web-old", "web-v6"]);
    assert_eq!(p.create.len(), 1, "not reusing a slice of another owner");
}

#[test]
fn a_changed_service_label_updates_every_slice() {
    let mut svc = svc();
    let p = plan(&svc, desired((0..150).map(|i| ep(i, true))), vec![], 100);
    let existing = apply(vec![], &p);
    svc.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert("tier".into(), "front".into());
    let p = plan(&svc, desired((0..150).map(|i| ep(i, true))), existing, 100);
    assert_eq!(p.update.len(), 2);
    assert!(p.update.iter().all(|s| s
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l["tier"] == "front")));
}
