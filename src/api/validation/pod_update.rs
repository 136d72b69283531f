//! What an update of a pod's main resource may change in its spec (upstream's
//! `ValidatePodUpdate`): container and init-container images, `activeDeadlineSeconds`
//! (lowered, never removed), tolerations (added only), scheduling gates (removed only), and
//! `terminationGracePeriodSeconds` from negative to 1. Anything else is refused with
//! upstream's message; resources change through the `resize` subresource, the node through
//! `binding`.

use super::FieldError;
use serde_json::Value;

const UPDATABLE: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub fn validate_pod_spec_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    let (old_spec, new_spec) = (&old["spec"], &new["spec"]);
    for list in ["containers", "initContainers"] {
        let count = |s: &Value| s[list].as_array().map_or(0, Vec::len);
        if count(old_spec) != count(new_spec) {
            errs.push(FieldError::forbidden(
                &format!("spec.{list}"),
                "pod updates may not add or remove containers",
            ));
            return;
        }
    }
    let deadline = |s: &Value| s["activeDeadlineSeconds"].as_i64();
    match (deadline(old_spec), deadline(new_spec)) {
        (Some(o), Some(n)) if n > o => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            ));
            return;
        }
        (Some(_), None) => {
            errs.push(FieldError::invalid(
                "spec.activeDeadlineSeconds",
                &Value::Null,
                "must not update from a positive integer to nil value",
            ));
            return;
        }
        _ => {}
    }
    if old_spec == new_spec {
        return;
    }
    let mut munged = new_spec.clone();
    for list in ["containers", "initContainers"] {
        if let Some(items) = munged.get_mut(list).and_then(Value::as_array_mut) {
            for (i, c) in items.iter_mut().enumerate() {
                c["image"] = old_spec[list][i]["image"].clone();
            }
        }
    }
    let only_added = |field: &str| {
        let olds = old_spec[field].as_array().cloned().unwrap_or_default();
        let news = new_spec[field].as_array().cloned().unwrap_or_default();
        olds.iter().all(|o| news.contains(o))
    };
    let only_removed = |field: &str| {
        let olds = old_spec[field].as_array().cloned().unwrap_or_default();
        let news = new_spec[field].as_array().cloned().unwrap_or_default();
        news.iter().all(|n| olds.contains(n))
    };
    let obj = munged.as_object_mut();
    if let Some(m) = obj {
        let mut restore = |key: &str| match old_spec.get(key) {
            Some(v) => {
                m.insert(key.to_owned(), v.clone());
            }
            None => {
                m.remove(key);
            }
        };
        restore("activeDeadlineSeconds");
        if only_added("tolerations") {
            restore("tolerations");
        }
        if only_removed("schedulingGates") {
            restore("schedulingGates");
        }
        let grace = |s: &Value| s["terminationGracePeriodSeconds"].as_i64();
        if grace(old_spec).is_some_and(|g| g < 0) && grace(new_spec) == Some(1) {
            restore("terminationGracePeriodSeconds");
        }
    }
    let mut old_spec = old_spec.clone();
    drop_empty_lists(&mut old_spec);
    drop_empty_lists(&mut munged);
    if munged != old_spec {
        let changed = first_difference(&old_spec, &munged, "spec");
        errs.push(FieldError::forbidden(
            "spec",
            &format!(
                "pod updates may not change fields other than {UPDATABLE}\n  changed: {changed}"
            ),
        ));
    }
}

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

fn is_mirror(pod: &Value) -> bool {
    pod["metadata"]["annotations"]
        .get(MIRROR_ANNOTATION)
        .is_some()
}

fn list<'a>(pod: &'a Value, key: &str) -> &'a [Value] {
    pod["spec"][key]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Upstream's `ValidatePodEphemeralContainersUpdate` (after the strategy kept only
