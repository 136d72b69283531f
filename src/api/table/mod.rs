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
mod control;
mod corev1;
mod csi;
mod custom;
mod dra;
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

/// A built-in printer: its columns and the function computing one row's cells. Each kind's
/// strategy (`crate::api::strategy`) names the one it uses; kinds that name none get
/// upstream's default Name / Created At convertor.
pub struct Spec {
    columns: &'static [Col],
    cells: fn(&Value, DateTime<Utc>) -> Vec<Value>,
    /// Row conditions (only pods report `Completed`).
    conditions: fn(&Value) -> Option<Value>,
    /// A pass over a whole list's rows (StorageClass marks only the effective default).
    list: Option<ListPass>,
}

/// A pass over all rows of a list: `(objects, rows)`.
type ListPass = fn(&[&Value], &mut [Value]);

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.columns.iter().map(|c| c.name).collect();
        f.debug_struct("Spec").field("columns", &names).finish()
    }
}

/// For specs whose rows carry no conditions.
fn no_conditions(_: &Value) -> Option<Value> {
    None
}

/// Every built-in printer, for the strategies to name (upstream's printers also cover a few
/// kinds skiff does not serve yet: PodTemplate, ReplicationController, PriorityClass, ...).
pub mod printers {
    pub use super::apps::{CONTROLLER_REVISION, DAEMON_SET, DEPLOYMENT, REPLICA_SET, STATEFUL_SET};
    pub use super::autoscaling::{HPA, SCALE};
    pub use super::batch::{CRON_JOB, JOB};
    pub use super::cluster::{
        CSR, LEASE, POD_DISRUPTION_BUDGET, PRIORITY_CLASS, RUNTIME_CLASS, WEBHOOKS,
    };
    pub use super::control::{
        API_SERVICE, COMPONENT_STATUS, FLOW_SCHEMA, PRIORITY_LEVEL_CONFIGURATION,
        VALIDATING_ADMISSION_POLICY, VALIDATING_ADMISSION_POLICY_BINDING,
    };
    pub use super::corev1::{
        CONFIG_MAP, NAMESPACE, NODE, POD_TEMPLATE, REPLICATION_CONTROLLER, RESOURCE_QUOTA, SECRET,
        SERVICE_ACCOUNT,
    };
    pub use super::csi::{
        CSI_DRIVER, CSI_NODE, CSI_STORAGE_CAPACITY, VOLUME_ATTACHMENT, VOLUME_ATTRIBUTES_CLASS,
    };
    pub use super::dra::{DEVICE_CLASS, RESOURCE_CLAIM, RESOURCE_CLAIM_TEMPLATE, RESOURCE_SLICE};
    pub use super::events::EVENT;
    pub use super::networking::{
        ENDPOINT_SLICE, INGRESS, INGRESS_CLASS, IP_ADDRESS, NETWORK_POLICY, SERVICE_CIDR,
    };
    pub use super::pod::POD;
    pub use super::rbac::{CLUSTER_ROLE_BINDING, ROLE_BINDING};
    pub use super::service::{ENDPOINTS, SERVICE};
    pub use super::storage::{PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM, STORAGE_CLASS};
}

