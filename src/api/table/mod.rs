//! Server-side `meta.k8s.io/v1` Table rendering for `kubectl get`.
//!
//! kubectl 1.35 prints only what the server puts in a Table, so this module
//! owns the column definitions and cell logic of every built-in kind (the
//! equivalent of kube-apiserver's internal printers), the CRD
//! `additionalPrinterColumns` convertor, and the default Name/Created At
//! convertor for everything else.
//!
//! Invariants:
//! - every row has exactly one cell per column definition, priority-1 ("wide")
//!   columns included: like kube-apiserver we always render the wide cells and
//!   kubectl hides them unless `-o wide`;
//! - every row carries its object as `PartialObjectMetadata`, which kubectl
//!   needs for `-A` and `--show-labels`;
//! - printers never fail: missing fields print as upstream prints Go zero values.

mod apps;
mod autoscaling;
mod batch;
mod cluster;
mod corev1;
mod custom;
pub mod duration;
mod events;
mod fields;
mod format;
pub mod jsonpath;
mod networking;
mod pod;
mod rbac;
mod service;
mod storage;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

pub use custom::CustomColumn;
pub use duration::human_duration;
pub use jsonpath::{JsonPath, JsonPathError};

/// Description shared by every Name column (paraphrasing ObjectMeta.name).
const NAME_DESC: &str = "Name of the object, unique within its namespace (or the \
cluster for cluster-scoped kinds). Required on create unless generated from generateName; \
cannot be changed afterwards.";

/// Description shared by every Age column (paraphrasing ObjectMeta.creationTimestamp).
const AGE_DESC: &str = "Time elapsed since the server created the object \
(metadata.creationTimestamp, in UTC). Set by the system; clients cannot change it.";

const CONTAINERS_DESC: &str = "Names of the containers in the pod template.";
const IMAGES_DESC: &str = "Images the containers of the pod template run.";

/// One column of a built-in printer.
#[derive(Debug, Clone, Copy)]
struct Col {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    description: &'static str,
    priority: u8,
}

/// A standard column (shown by plain `kubectl get`).
const fn col(name: &'static str, ty: &'static str, description: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        description,
        priority: 0,
    }
}

/// A priority-1 column (shown only with `-o wide`).
const fn wide(name: &'static str, ty: &'static str, description: &'static str) -> Col {
    Col {
        name,
        ty,
        format: "",
        description,
        priority: 1,
    }
}

/// The Name column every printer starts with.
const NAME: Col = Col {
    name: "Name",
    ty: "string",
    format: "name",
    description: NAME_DESC,
    priority: 0,
};

/// The Age column.
const AGE: Col = col("Age", "string", AGE_DESC);

/// A built-in printer: its columns and the function computing one row's cells.
struct Spec {
    columns: &'static [Col],
    cells: fn(&Value, DateTime<Utc>) -> Vec<Value>,
    /// Row conditions (only pods report `Completed`).
    conditions: fn(&Value) -> Option<Value>,
}

/// For specs whose rows carry no conditions.
fn no_conditions(_: &Value) -> Option<Value> {
    None
}

