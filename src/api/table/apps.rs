//! `apps/v1` printers: Deployment, ReplicaSet, StatefulSet, DaemonSet and
//! ControllerRevision.
//!
//! Invariant: an unset `spec.replicas` counts as 1, the API default, so the
//! READY column reads the same before and after defaulting.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::since;
use super::fields::{created, get, int_at, list_at, n, name, opt_int, s, str_at};
use super::format::{
    container_cells, format_label_selector, format_labels, selector_string, BadSelector,
};
use super::{col, no_conditions, wide, Col, Spec, AGE, CONTAINERS_DESC, IMAGES_DESC, NAME};

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    s(since(created(obj), now))
}

fn desired(obj: &Value) -> i64 {
    opt_int(obj, &["spec", "replicas"]).unwrap_or(1)
}

fn template_containers(obj: &Value) -> (String, String) {
    container_cells(get(obj, &["spec", "template", "spec"]))
}

pub static DEPLOYMENT: Spec = Spec {
    columns: &DEPLOYMENT_COLUMNS,
    cells: deployment_cells,
    conditions: no_conditions,
    list: None,
};

static DEPLOYMENT_COLUMNS: [Col; 8] = [
    NAME,
    col(
        "Ready",
        "string",
        "Ready pods out of the desired number of replicas.",
    ),
    col(
        "Up-to-date",
        "string",
        "Pods that run the latest pod template.",
    ),
    col(
        "Available",
        "string",
        "Pods that have been ready for at least minReadySeconds.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide(
        "Selector",
        "string",
        "Label selector of the pods the deployment manages.",
    ),
];

fn deployment_cells(d: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = template_containers(d);
    // Upstream prints the raw selector here, so an empty one is "" not <none>.
    let selector = match selector_string(get(d, &["spec", "selector"])) {
        Ok(sel) => sel,
        Err(BadSelector) => "<invalid>".to_string(),
    };
    vec![
        s(name(d)),
        s(format!(
            "{}/{}",
            int_at(d, &["status", "readyReplicas"]),
            desired(d)
        )),
        n(int_at(d, &["status", "updatedReplicas"])),
        n(int_at(d, &["status", "availableReplicas"])),
        age(d, now),
        s(names),
        s(images),
        s(selector),
    ]
}

pub static REPLICA_SET: Spec = Spec {
    columns: &REPLICA_SET_COLUMNS,
    cells: replica_set_cells,
    conditions: no_conditions,
    list: None,
};

static REPLICA_SET_COLUMNS: [Col; 8] = [
    NAME,
    col("Desired", "integer", "Number of replicas wanted."),
    col(
        "Current",
        "integer",
        "Number of replicas that currently exist.",
    ),
    col("Ready", "integer", "Number of replicas that are ready."),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide(
        "Selector",
        "string",
        "Label selector of the pods the replica set manages.",
    ),
];

fn replica_set_cells(rs: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = template_containers(rs);
    vec![
        s(name(rs)),
        n(desired(rs)),
        n(int_at(rs, &["status", "replicas"])),
        n(int_at(rs, &["status", "readyReplicas"])),
        age(rs, now),
        s(names),
        s(images),
        s(format_label_selector(get(rs, &["spec", "selector"]))),
    ]
}

