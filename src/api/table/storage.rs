//! Volume printers: PersistentVolume, PersistentVolumeClaim (core) and
//! StorageClass (`storage.k8s.io`).
//!
//! Invariant: the storage class shown honours the legacy
//! `volume.beta.kubernetes.io/storage-class` annotation before the spec
//! field, and the default class is marked " (default)", as upstream does.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::{parse_time, since};
use super::fields::{created, deleting, get, list_at, name, opt_str, quantity, s, str_at};
use super::format::access_modes;
use super::{col, no_conditions, wide, Col, Spec, AGE, NAME};

const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn beta_class(obj: &Value) -> Option<&str> {
    opt_str(obj, &["metadata", "annotations", BETA_CLASS_ANNOTATION])
}

fn unset(v: Option<&str>) -> String {
    v.map_or_else(|| "<unset>".to_string(), str::to_string)
}

pub static PERSISTENT_VOLUME: Spec = Spec {
    columns: &PV_COLUMNS,
    cells: pv_cells,
    conditions: no_conditions,
    list: None,
};

static PV_COLUMNS: [Col; 11] = [
    NAME,
    col("Capacity", "string", "Storage capacity of the volume."),
    col(
        "Access Modes",
        "string",
        "Ways the volume can be mounted: RWO, ROX, RWX, RWOP.",
    ),
    col(
        "Reclaim Policy",
        "string",
        "What happens to the volume once its claim is released: Retain, Delete or Recycle.",
    ),
    col(
        "Status",
        "string",
        "Phase of the volume: Pending, Available, Bound, Released or Failed.",
    ),
    col(
        "Claim",
        "string",
        "namespace/name of the claim bound to this volume.",
    ),
    col(
        "StorageClass",
        "string",
        "Storage class the volume belongs to.",
    ),
    col(
        "VolumeAttributesClass",
        "string",
        "Volume attributes class of the volume.",
    ),
    col(
        "Reason",
        "string",
        "Machine-readable reason for a failed phase.",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "Whether the volume is a filesystem or a raw block device.",
    ),
];

fn pv_cells(pv: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let claim = match get(pv, &["spec", "claimRef"]).filter(|c| c.is_object()) {
        Some(c) => format!("{}/{}", str_at(c, &["namespace"]), str_at(c, &["name"])),
        None => String::new(),
    };
    let phase = if deleting(pv) {
        "Terminating"
    } else {
        str_at(pv, &["status", "phase"])
    };
    let class = beta_class(pv).unwrap_or_else(|| str_at(pv, &["spec", "storageClassName"]));
    vec![
        s(name(pv)),
        s(quantity(get(pv, &["spec", "capacity", "storage"])).unwrap_or_else(|| "0".into())),
        s(access_modes(list_at(pv, &["spec", "accessModes"]))),
        s(str_at(pv, &["spec", "persistentVolumeReclaimPolicy"])),
        s(phase),
        s(claim),
        s(class),
        s(unset(opt_str(pv, &["spec", "volumeAttributesClassName"]))),
        s(str_at(pv, &["status", "reason"])),
        s(since(created(pv), now)),
        s(unset(opt_str(pv, &["spec", "volumeMode"]))),
    ]
}

pub static PERSISTENT_VOLUME_CLAIM: Spec = Spec {
    columns: &PVC_COLUMNS,
    cells: pvc_cells,
    conditions: no_conditions,
    list: None,
};

static PVC_COLUMNS: [Col; 9] = [
    NAME,
    col(
        "Status",
        "string",
        "Phase of the claim: Pending, Bound or Lost.",
    ),
    col(
        "Volume",
        "string",
        "Name of the persistent volume bound to the claim.",
    ),
    col(
        "Capacity",
        "string",
        "Storage capacity of the bound volume.",
    ),
    col(
        "Access Modes",
        "string",
        "Access modes of the bound volume: RWO, ROX, RWX, RWOP.",
    ),
    col(
        "StorageClass",
        "string",
        "Storage class the claim asks for.",
    ),
    col(
        "VolumeAttributesClass",
        "string",
        "Volume attributes class the claim asks for.",
    ),
    AGE,
    wide(
        "VolumeMode",
        "string",
        "Whether the claim wants a filesystem or a raw block device.",
    ),
];

