//! storage.k8s.io CSI printers: CSIDriver, CSINode, CSIStorageCapacity, VolumeAttachment
//! and VolumeAttributesClass.
//!
//! Invariant: unset optional booleans print as upstream's defaults (a CSIDriver needs
//! attaching unless it says otherwise).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::since;
use super::fields::{bool_at, created, get, list_at, name, quantity, s, str_at};
use super::{col, no_conditions, Spec, AGE, NAME};

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    s(since(created(obj), now))
}

fn flag(obj: &Value, path: &[&str], unset: bool) -> Value {
    Value::Bool(get(obj, path).and_then(Value::as_bool).unwrap_or(unset))
}

pub static CSI_DRIVER: Spec = Spec {
    columns: &[
        NAME,
        col(
            "AttachRequired",
            "boolean",
            "Whether the driver needs an attach step.",
        ),
        col(
            "PodInfoOnMount",
            "boolean",
            "Whether pod information is passed on mount.",
        ),
        col(
            "StorageCapacity",
            "boolean",
            "Whether the scheduler considers storage capacity.",
        ),
        col(
            "TokenRequests",
            "string",
            "Audiences of service account tokens the driver receives.",
        ),
        col(
            "RequiresRepublish",
            "boolean",
            "Whether NodePublishVolume is called periodically.",
        ),
        col(
            "Modes",
            "string",
            "Volume lifecycle modes the driver supports.",
        ),
        AGE,
    ],
    cells: |d, now| {
        let tokens = match get(d, &["spec", "tokenRequests"]).and_then(Value::as_array) {
            None => "<unset>".to_owned(),
            Some(t) => t
                .iter()
                .map(|r| r["audience"].as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(","),
        };
        let modes: Vec<&str> = list_at(d, &["spec", "volumeLifecycleModes"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let modes = if modes.is_empty() {
            "<none>".to_owned()
        } else {
            modes.join(",")
        };
        vec![
            s(name(d)),
            flag(d, &["spec", "attachRequired"], true),
            flag(d, &["spec", "podInfoOnMount"], false),
            flag(d, &["spec", "storageCapacity"], false),
            s(tokens),
            flag(d, &["spec", "requiresRepublish"], false),
            s(modes),
            age(d, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static CSI_NODE: Spec = Spec {
    columns: &[
        NAME,
        col(
            "Drivers",
            "integer",
            "Drivers indicates the number of CSI drivers registered on the node",
        ),
        AGE,
    ],
    cells: |n, now| {
        vec![
            s(name(n)),
            Value::from(list_at(n, &["spec", "drivers"]).len() as i64),
            age(n, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static CSI_STORAGE_CAPACITY: Spec = Spec {
    columns: &[
        NAME,
        col(
            "StorageClassName",
            "string",
            "Storage class the capacity applies to.",
        ),
        col("Capacity", "string", "Capacity reported by the driver."),
    ],
    cells: |c, _| {
        vec![
            s(name(c)),
            s(str_at(c, &["storageClassName"])),
            s(quantity(get(c, &["capacity"])).unwrap_or_else(|| "<unset>".into())),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static VOLUME_ATTACHMENT: Spec = Spec {
    columns: &[
        NAME,
        super::Col {
            name: "Attacher",
            ty: "string",
            format: "name",
            description: "Name of the volume driver that handles the attachment.",
            priority: 0,
        },
        col("PV", "string", "Persistent volume being attached."),
        col("Node", "string", "Node the volume is attached to."),
        col(
            "Attached",
            "boolean",
            "Whether the attach operation succeeded.",
        ),
        AGE,
    ],
    cells: |va, now| {
        vec![
            s(name(va)),
            s(str_at(va, &["spec", "attacher"])),
            s(str_at(va, &["spec", "source", "persistentVolumeName"])),
            s(str_at(va, &["spec", "nodeName"])),
            Value::Bool(bool_at(va, &["status", "attached"])),
            age(va, now),
        ]
    },
    conditions: no_conditions,
    list: None,
};

pub static VOLUME_ATTRIBUTES_CLASS: Spec = Spec {
    columns: &[
        NAME,
        col(
            "DriverName",
            "string",
            "Name of the CSI driver the class applies to.",
        ),
        AGE,
    ],
    cells: |c, now| vec![s(name(c)), s(str_at(c, &["driverName"])), age(c, now)],
    conditions: no_conditions,
    list: None,
};

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::cells;
    use serde_json::{json, Value};

    #[test]
    fn csi_driver_prints_defaults_for_unset_flags() {
        let d = json!({"metadata": {"name": "csi.example.com"}, "spec": {}});
        assert_eq!(
            Value::Array(cells(&printers::CSI_DRIVER, &d)),
            json!([
                "csi.example.com",
                true,
                false,
                false,
                "<unset>",
                false,
                "<none>",
                "<unknown>"
            ])
        );
    }

    #[test]
    fn attachment_and_capacity_rows() {
        let va = json!({"metadata": {"name": "va"}, "spec": {"attacher": "csi.example.com",
            "source": {"persistentVolumeName": "pv1"}, "nodeName": "n1"}, "status": {"attached": true}});
        assert_eq!(
            Value::Array(cells(&printers::VOLUME_ATTACHMENT, &va)),
            json!(["va", "csi.example.com", "pv1", "n1", true, "<unknown>"])
        );
        let cap = json!({"metadata": {"name": "c"}, "storageClassName": "fast"});
        assert_eq!(
            Value::Array(cells(&printers::CSI_STORAGE_CAPACITY, &cap)),
            json!(["c", "fast", "<unset>"])
        );
    }
}