pub static STATEFUL_SET: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Ready",
            "string",
            "Ready pods out of the desired number of replicas.",
        ),
        AGE,
        wide("Containers", "string", CONTAINERS_DESC),
        wide("Images", "string", IMAGES_DESC),
    ],
    cells: |ss, now| {
        let (names, images) = template_containers(ss);
        vec![
            s(name(ss)),
            s(format!(
                "{}/{}",
                int_at(ss, &["status", "readyReplicas"]),
                desired(ss)
            )),
            age(ss, now),
            s(names),
            s(images),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static DAEMON_SET: Spec = Spec {
    columns: &DAEMON_SET_COLUMNS,
    cells: daemon_set_cells,
    conditions: no_conditions,
    list: None,
};

static DAEMON_SET_COLUMNS: [Col; 11] = [
    NAME,
    col(
        "Desired",
        "integer",
        "Number of nodes that should run the daemon pod.",
    ),
    col(
        "Current",
        "integer",
        "Number of nodes running at least one daemon pod.",
    ),
    col(
        "Ready",
        "integer",
        "Number of nodes whose daemon pod is ready.",
    ),
    col(
        "Up-to-date",
        "integer",
        "Number of nodes running the latest daemon pod template.",
    ),
    col(
        "Available",
        "integer",
        "Number of nodes whose daemon pod has been ready for minReadySeconds.",
    ),
    col(
        "Node Selector",
        "string",
        "Node labels the daemon pods are restricted to.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide(
        "Selector",
        "string",
        "Label selector of the pods the daemon set manages.",
    ),
];

fn daemon_set_cells(ds: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = template_containers(ds);
    let status = |f: &str| n(int_at(ds, &["status", f]));
    vec![
        s(name(ds)),
        status("desiredNumberScheduled"),
        status("currentNumberScheduled"),
        status("numberReady"),
        status("updatedNumberScheduled"),
        status("numberAvailable"),
        s(format_labels(get(
            ds,
            &["spec", "template", "spec", "nodeSelector"],
        ))),
        age(ds, now),
        s(names),
        s(images),
        s(format_label_selector(get(ds, &["spec", "selector"]))),
    ]
}

pub static CONTROLLER_REVISION: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Controller",
            "string",
            "The controller that owns this revision, as kind.group/name.",
        ),
        col("Revision", "string", "Revision number of the stored state."),
        AGE,
    ],
    cells: |cr, now| {
        vec![
            s(name(cr)),
            s(controller_of(cr)),
            n(int_at(cr, &["revision"])),
            age(cr, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

/// `kind.group/name` of the controlling owner reference, or `<none>`.
fn controller_of(obj: &Value) -> String {
    let Some(owner) = list_at(obj, &["metadata", "ownerReferences"])
        .iter()
        .find(|o| get(o, &["controller"]).and_then(Value::as_bool) == Some(true))
    else {
        return "<none>".to_string();
    };
    let api_version = str_at(owner, &["apiVersion"]);
    let group = match api_version.split_once('/') {
        Some((g, _)) => g,
        None => "",
    };
    let kind = str_at(owner, &["kind"]);
    let owner_name = str_at(owner, &["name"]);
    let group_kind = match (kind.is_empty(), group.is_empty()) {
        (true, true) => return owner_name.to_string(),
        (_, true) => kind.to_string(),
        _ => format!("{kind}.{group}"),
    };
    format!("{}/{owner_name}", group_kind.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::{ago, cells};
    use serde_json::{json, Value};

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            {"name": "nginx", "image": "nginx:1.27"}, {"name": "sidecar", "image": "busybox"}]}})
    }

    #[test]
    fn deployment_shows_ready_over_desired() {
        let d = json!({"metadata": {"name": "web", "creationTimestamp": ago(125)},
            "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"replicas": 10, "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 1}});
        assert_eq!(
            Value::Array(cells(&printers::DEPLOYMENT, &d)),
            json!([
                "web",
                "3/5",
                2,
                1,
                "2m5s",
                "nginx,sidecar",
                "nginx:1.27,busybox",
                "app=web"
            ])
        );
        let fresh = json!({"metadata": {"name": "new"}, "spec": {"template": template()}});
        assert_eq!(
            Value::Array(cells(&printers::DEPLOYMENT, &fresh)),
            json!([
                "new",
                "0/1",
                0,
                0,
                "<unknown>",
                "nginx,sidecar",
                "nginx:1.27,busybox",
                ""
            ])
        );
    }

    #[test]
    fn replica_set_shows_counts_and_selector() {
        let rs = json!({"metadata": {"name": "web-5d4f", "creationTimestamp": ago(1)},
            "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d4f"}},
                     "template": template()},
            "status": {"replicas": 5, "readyReplicas": 2}});
        assert_eq!(
            Value::Array(cells(&printers::REPLICA_SET, &rs)),
            json!([
                "web-5d4f",
                5,
                5,
                2,
                "1s",
                "nginx,sidecar",
                "nginx:1.27,busybox",
                "app=web,pod-template-hash=5d4f"
            ])
        );
    }

    #[test]
    fn stateful_set_and_daemon_set() {
        let ss = json!({"metadata": {"name": "db"}, "spec": {"replicas": 5, "template": template()},
            "status": {"replicas": 5, "readyReplicas": 2}});
        assert_eq!(
            Value::Array(cells(&printers::STATEFUL_SET, &ss)),
            json!([
                "db",
                "2/5",
                "<unknown>",
                "nginx,sidecar",
                "nginx:1.27,busybox"
            ])
        );
        let ds = json!({"metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"foo": "bar"}},
                     "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": [{"name": "a", "image": "i"}]}}},
            "status": {"currentNumberScheduled": 2, "desiredNumberScheduled": 3, "numberReady": 1,
                       "updatedNumberScheduled": 2, "numberAvailable": 0}});
        assert_eq!(
            Value::Array(cells(&printers::DAEMON_SET, &ds)),
            json!([
                "agent",
                3,
                2,
                1,
                2,
                0,
                "kubernetes.io/os=linux",
                "<unknown>",
                "a",
                "i",
                "foo=bar"
            ])
        );
    }

    #[test]
    fn controller_revision_names_its_controller() {
        let cr = json!({"metadata": {"name": "web-7c9", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "foo", "controller": true}]},
            "revision": 1});
        assert_eq!(
            Value::Array(cells(&printers::CONTROLLER_REVISION, &cr)),
            json!(["web-7c9", "daemonset.apps/foo", 1, "<unknown>"])
        );
        let orphan = json!({"metadata": {"name": "x", "ownerReferences": [
                {"apiVersion": "v1", "kind": "ABC", "name": "foo", "controller": false}]}, "revision": 2});
        assert_eq!(cells(&printers::CONTROLLER_REVISION, &orphan)[1], "<none>");
    }
}
