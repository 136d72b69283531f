//! Core (`v1`) printers other than Pod, Service/Endpoints, Event and
//! volumes: Node, ConfigMap, Secret, Namespace, ServiceAccount,
//! ResourceQuota, PodTemplate and ReplicationController.
//!
//! Invariant: cells match upstream for the same object, including its
//! placeholders (`<none>`, `<unknown>`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::since;
use super::fields::{created, get, int_at, list_at, map_len, n, name, opt_int, s, str_at};
use super::format::{container_cells, format_labels};
use super::{col, no_conditions, wide, Col, Spec, AGE, CONTAINERS_DESC, IMAGES_DESC, NAME};

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    s(since(created(obj), now))
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".to_string()
    } else {
        v.to_string()
    }
}

// ---- Node ----

pub static NODE: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Status",
            "string",
            "Readiness of the node, and whether scheduling is disabled.",
        ),
        col(
            "Roles",
            "string",
            "Roles taken from the node's node-role.kubernetes.io/* labels.",
        ),
        AGE,
        col("Version", "string", "Kubelet version the node reports."),
        wide(
            "Internal-IP",
            "string",
            "First InternalIP address the node reports.",
        ),
        wide(
            "External-IP",
            "string",
            "First ExternalIP address the node reports.",
        ),
        wide(
            "OS-Image",
            "string",
            "Operating system image the node reports (from /etc/os-release).",
        ),
        wide(
            "Kernel-Version",
            "string",
            "Kernel version the node reports (uname -r).",
        ),
        wide(
            "Container-Runtime",
            "string",
            "Container runtime and version the node reports.",
        ),
    ],
    cells: node_cells,
    conditions: no_conditions,
    list: None,
};

fn node_address(node: &Value, ty: &str) -> String {
    list_at(node, &["status", "addresses"])
        .iter()
        .find(|a| str_at(a, &["type"]) == ty)
        .map(|a| str_at(a, &["address"]).to_string())
        .unwrap_or_else(|| "<none>".to_string())
}

/// Roles from `node-role.kubernetes.io/<role>` keys and the legacy
/// `kubernetes.io/role=<role>` label, sorted and deduplicated.
fn node_roles(node: &Value) -> String {
    let mut roles: Vec<&str> = Vec::new();
    if let Some(labels) = get(node, &["metadata", "labels"]).and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.push(role);
                }
            } else if k == "kubernetes.io/role" {
                if let Some(role) = v.as_str().filter(|r| !r.is_empty()) {
                    roles.push(role);
                }
            }
        }
    }
    roles.sort_unstable();
    roles.dedup();
    or_none(&roles.join(","))
}

fn node_cells(node: &Value, now: DateTime<Utc>) -> Vec<Value> {
    // Later duplicates of a condition type win, as in upstream's map.
    let ready = list_at(node, &["status", "conditions"])
        .iter()
        .rfind(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if get(node, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let info = |field: &str| {
        let v = str_at(node, &["status", "nodeInfo", field]);
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        s(name(node)),
        s(status.join(",")),
        s(node_roles(node)),
        age(node, now),
        s(str_at(node, &["status", "nodeInfo", "kubeletVersion"])),
        s(node_address(node, "InternalIP")),
        s(node_address(node, "ExternalIP")),
        s(info("osImage")),
        s(info("kernelVersion")),
        s(info("containerRuntimeVersion")),
    ]
}

// ---- ConfigMap, Secret, Namespace, ServiceAccount ----

pub static CONFIG_MAP: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Data",
            "string",
            "Number of entries in data and binaryData.",
        ),
        AGE,
    ],
    cells: |cm, now| {
        let count = map_len(cm, &["data"]) + map_len(cm, &["binaryData"]);
        vec![s(name(cm)), n(count as i64), age(cm, now)]
    },
    conditions: no_conditions,
    list: None,
};