/// `spec.ephemeralContainers` of the request): ephemeral containers are only added, never
/// removed or changed, and never to a static pod.
pub fn validate_ephemeral_containers_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if is_mirror(old) {
        errs.push(FieldError::forbidden(
            "",
            "static pods do not support ephemeral containers",
        ));
        return;
    }
    let news = list(new, "ephemeralContainers");
    for o in list(old, "ephemeralContainers") {
        let name = o["name"].as_str().unwrap_or_default();
        match news.iter().find(|n| n["name"] == o["name"]) {
            None => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                &format!("existing ephemeral containers \"{name}\" may not be removed\n"),
            )),
            Some(n) => {
                let (mut a, mut b) = (o.clone(), n.clone());
                drop_empty_lists(&mut a);
                drop_empty_lists(&mut b);
                if a != b {
                    let changed = first_difference(&a, &b, "");
                    errs.push(FieldError::forbidden(
                        "spec.ephemeralContainers",
                        &format!(
                            "existing ephemeral containers \"{name}\" may not be changed\n  changed: {}",
                            changed.trim_start_matches('.')
                        ),
                    ));
                }
            }
        }
    }
}

/// A container's resources without cpu and memory (what a resize may not change).
fn without_cpu_and_memory(c: &Value) -> Value {
    let mut c = c.clone();
    for part in ["requests", "limits"] {
        if let Some(m) = c["resources"][part].as_object_mut() {
            m.remove("cpu");
            m.remove("memory");
        }
    }
    if let Some(r) = c["resources"].as_object_mut() {
        r.retain(|_, v| !v.as_object().is_some_and(|m| m.is_empty()));
    }
    drop_empty_lists(&mut c);
    c
}

/// Upstream's `ValidatePodResize` (after the strategy kept only container resources and
/// resize policies of the request): same containers in the same order, requests and limits
/// never removed, only cpu and memory changed, of regular and sidecar containers, and the
/// QoS class unchanged. A running pod whose kubelet reports no container resources cannot
/// be resized.
pub fn validate_resize(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if is_mirror(old) {
        errs.push(FieldError::forbidden("", "static pods cannot be resized"));
        return;
    }
    let old_qos = old["status"]["qosClass"].as_str().unwrap_or_default();
    let new_qos = crate::api::strategy::pod::qos_class(new);
    if !old_qos.is_empty() && old_qos != new_qos {
        errs.push(FieldError::invalid(
            "spec",
            old_qos,
            "Pod QOS Class may not change as a result of resizing",
        ));
    }
    let running = old["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["state"]["running"].is_object());
    if running.is_some_and(|s| s.get("resources").is_none_or(Value::is_null)) {
        errs.push(FieldError::forbidden(
            "spec",
            "Pod running on node without support for resize",
        ));
    }
    for key in ["containers", "initContainers"] {
        let (olds, news) = (list(old, key), list(new, key));
        if olds.len() != news.len() {
            errs.push(FieldError::forbidden(
                &format!("spec.{key}"),
                "containers may not be added or removed on resize",
            ));
            continue;
        }
        for (i, (o, n)) in olds.iter().zip(news).enumerate() {
            let at = format!("spec.{key}[{i}]");
            if o["name"] != n["name"] {
                errs.push(FieldError::forbidden(
                    &format!("{at}.name"),
                    "containers may not be renamed or reordered on resize",
                ));
                continue;
            }
            let sidecar = key == "initContainers" && o["restartPolicy"] == "Always";
            if key == "initContainers" && !sidecar {
                if o["resources"] != n["resources"] {
                    errs.push(FieldError::forbidden(
                        "spec",
                        "resources for non-sidecar init containers are immutable",
                    ));
                }
                continue;
            }
            for part in ["requests", "limits"] {
                let removed = o["resources"][part]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .any(|(k, _)| n["resources"][part].get(k).is_none());
                if removed {
                    let what = if part == "requests" {
                        "requests"
                    } else {
                        "limits"
                    };
                    errs.push(FieldError::forbidden(
                        &format!("{at}.resources.{part}"),
                        &format!("resource {what} cannot be removed"),
                    ));
                }
            }
            if without_cpu_and_memory(o) != without_cpu_and_memory(n) {
                if sidecar {
                    errs.push(FieldError::forbidden(
                        &at,
                        "only cpu and memory resources for init or sidecar containers are mutable",
                    ));
                } else {
                    errs.push(FieldError::forbidden(
                        "spec",
                        "only cpu and memory resources are mutable",
                    ));
                }
            }
        }
    }
}

/// Removes nulls and empty lists, recursively: upstream compares Go structs, where an absent
/// list and an empty one are equal, and a client sending protobuf (client-go) writes back
/// `initContainers: []` for a pod stored without the field.
fn drop_empty_lists(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !(x.is_null() || x.as_array().is_some_and(Vec::is_empty)));
            m.values_mut().for_each(drop_empty_lists);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_empty_lists),
        _ => {}
    }
}