/// Looks up the built-in printer for a group and kind.
fn builtin(group: &str, kind: &str) -> Option<&'static Spec> {
    let spec = match (group, kind) {
        ("", "Pod") => &pod::POD,
        ("", "Node") => &corev1::NODE,
        ("", "Service") => &service::SERVICE,
        ("", "Endpoints") => &service::ENDPOINTS,
        ("", "ConfigMap") => &corev1::CONFIG_MAP,
        ("", "Secret") => &corev1::SECRET,
        ("", "Namespace") => &corev1::NAMESPACE,
        ("", "ServiceAccount") => &corev1::SERVICE_ACCOUNT,
        ("", "Event") | ("events.k8s.io", "Event") => &events::EVENT,
        ("", "PersistentVolume") => &storage::PERSISTENT_VOLUME,
        ("", "PersistentVolumeClaim") => &storage::PERSISTENT_VOLUME_CLAIM,
        ("", "ResourceQuota") => &corev1::RESOURCE_QUOTA,
        ("", "PodTemplate") => &corev1::POD_TEMPLATE,
        ("", "ReplicationController") => &corev1::REPLICATION_CONTROLLER,
        ("apps", "Deployment") => &apps::DEPLOYMENT,
        ("apps", "ReplicaSet") => &apps::REPLICA_SET,
        ("apps", "StatefulSet") => &apps::STATEFUL_SET,
        ("apps", "DaemonSet") => &apps::DAEMON_SET,
        ("apps", "ControllerRevision") => &apps::CONTROLLER_REVISION,
        ("batch", "Job") => &batch::JOB,
        ("batch", "CronJob") => &batch::CRON_JOB,
        ("autoscaling", "HorizontalPodAutoscaler") => &autoscaling::HPA,
        ("autoscaling", "Scale") => &autoscaling::SCALE,
        ("networking.k8s.io", "Ingress") => &networking::INGRESS,
        ("networking.k8s.io", "IngressClass") => &networking::INGRESS_CLASS,
        ("networking.k8s.io", "NetworkPolicy") => &networking::NETWORK_POLICY,
        ("discovery.k8s.io", "EndpointSlice") => &networking::ENDPOINT_SLICE,
        ("coordination.k8s.io", "Lease") => &cluster::LEASE,
        ("policy", "PodDisruptionBudget") => &cluster::POD_DISRUPTION_BUDGET,
        ("scheduling.k8s.io", "PriorityClass") => &cluster::PRIORITY_CLASS,
        ("node.k8s.io", "RuntimeClass") => &cluster::RUNTIME_CLASS,
        ("certificates.k8s.io", "CertificateSigningRequest") => &cluster::CSR,
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration")
        | ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => &cluster::WEBHOOKS,
        ("rbac.authorization.k8s.io", "RoleBinding") => &rbac::ROLE_BINDING,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => &rbac::CLUSTER_ROLE_BINDING,
        ("storage.k8s.io", "StorageClass") => &storage::STORAGE_CLASS,
        // Role, ClusterRole, LimitRange, CustomResourceDefinition and the rest
        // use the default Name / Created At convertor, as upstream does.
        _ => return None,
    };
    Some(spec)
}

/// How rows of one resource are rendered.
#[derive(Debug, Clone, PartialEq)]
pub enum Printer {
    /// An upstream printer for a built-in kind (group `""` is core).
    Builtin { group: String, kind: String },
    /// CRD columns; the Name column is implied and comes first.
    Custom(Vec<CustomColumn>),
    /// Upstream's default convertor: Name and Created At (RFC 3339).
    Default,
}

impl Printer {
    /// The printer kube-apiserver uses for a built-in kind; `Default` when it
    /// has none.
    pub fn for_kind(group: &str, kind: &str) -> Printer {
        match builtin(group, kind) {
            Some(_) => Printer::Builtin {
                group: group.to_string(),
                kind: kind.to_string(),
            },
            None => Printer::Default,
        }
    }

    /// The printer for one CRD version, from its `additionalPrinterColumns`
    /// (absent, null or `[]` give the upstream default single Age column).
    /// Like the CRD convertor, columns stop at the first unusable JSONPath.
    pub fn for_crd(additional_printer_columns: &Value) -> Printer {
        Printer::Custom(custom::crd_columns(additional_printer_columns))
    }
    /// `columnDefinitions` entries: `{name, type, format, description, priority}`.
    pub fn column_definitions(&self) -> Vec<Value> {
        let def = |name: &str, ty: &str, format: &str, description: &str, priority: i64| {
            json!({"name": name, "type": ty, "format": format,
                   "description": description, "priority": priority})
        };
        match self {
            Printer::Builtin { group, kind } => match builtin(group, kind) {
                Some(spec) => spec
                    .columns
                    .iter()
                    .map(|c| def(c.name, c.ty, c.format, c.description, i64::from(c.priority)))
                    .collect(),
                None => Printer::Default.column_definitions(),
            },
            Printer::Custom(columns) => {
                std::iter::once(def(NAME.name, NAME.ty, NAME.format, NAME.description, 0))
                    .chain(columns.iter().map(|c| {
                        def(
                            &c.name,
                            &c.column_type,
                            &c.format,
                            &c.description,
                            c.priority,
                        )
                    }))
                    .collect()
            }
            Printer::Default => vec![
                def(NAME.name, NAME.ty, NAME.format, NAME.description, 0),
                def("Created At", "date", "", AGE_DESC, 0),
            ],
        }
    }

