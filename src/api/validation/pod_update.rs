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
}