fn pvc_cells(pvc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let phase = if deleting(pvc) {
        "Terminating"
    } else {
        str_at(pvc, &["status", "phase"])
    };
    let volume = str_at(pvc, &["spec", "volumeName"]);
    // Capacity and modes are only meaningful once a volume is bound.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(get(pvc, &["status", "capacity", "storage"])).unwrap_or_else(|| "0".into()),
            access_modes(list_at(pvc, &["status", "accessModes"])),
        )
    };
    let class = beta_class(pvc)
        .or_else(|| opt_str(pvc, &["spec", "storageClassName"]))
        .unwrap_or("");
    vec![
        s(name(pvc)),
        s(phase),
        s(volume),
        s(capacity),
        s(modes),
        s(class),
        s(unset(opt_str(pvc, &["spec", "volumeAttributesClassName"]))),
        s(since(created(pvc), now)),
        s(unset(opt_str(pvc, &["spec", "volumeMode"]))),
    ]
}

pub static STORAGE_CLASS: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Provisioner",
            "string",
            "Volume plugin that provisions volumes of this class.",
        ),
        col(
            "ReclaimPolicy",
            "string",
            "Reclaim policy given to volumes provisioned for this class.",
        ),
        col(
            "VolumeBindingMode",
            "string",
            "When claims are bound and provisioned: Immediate or WaitForFirstConsumer.",
        ),
        col(
            "AllowVolumeExpansion",
            "string",
            "Whether claims of this class may be resized.",
        ),
        AGE,
    ],
    cells: storage_class_cells,
    conditions: no_conditions,
    list: Some(mark_effective_default),
};

fn is_default_class(sc: &Value) -> bool {
    [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|a| str_at(sc, &["metadata", "annotations", a]) == "true")
}

fn storage_class_cells(sc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let is_default = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ]
    .iter()
    .any(|a| str_at(sc, &["metadata", "annotations", a]) == "true");
    let mut display = name(sc).to_string();
    if is_default {
        display.push_str(" (default)");
    }
    vec![
        s(display),
        s(str_at(sc, &["provisioner"])),
        s(opt_str(sc, &["reclaimPolicy"]).unwrap_or("Delete")),
        s(opt_str(sc, &["volumeBindingMode"]).unwrap_or("Immediate")),
        Value::Bool(
            get(sc, &["allowVolumeExpansion"])
                .and_then(Value::as_bool)
                .unwrap_or(false),
        ),
        s(since(created(sc), now)),
    ]
}