    /// One table row: `{"cells": [...], "object": PartialObjectMetadata}`,
    /// plus `conditions` where upstream sets them.
    pub fn row(&self, obj: &Value, now: DateTime<Utc>) -> Value {
        let (cells, conditions) = match self {
            Printer::Builtin { group, kind } => match builtin(group, kind) {
                Some(spec) => ((spec.cells)(obj, now), (spec.conditions)(obj)),
                None => (default_cells(obj), None),
            },
            Printer::Custom(columns) => {
                let mut cells = Vec::with_capacity(columns.len() + 1);
                cells.push(Value::String(fields::name(obj).to_string()));
                for c in columns {
                    cells.push(custom::cell(&c.column_type, c.path().first(obj), now));
                }
                (cells, None)
            }
            Printer::Default => (default_cells(obj), None),
        };
        let mut row = Map::new();
        row.insert("cells".into(), Value::Array(cells));
        if let Some(c) = conditions {
            row.insert("conditions".into(), c);
        }
        row.insert("object".into(), partial_object_metadata(obj));
        Value::Object(row)
    }
}

/// Cells of the default convertor: the name and the creation time in RFC 3339
/// (Go's zero time when unset, exactly as upstream formats it).
fn default_cells(obj: &Value) -> Vec<Value> {
    let created = fields::created(obj)
        .and_then(duration::parse_time)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
    vec![
        Value::String(fields::name(obj).to_string()),
        Value::String(created),
    ]
}

/// A whole `meta.k8s.io/v1` Table for a list (or a single object / watch
/// event: pass one object). `continue` and `remainingItemCount` are only
/// written when given, as `ListMeta` omits them when empty. For a
/// StorageClass list only the effective default keeps its " (default)" mark.
pub fn table<'a>(
    printer: &Printer,
    objs: impl IntoIterator<Item = &'a Value>,
    resource_version: &str,
    continue_token: Option<&str>,
    remaining: Option<i64>,
    now: DateTime<Utc>,
) -> Value {
    let mut meta = Map::new();
    if !resource_version.is_empty() {
        meta.insert(
            "resourceVersion".into(),
            Value::String(resource_version.into()),
        );
    }
    if let Some(token) = continue_token.filter(|t| !t.is_empty()) {
        meta.insert("continue".into(), Value::String(token.into()));
    }
    if let Some(n) = remaining {
        meta.insert("remainingItemCount".into(), Value::from(n));
    }
    let objs: Vec<&Value> = objs.into_iter().collect();
    let mut rows: Vec<Value> = objs.iter().map(|o| printer.row(o, now)).collect();
    if matches!(printer, Printer::Builtin { group, kind } if group == "storage.k8s.io" && kind == "StorageClass")
    {
        storage::mark_effective_default(&objs, &mut rows);
    }
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": Value::Object(meta),
        "columnDefinitions": printer.column_definitions(),
        "rows": rows,
    })
}

/// The row object kubectl reads namespace and labels from: the full
/// `metadata` of `obj` wrapped as `meta.k8s.io/v1` `PartialObjectMetadata`.
pub fn partial_object_metadata(obj: &Value) -> Value {
    let metadata = obj
        .get("metadata")
        .filter(|m| m.is_object())
        .cloned()
        .unwrap_or_else(|| json!({}));
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
    })
}

#[cfg(test)]
mod testutil {
    use chrono::{DateTime, Duration, SecondsFormat, Utc};
    use serde_json::Value;