pub static SECRET: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Type",
            "string",
            "Type of the secret, which fixes the keys it must hold.",
        ),
        col("Data", "string", "Number of entries in data."),
        AGE,
    ],
    cells: |secret, now| {
        vec![
            s(name(secret)),
            s(str_at(secret, &["type"])),
            n(map_len(secret, &["data"]) as i64),
            age(secret, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static NAMESPACE: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Status",
            "string",
            "Lifecycle phase of the namespace: Active or Terminating.",
        ),
        AGE,
    ],
    cells: |ns, now| {
        vec![
            s(name(ns)),
            s(str_at(ns, &["status", "phase"])),
            age(ns, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static SERVICE_ACCOUNT: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Secrets",
            "string",
            "Number of secrets listed in the service account's secrets field.",
        ),
        AGE,
    ],
    cells: |sa, now| {
        vec![
            s(name(sa)),
            n(list_at(sa, &["secrets"]).len() as i64),
            age(sa, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

// ---- ResourceQuota ----

pub static RESOURCE_QUOTA: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Request",
            "string",
            "Used and hard amounts of every quota that is not a limits.* resource.",
        ),
        col(
            "Limit",
            "string",
            "Used and hard amounts of the limits.* resources.",
        ),
        AGE,
    ],
    cells: quota_cells,
    conditions: no_conditions,
    list: None,
};

fn quota_cells(rq: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let hard = get(rq, &["status", "hard"]).and_then(Value::as_object);
    let mut resources: Vec<&String> = hard.map(|h| h.keys().collect()).unwrap_or_default();
    resources.sort();
    let quantity = |section: &str, key: &str| {
        super::fields::quantity(get(rq, &["status", section, key])).unwrap_or_else(|| "0".into())
    };
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for r in resources {
        let text = format!("{r}: {}/{}", quantity("used", r), quantity("hard", r));
        let mut pieces = r.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limits.push(text);
        } else {
            requests.push(text);
        }
    }
    vec![
        s(name(rq)),
        s(requests.join(", ")),
        s(limits.join(", ")),
        age(rq, now),
    ]
}

// ---- PodTemplate, ReplicationController ----

pub static POD_TEMPLATE: Spec = Spec {
    columns: &[
        NAME,
        col("Containers", "string", CONTAINERS_DESC),
        col("Images", "string", IMAGES_DESC),
        col(
            "Pod Labels",
            "string",
            "Labels the template puts on its pods.",
        ),
    ],
    cells: |pt, _| {
        let (names, images) = container_cells(get(pt, &["template", "spec"]));
        vec![
            s(name(pt)),
            s(names),
            s(images),
            s(format_labels(get(pt, &["template", "metadata", "labels"]))),
        ]
    },
    conditions: no_conditions,
    list: None,
};

static RC_COLUMNS: [Col; 8] = [
    NAME,
    col(
        "Desired",
        "integer",
        "Number of replicas the controller wants.",
    ),
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
        "Labels a pod must carry to count as a replica.",
    ),
];