/// Among the listed classes annotated as default, only the effective one
/// (newest, then alphabetically first) keeps " (default)" in its Name cell,
/// as upstream's StorageClass table convertor does.
fn mark_effective_default(objs: &[&Value], rows: &mut [Value]) {
    let effective = objs
        .iter()
        .filter(|sc| is_default_class(sc))
        .map(|sc| (created(sc).and_then(parse_time), name(sc)))
        // Newest first; equal (or missing) timestamps fall back to the name.
        .min_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)))
        .map(|(_, n)| n.to_string());
    for (obj, row) in objs.iter().zip(rows.iter_mut()) {
        if is_default_class(obj) && Some(name(obj)) != effective.as_deref() {
            row["cells"][0] = Value::String(name(obj).to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::{ago, cells};
    use serde_json::{json, Value};

    #[test]
    fn bound_volume_shows_claim_and_modes() {
        let pv = json!({"metadata": {"name": "pv1", "creationTimestamp": ago(600)},
            "spec": {"capacity": {"storage": "4Gi"}, "accessModes": ["ReadOnlyMany"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local-path",
                     "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            Value::Array(cells(&printers::PERSISTENT_VOLUME, &pv)),
            json!([
                "pv1",
                "4Gi",
                "ROX",
                "Retain",
                "Bound",
                "default/data",
                "local-path",
                "<unset>",
                "",
                "10m",
                "Filesystem"
            ])
        );
    }

    #[test]
    fn volume_without_optional_fields_matches_upstream_blanks() {
        let pv = json!({"metadata": {"name": "test1"},
            "spec": {"claimRef": {"name": "test", "namespace": "default"},
                     "accessModes": ["ReadWriteMany"], "capacity": {"storage": "10Gi"}},
            "status": {"phase": "Pending"}});
        assert_eq!(
            Value::Array(cells(&printers::PERSISTENT_VOLUME, &pv)),
            json!([
                "test1",
                "10Gi",
                "RWX",
                "",
                "Pending",
                "default/test",
                "",
                "<unset>",
                "",
                "<unknown>",
                "<unset>"
            ])
        );
    }

    #[test]
    fn claims_show_capacity_only_when_bound() {
        let bound = json!({"metadata": {"name": "test1"},
            "spec": {"volumeName": "my-volume", "volumeMode": "Filesystem", "storageClassName": "my-scn"},
            "status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "4Gi"}}});
        assert_eq!(
            Value::Array(cells(&printers::PERSISTENT_VOLUME_CLAIM, &bound)),
            json!([
                "test1",
                "Bound",
                "my-volume",
                "4Gi",
                "RWO",
                "my-scn",
                "<unset>",
                "<unknown>",
                "Filesystem"
            ])
        );
        let lost = json!({"metadata": {"name": "test2"},
            "spec": {"volumeMode": "Filesystem"},
            "status": {"phase": "Lost", "accessModes": ["ReadOnlyMany"], "capacity": {"storage": "4Gi"}}});
        assert_eq!(
            Value::Array(cells(&printers::PERSISTENT_VOLUME_CLAIM, &lost)),
            json!([
                "test2",
                "Lost",
                "",
                "",
                "",
                "",
                "<unset>",
                "<unknown>",
                "Filesystem"
            ])
        );
        let mut deleting = lost.clone();
        deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(
            cells(&printers::PERSISTENT_VOLUME_CLAIM, &deleting)[1],
            "Terminating"
        );
    }

    #[test]
    fn storage_class_defaults_and_default_marker() {
        let sc = json!({"metadata": {"name": "local-path", "creationTimestamp": ago(300),
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            Value::Array(cells(&printers::STORAGE_CLASS, &sc)),
            json!([
                "local-path (default)",
                "rancher.io/local-path",
                "Delete",
                "WaitForFirstConsumer",
                false,
                "5m"
            ])
        );
        let sc = json!({"metadata": {"name": "fast"}, "provisioner": "kubernetes.io/nfs",
            "reclaimPolicy": "Retain", "allowVolumeExpansion": true});
        assert_eq!(
            Value::Array(cells(&printers::STORAGE_CLASS, &sc)),
            json!([
                "fast",
                "kubernetes.io/nfs",
                "Retain",
                "Immediate",
                true,
                "<unknown>"
            ])
        );
    }

    #[test]
    fn only_the_newest_default_class_is_marked_in_a_list() {
        let class = |n: &str, secs: i64| {
            json!({"metadata": {"name": n, "creationTimestamp": ago(secs),
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "p"})
        };
        let (old, new, plain) = (
            class("old", 600),
            class("new", 60),
            json!({"metadata": {"name": "plain"}}),
        );
        let printer = super::super::Printer::Builtin(&printers::STORAGE_CLASS);
        let t = super::super::table(
            &printer,
            [&old, &new, &plain],
            "1",
            None,
            None,
            super::super::testutil::now(),
        );
        let names: Vec<&Value> = (0..3).map(|i| &t["rows"][i]["cells"][0]).collect();
        assert_eq!(
            names,
            [&json!("old"), &json!("new (default)"), &json!("plain")]
        );
        let single = super::super::table(
            &printer,
            [&old],
            "1",
            None,
            None,
            super::super::testutil::now(),
        );
        assert_eq!(single["rows"][0]["cells"][0], "old (default)");
    }
}