    /// A fixed "now" so ages are deterministic.
    pub fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
            .expect("valid time")
            .with_timezone(&Utc)
    }

    /// The RFC 3339 timestamp `secs` seconds before `now()`.
    pub fn ago(secs: i64) -> String {
        (now() - Duration::seconds(secs)).to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// The cells a printer produces for `obj`.
    pub fn cells(group: &str, kind: &str, obj: &Value) -> Vec<Value> {
        let row = super::Printer::for_kind(group, kind).row(obj, now());
        row["cells"].as_array().cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{ago, now};
    use super::*;

    #[test]
    fn every_builtin_row_has_one_cell_per_column() {
        let kinds = [
            ("", "Pod"),
            ("", "Node"),
            ("", "Service"),
            ("", "Endpoints"),
            ("", "ConfigMap"),
            ("", "Secret"),
            ("", "Namespace"),
            ("", "ServiceAccount"),
            ("", "Event"),
            ("events.k8s.io", "Event"),
            ("", "PersistentVolume"),
            ("", "PersistentVolumeClaim"),
            ("", "ResourceQuota"),
            ("", "PodTemplate"),
            ("", "ReplicationController"),
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("apps", "ControllerRevision"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("autoscaling", "HorizontalPodAutoscaler"),
            ("autoscaling", "Scale"),
            ("networking.k8s.io", "Ingress"),
            ("networking.k8s.io", "IngressClass"),
            ("networking.k8s.io", "NetworkPolicy"),
            ("discovery.k8s.io", "EndpointSlice"),
            ("coordination.k8s.io", "Lease"),
            ("policy", "PodDisruptionBudget"),
            ("scheduling.k8s.io", "PriorityClass"),
            ("node.k8s.io", "RuntimeClass"),
            ("certificates.k8s.io", "CertificateSigningRequest"),
            (
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
            ),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ("storage.k8s.io", "StorageClass"),
        ];
        let empty = json!({"metadata": {"name": "x"}});
        for (group, kind) in kinds {
            let p = Printer::for_kind(group, kind);
            assert!(
                matches!(p, Printer::Builtin { .. }),
                "{group}/{kind} has a printer"
            );
            let row = p.row(&empty, now());
            assert_eq!(
                row["cells"].as_array().map(Vec::len),
                Some(p.column_definitions().len()),
                "{group}/{kind}"
            );
            if kind != "Event" {
                assert_eq!(
                    row["cells"][0],
                    json!("x"),
                    "{group}/{kind} starts with the name"
                );
            }
        }
    }

    #[test]
    fn unknown_and_rbac_role_kinds_use_the_default_convertor() {
        assert_eq!(Printer::for_kind("example.com", "Widget"), Printer::Default);
        assert_eq!(
            Printer::for_kind("rbac.authorization.k8s.io", "ClusterRole"),
            Printer::Default
        );
        assert_eq!(
            Printer::for_kind("apiextensions.k8s.io", "CustomResourceDefinition"),
            Printer::Default
        );
        let defs = Printer::Default.column_definitions();
        assert_eq!(defs[0]["name"], "Name");
        assert_eq!(defs[0]["format"], "name");
        assert_eq!(defs[1]["name"], "Created At");
        assert_eq!(defs[1]["type"], "date");
        let obj =
            json!({"metadata": {"name": "admin", "creationTimestamp": "2025-01-02T03:04:05Z"}});
        assert_eq!(
            Printer::Default.row(&obj, now())["cells"],
            json!(["admin", "2025-01-02T03:04:05Z"])
        );
    }

    #[test]
    fn rows_carry_full_metadata_as_partial_object_metadata() {
        let obj = json!({"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "c", "namespace": "ns", "labels": {"a": "b"}, "uid": "u1"},
            "data": {"k": "v"}});
        let row = Printer::for_kind("", "ConfigMap").row(&obj, now());
        assert_eq!(
            row["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "c", "namespace": "ns", "labels": {"a": "b"}, "uid": "u1"}})
        );
        assert!(row.get("conditions").is_none());
    }

    #[test]
    fn table_wraps_rows_with_list_metadata() {
        let a =
            json!({"metadata": {"name": "a", "creationTimestamp": ago(30)}, "data": {"x": "1"}});
        let b = json!({"metadata": {"name": "b", "creationTimestamp": ago(400)}});
        let t = table(
            &Printer::for_kind("", "ConfigMap"),
            [&a, &b],
            "1006",
            Some("tok"),
            Some(5),
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(
            t["metadata"],
            json!({"resourceVersion": "1006", "continue": "tok", "remainingItemCount": 5})
        );
        assert_eq!(t["columnDefinitions"][1]["name"], "Data");
        assert_eq!(t["rows"][0]["cells"], json!(["a", 1, "30s"]));
        assert_eq!(t["rows"][1]["cells"], json!(["b", 0, "6m40s"]));
        let plain = table(
            &Printer::Default,
            Vec::<&Value>::new(),
            "7",
            None,
            None,
            now(),
        );
        assert_eq!(plain["metadata"], json!({"resourceVersion": "7"}));
        assert_eq!(plain["rows"], json!([]));
    }
}