pub static REPLICATION_CONTROLLER: Spec = Spec {
    columns: &RC_COLUMNS,
    cells: |rc, now| {
        let (names, images) = container_cells(get(rc, &["spec", "template", "spec"]));
        vec![
            s(name(rc)),
            n(opt_int(rc, &["spec", "replicas"]).unwrap_or(1)),
            n(int_at(rc, &["status", "replicas"])),
            n(int_at(rc, &["status", "readyReplicas"])),
            age(rc, now),
            s(names),
            s(images),
            s(format_labels(get(rc, &["spec", "selector"]))),
        ]
    },
    conditions: no_conditions,
    list: None,
};

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::{ago, cells};
    use serde_json::{json, Value};

    fn row(spec: &'static super::super::Spec, obj: Value) -> Value {
        Value::Array(cells(spec, &obj))
    }

    #[test]
    fn node_shows_readiness_roles_and_system_info() {
        let node = json!({
            "metadata": {"name": "node1", "creationTimestamp": ago(3 * 86400 + 3600),
                "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "",
                           "kubernetes.io/role": "node", "kubernetes.io/hostname": "node1"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "ExternalIP", "address": "2.2.2.2"},
                              {"type": "InternalIP", "address": "3.3.3.3"},
                              {"type": "InternalIP", "address": "4.4.4.4"}],
                "nodeInfo": {"kubeletVersion": "v1.35.0+skiff", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "skiff://0.1.0"}}
        });
        assert_eq!(
            row(&printers::NODE, node),
            json!([
                "node1",
                "Ready,SchedulingDisabled",
                "control-plane,master,node",
                "3d1h",
                "v1.35.0+skiff",
                "3.3.3.3",
                "2.2.2.2",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0-18-amd64",
                "skiff://0.1.0"
            ])
        );
    }

    #[test]
    fn node_without_ready_condition_is_unknown() {
        let node = json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(row(&printers::NODE, node)[1], "NotReady");
        let node = json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}});
        assert_eq!(
            row(&printers::NODE, node),
            json!([
                "n",
                "Unknown,SchedulingDisabled",
                "<none>",
                "<unknown>",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ])
        );
    }

    #[test]
    fn config_map_secret_namespace_and_service_account_counts() {
        let cm = json!({"metadata": {"name": "cfg", "creationTimestamp": ago(10)},
            "data": {"a": "1"}, "binaryData": {"b": "AA=="}});
        assert_eq!(row(&printers::CONFIG_MAP, cm), json!(["cfg", 2, "10s"]));
        let secret = json!({"metadata": {"name": "tok"}, "type": "kubernetes.io/service-account-token",
            "data": {"token": "c2VjcmV0"}});
        assert_eq!(
            row(&printers::SECRET, secret),
            json!(["tok", "kubernetes.io/service-account-token", 1, "<unknown>"])
        );
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": ago(86400 * 40)},
            "status": {"phase": "Active"}});
        assert_eq!(
            row(&printers::NAMESPACE, ns),
            json!(["default", "Active", "40d"])
        );
        let sa =
            json!({"metadata": {"name": "default"}, "secrets": [{"name": "s1"}, {"name": "s2"}]});
        assert_eq!(
            row(&printers::SERVICE_ACCOUNT, sa),
            json!(["default", 2, "<unknown>"])
        );
    }

    #[test]
    fn resource_quota_splits_requests_and_limits() {
        let rq = json!({"metadata": {"name": "q", "creationTimestamp": ago(300)},
            "status": {
                "used": {"cpu": "1", "memory": "1Gi", "pods": "1", "services": "1",
                         "replicationcontrollers": "1", "resourcequotas": "1",
                         "limits.cpu": "2", "limits.memory": "2Gi"},
                "hard": {"cpu": "100", "memory": "4Gi", "pods": "10", "services": "10",
                         "replicationcontrollers": "10", "resourcequotas": "1",
                         "limits.cpu": "200", "limits.memory": "8Gi"}}});
        assert_eq!(
            row(&printers::RESOURCE_QUOTA, rq),
            json!(["q",
                "cpu: 1/100, memory: 1Gi/4Gi, pods: 1/10, replicationcontrollers: 1/10, resourcequotas: 1/1, services: 1/10",
                "limits.cpu: 2/200, limits.memory: 2Gi/8Gi", "5m"])
        );
    }

    #[test]
    fn pod_template_and_replication_controller() {
        let pt = json!({"metadata": {"name": "pt"}, "template": {"metadata": {"labels": {"foo": "bar"}},
            "spec": {"containers": [{"name": "c1", "image": "i1"}, {"name": "c2", "image": "i2"}]}}});
        assert_eq!(
            row(&printers::POD_TEMPLATE, pt),
            json!(["pt", "c1,c2", "i1,i2", "foo=bar"])
        );
        let rc = json!({"metadata": {"name": "rc1"},
            "spec": {"replicas": 5, "selector": {"a": "b"},
                     "template": {"spec": {"containers": [{"name": "test", "image": "test_image"}]}}},
            "status": {"replicas": 3, "readyReplicas": 1}});
        assert_eq!(
            row(&printers::REPLICATION_CONTROLLER, rc),
            json!(["rc1", 5, 3, 1, "<unknown>", "test", "test_image", "a=b"])
        );
    }
}