/// How rows of one resource are rendered.
#[derive(Debug, Clone)]
pub enum Printer {
    /// An upstream printer for a built-in kind.
    Builtin(&'static Spec),
    /// CRD columns; the Name column is implied and comes first.
    Custom(Vec<CustomColumn>),
    /// Upstream's default convertor: Name and Created At (RFC 3339).
    Default,
}

impl PartialEq for Printer {
    fn eq(&self, other: &Printer) -> bool {
        match (self, other) {
            (Printer::Builtin(a), Printer::Builtin(b)) => std::ptr::eq(*a, *b),
            (Printer::Custom(a), Printer::Custom(b)) => a == b,
            (Printer::Default, Printer::Default) => true,
            _ => false,
        }
    }
}

impl Printer {
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
            Printer::Builtin(spec) => spec
                .columns
                .iter()
                .map(|c| def(c.name, c.ty, c.format, c.description, i64::from(c.priority)))
                .collect(),
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
            Printer::Builtin(spec) => ((spec.cells)(obj, now), (spec.conditions)(obj)),
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
    if let Printer::Builtin(Spec {
        list: Some(list), ..
    }) = printer
    {
        list(&objs, &mut rows);
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
    partial_metadata_of(&obj["metadata"])
}

/// The PartialObjectMetadata of an object whose `metadata` is given (`{}` unless it is an
/// object).
pub fn partial_metadata_of(metadata: &Value) -> Value {
    let metadata = Some(metadata)
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
    pub fn cells(spec: &'static super::Spec, obj: &Value) -> Vec<Value> {
        let row = super::Printer::Builtin(spec).row(obj, now());
        row["cells"].as_array().cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{ago, now};
    use super::*;

    #[test]
    fn every_builtin_row_has_one_cell_per_column() {
        use printers::*;
        let specs: [(&str, &'static Spec); 53] = [
            ("Pod", &POD),
            ("Node", &NODE),
            ("Service", &SERVICE),
            ("Endpoints", &ENDPOINTS),
            ("ConfigMap", &CONFIG_MAP),
            ("Secret", &SECRET),
            ("Namespace", &NAMESPACE),
            ("ServiceAccount", &SERVICE_ACCOUNT),
            ("Event", &EVENT),
            ("PersistentVolume", &PERSISTENT_VOLUME),
            ("PersistentVolumeClaim", &PERSISTENT_VOLUME_CLAIM),
            ("ResourceQuota", &RESOURCE_QUOTA),
            ("PodTemplate", &POD_TEMPLATE),
            ("ReplicationController", &REPLICATION_CONTROLLER),
            ("Deployment", &DEPLOYMENT),
            ("ReplicaSet", &REPLICA_SET),
            ("StatefulSet", &STATEFUL_SET),
            ("DaemonSet", &DAEMON_SET),
            ("ControllerRevision", &CONTROLLER_REVISION),
            ("Job", &JOB),
            ("CronJob", &CRON_JOB),
            ("HorizontalPodAutoscaler", &HPA),
            ("Scale", &SCALE),
            ("Ingress", &INGRESS),
            ("IngressClass", &INGRESS_CLASS),
            ("NetworkPolicy", &NETWORK_POLICY),
            ("EndpointSlice", &ENDPOINT_SLICE),
            ("Lease", &LEASE),
            ("PodDisruptionBudget", &POD_DISRUPTION_BUDGET),
            ("PriorityClass", &PRIORITY_CLASS),
            ("RuntimeClass", &RUNTIME_CLASS),
            ("CertificateSigningRequest", &CSR),
            ("ValidatingWebhookConfiguration", &WEBHOOKS),
            ("RoleBinding", &ROLE_BINDING),
            ("ClusterRoleBinding", &CLUSTER_ROLE_BINDING),
            ("StorageClass", &STORAGE_CLASS),
            ("ComponentStatus", &COMPONENT_STATUS),
            ("APIService", &API_SERVICE),
            ("FlowSchema", &FLOW_SCHEMA),
            ("PriorityLevelConfiguration", &PRIORITY_LEVEL_CONFIGURATION),
            ("ValidatingAdmissionPolicy", &VALIDATING_ADMISSION_POLICY),
            (
                "ValidatingAdmissionPolicyBinding",
                &VALIDATING_ADMISSION_POLICY_BINDING,
            ),
            ("CSIDriver", &CSI_DRIVER),
            ("CSINode", &CSI_NODE),
            ("CSIStorageCapacity", &CSI_STORAGE_CAPACITY),
            ("VolumeAttachment", &VOLUME_ATTACHMENT),
            ("VolumeAttributesClass", &VOLUME_ATTRIBUTES_CLASS),
            ("DeviceClass", &DEVICE_CLASS),
            ("ResourceClaim", &RESOURCE_CLAIM),
            ("ResourceClaimTemplate", &RESOURCE_CLAIM_TEMPLATE),
            ("ResourceSlice", &RESOURCE_SLICE),
            ("ServiceCIDR", &SERVICE_CIDR),
            ("IPAddress", &IP_ADDRESS),
        ];
        let empty = json!({"metadata": {"name": "x"}});
        for (kind, spec) in specs {
            let p = Printer::Builtin(spec);
            let row = p.row(&empty, now());
            assert_eq!(
                row["cells"].as_array().map(Vec::len),
                Some(p.column_definitions().len()),
                "{kind}"
            );
            if kind != "Event" {
                assert_eq!(row["cells"][0], json!("x"), "{kind} starts with the name");
            }
        }
    }

    #[test]
    fn the_default_convertor_prints_name_and_created_at() {
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
        let row = Printer::Builtin(&printers::CONFIG_MAP).row(&obj, now());
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
            &Printer::Builtin(&printers::CONFIG_MAP),
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