/// The path of the first field that differs (for the message).
fn first_difference(a: &Value, b: &Value, path: &str) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .find(|k| x.get(*k) != y.get(*k))
                .map(|k| {
                    first_difference(
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        &format!("{path}.{k}"),
                    )
                })
                .unwrap_or_else(|| path.to_owned())
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .position(|(p, q)| p != q)
            .map(|i| first_difference(&x[i], &y[i], &format!("{path}[{i}]")))
            .unwrap_or_else(|| path.to_owned()),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(image: &str, cpu: &str, tolerations: Value) -> Value {
        json!({"spec": {"containers": [{"name": "c", "image": image,
            "resources": {"requests": {"cpu": cpu}}}], "tolerations": tolerations,
            "activeDeadlineSeconds": 30}})
    }

    fn errors(old: &Value, new: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        validate_pod_spec_update(old, new, &mut errs);
        errs.iter().map(|e| e.to_string()).collect()
    }

    /// What client-go writes back from a protobuf round trip: empty lists the stored pod
    /// never had. An absent list equals an empty one, as in upstream's Go structs; a list
    /// that gains an item is still a change.
    #[test]
    fn empty_lists_equal_absent_ones() {
        let old = pod("busybox:1", "100m", json!([]));
        let mut new = old.clone();
        new["spec"]["initContainers"] = json!([]);
        new["spec"]["containers"][0]["ports"] = json!([]);
        new["spec"]["nodeName"] = Value::Null;
        assert_eq!(errors(&old, &new), Vec::<String>::new());
        new["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
        let e = errors(&old, &new);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("changed: spec.containers[0].ports"), "{e:?}");
    }

    #[test]
    fn images_deadlines_and_added_tolerations_may_change() {
        let old = pod(
            "busybox:1",
            "100m",
            json!([{"key": "a", "operator": "Exists"}]),
        );
        let mut new = pod(
            "busybox:2",
            "100m",
            json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]),
        );
        new["spec"]["activeDeadlineSeconds"] = json!(10);
        assert_eq!(errors(&old, &new), Vec::<String>::new());
    }

    #[test]
    fn resources_and_removed_tolerations_and_longer_deadlines_may_not() {
        let old = pod(
            "busybox:1",
            "100m",
            json!([{"key": "a", "operator": "Exists"}]),
        );
        let new = pod(
            "busybox:1",
            "200m",
            json!([{"key": "a", "operator": "Exists"}]),
        );
        let e = errors(&old, &new);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"), "{e:?}");
        assert!(
            e[0].ends_with("changed: spec.containers[0].resources.requests.cpu"),
            "{e:?}"
        );
        let new = pod("busybox:1", "100m", json!([]));
        assert_eq!(errors(&old, &new).len(), 1);
        let mut new = pod(
            "busybox:1",
            "100m",
            json!([{"key": "a", "operator": "Exists"}]),
        );
        new["spec"]["activeDeadlineSeconds"] = json!(60);
        assert_eq!(
            errors(&old, &new),
            ["spec.activeDeadlineSeconds: Invalid value: 60: must be less than or equal to previous value"]
        );
    }

    fn check(f: fn(&Value, &Value, &mut Vec<FieldError>), old: &Value, new: &Value) -> Vec<String> {
        let mut errs = Vec::new();
        f(old, new, &mut errs);
        errs.iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn ephemeral_containers_are_only_added() {
        let dbg = json!({"name": "dbg", "image": "busybox", "terminationMessagePolicy": "File"});
        let old = json!({"spec": {"containers": [{"name": "c"}], "ephemeralContainers": [dbg]}});
        let mut added = old.clone();
        added["spec"]["ephemeralContainers"] = json!([dbg, {"name": "dbg2", "image": "busybox"}]);
        assert!(check(validate_ephemeral_containers_update, &old, &added).is_empty());
        let removed = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            check(validate_ephemeral_containers_update, &old, &removed),
            ["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be removed\n"]
        );
        let mut changed = old.clone();
        changed["spec"]["ephemeralContainers"][0]["image"] = json!("alpine");
        let e = check(validate_ephemeral_containers_update, &old, &changed);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be changed"),
            "{e:?}"
        );
        let mut mirror = old.clone();
        mirror["metadata"] = json!({"annotations": {"kubernetes.io/config.mirror": "x"}});
        assert_eq!(
            check(validate_ephemeral_containers_update, &mirror, &added),
            [": Forbidden: static pods do not support ephemeral containers"]
        );
    }

    fn resizable(cpu: &str, qos: &str) -> Value {
        json!({"spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": cpu, "memory": "10Mi"},
                              "limits": {"cpu": cpu, "memory": "10Mi"}}}]},
               "status": {"qosClass": qos, "containerStatuses": [{"name": "c",
                 "state": {"running": {}}, "resources": {}}]}})
    }

    #[test]
    fn a_resize_changes_only_cpu_and_memory_and_keeps_the_qos_class() {
        let old = resizable("100m", "Guaranteed");
        assert!(check(validate_resize, &old, &resizable("200m", "Guaranteed")).is_empty());
        // Requests below limits would make it Burstable.
        let mut burst = resizable("200m", "Guaranteed");
        burst["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("100m");
        assert_eq!(
            check(validate_resize, &old, &burst),
            ["spec: Invalid value: \"Guaranteed\": Pod QOS Class may not change as a result of resizing"]
        );
        let mut removed = resizable("100m", "Guaranteed");
        removed["spec"]["containers"][0]["resources"]["limits"]
            .as_object_mut()
            .unwrap()
            .remove("memory");
        let e = check(validate_resize, &old, &removed);
        assert!(
            e.contains(&"spec.containers[0].resources.limits: Forbidden: resource limits cannot be removed".to_owned()),
            "{e:?}"
        );
        let mut storage = resizable("100m", "Guaranteed");
        storage["spec"]["containers"][0]["resources"]["limits"]["ephemeral-storage"] = json!("1Gi");
        assert_eq!(
            check(validate_resize, &old, &storage),
            ["spec: Forbidden: only cpu and memory resources are mutable"]
        );
        let mut renamed = resizable("100m", "Guaranteed");
        renamed["spec"]["containers"][0]["name"] = json!("d");
        assert_eq!(
            check(validate_resize, &old, &renamed),
            ["spec.containers[0].name: Forbidden: containers may not be renamed or reordered on resize"]
        );
        // A kubelet that does not report container resources cannot resize.
        let mut unsupported = old.clone();
        unsupported["status"]["containerStatuses"][0]
            .as_object_mut()
            .unwrap()
            .remove("resources");
        assert_eq!(
            check(
                validate_resize,
                &unsupported,
                &resizable("200m", "Guaranteed")
            ),
            ["spec: Forbidden: Pod running on node without support for resize"]
        );
    }
}
