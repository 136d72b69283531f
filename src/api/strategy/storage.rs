//! storage.k8s.io kinds beside StorageClass: CSIDrivers, CSINodes, CSIStorageCapacities,
//! VolumeAttachments and VolumeAttributesClasses, with upstream's defaults (a CSIDriver
//! needs attaching and is persistent-only unless it says otherwise), the fields that are
//! required, and the fields an update may not change.
//!
//! Invariant: defaulting only fills unset fields; the attachment source, attacher and node
//! of a VolumeAttachment, a CSIDriver's behaviour flags and a VolumeAttributesClass's
//! driver and parameters never change after creation.

use super::{immutable, Printing, Strategy};
use crate::api::defaults::json::{default_str, default_value, ensure_obj};
use crate::api::table::printers;
use crate::api::validation::strings::is_dns1123_subdomain;
use crate::api::validation::FieldError;
use serde_json::{json, Map, Value};

pub static CSI_DRIVER: Strategy = Strategy {
    kind: "CSIDriver",
    defaults: csi_driver_defaults,
    validate: validate_csi_driver,
    validate_update: csi_driver_update,
    printer: Printing::Builtin(&printers::CSI_DRIVER),
    ..Strategy::GENERIC
};

pub static CSI_NODE: Strategy = Strategy {
    kind: "CSINode",
    validate: validate_csi_node,
    printer: Printing::Builtin(&printers::CSI_NODE),
    ..Strategy::GENERIC
};

pub static CSI_STORAGE_CAPACITY: Strategy = Strategy {
    kind: "CSIStorageCapacity",
    validate: validate_capacity,
    validate_update: capacity_update,
    printer: Printing::Builtin(&printers::CSI_STORAGE_CAPACITY),
    ..Strategy::GENERIC
};

pub static VOLUME_ATTACHMENT: Strategy = Strategy {
    kind: "VolumeAttachment",
    validate: validate_attachment,
    validate_update: attachment_update,
    printer: Printing::Builtin(&printers::VOLUME_ATTACHMENT),
    ..Strategy::GENERIC
};

pub static VOLUME_ATTRIBUTES_CLASS: Strategy = Strategy {
    kind: "VolumeAttributesClass",
    validate: validate_attributes_class,
    validate_update: attributes_class_update,
    printer: Printing::Builtin(&printers::VOLUME_ATTRIBUTES_CLASS),
    ..Strategy::GENERIC
};

/// Upstream's `SetDefaults_CSIDriver` with the v1.35 default feature gates
/// (SELinuxMountReadWriteOncePod on, VolumeLimitScaling off).
fn csi_driver_defaults(o: &mut Map<String, Value>) {
    let Some(spec) = ensure_obj(o, "spec") else {
        return;
    };
    default_value(spec, "attachRequired", json!(true));
    default_value(spec, "podInfoOnMount", json!(false));
    default_value(spec, "storageCapacity", json!(false));
    default_str(spec, "fsGroupPolicy", "ReadWriteOnceWithFSType");
    if spec
        .get("volumeLifecycleModes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert("volumeLifecycleModes".into(), json!(["Persistent"]));
    }
    default_value(spec, "requiresRepublish", json!(false));
    default_value(spec, "seLinuxMount", json!(false));
}

/// CSI driver names: a DNS subdomain of at most 63 characters.
fn driver_name(field: &str, name: &str, errs: &mut Vec<FieldError>) {
    if name.is_empty() {
        errs.push(FieldError::required(field, ""));
        return;
    }
    if name.len() > 63 {
        errs.push(FieldError::too_long(field, 63));
    }
    for msg in is_dns1123_subdomain(&name.to_lowercase()) {
        errs.push(FieldError::invalid(field, name, &msg));
    }
}

fn validate_csi_driver(d: &Value, errs: &mut Vec<FieldError>) {
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    driver_name("name", name, errs);
    let spec = &d["spec"];
    if let Some(p) = spec["fsGroupPolicy"].as_str() {
        let ok = ["File", "None", "ReadWriteOnceWithFSType"];
        if !ok.contains(&p) {
            errs.push(FieldError::not_supported("spec.fsGroupPolicy", p, &ok));
        }
    }
    for (i, m) in spec["volumeLifecycleModes"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let m = m.as_str().unwrap_or_default();
        if !matches!(m, "Persistent" | "Ephemeral") {
            errs.push(FieldError::not_supported(
                &format!("spec.volumeLifecycleModes[{i}]"),
                m,
                &["Ephemeral", "Persistent"],
            ));
        }
    }
}

fn csi_driver_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    for f in ["attachRequired", "podInfoOnMount", "volumeLifecycleModes"] {
        if old["spec"][f] != new["spec"][f] {
            errs.push(immutable(
                &format!("spec.{f}"),
                &new["spec"][f],
                "field is immutable",
            ));
        }
    }
}

fn validate_csi_node(n: &Value, errs: &mut Vec<FieldError>) {
    let mut seen = Vec::new();
    for (i, d) in n["spec"]["drivers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = d["name"].as_str().unwrap_or_default();
        driver_name(&format!("spec.drivers[{i}].name"), name, errs);
        if d["nodeID"].as_str().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(
                &format!("spec.drivers[{i}].nodeID"),
                "nodeID must be provided",
            ));
        }
        if seen.contains(&name) {
            errs.push(FieldError::duplicate(
                &format!("spec.drivers[{i}].name"),
                name,
            ));
        }
        seen.push(name);
    }
}

fn validate_capacity(c: &Value, errs: &mut Vec<FieldError>) {
    let sc = c["storageClassName"].as_str().unwrap_or_default();
    if sc.is_empty() {
        errs.push(FieldError::required("storageClassName", ""));
    } else {
        for msg in is_dns1123_subdomain(sc) {
            errs.push(FieldError::invalid("storageClassName", sc, &msg));
        }
    }
}

fn capacity_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    for f in ["storageClassName", "nodeTopology"] {
        if old[f] != new[f] {
            errs.push(immutable(f, &new[f], "field is immutable"));
        }
    }
}

fn validate_attachment(va: &Value, errs: &mut Vec<FieldError>) {
    let spec = &va["spec"];
    let attacher = spec["attacher"].as_str().unwrap_or_default();
    if attacher.is_empty() {
        errs.push(FieldError::required("spec.attacher", ""));
    } else {
        driver_name("spec.attacher", attacher, errs);
    }
    let node = spec["nodeName"].as_str().unwrap_or_default();
    if node.is_empty() {
        errs.push(FieldError::required("spec.nodeName", ""));
    }
    let src = &spec["source"];
    let pv = src["persistentVolumeName"].as_str().is_some();
    let inline = src.get("inlineVolumeSpec").is_some_and(|v| !v.is_null());
    if pv == inline {
        errs.push(FieldError::required(
            "spec.source",
            "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
        ));
    }
}

fn attachment_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if old["spec"] != new["spec"] {
        errs.push(immutable("spec", &new["spec"], "field is immutable"));
    }
}

fn validate_attributes_class(c: &Value, errs: &mut Vec<FieldError>) {
    let driver = c["driverName"].as_str().unwrap_or_default();
    driver_name("driverName", driver, errs);
}

fn attributes_class_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if old["driverName"] != new["driverName"] {
        errs.push(immutable(
            "driverName",
            &new["driverName"],
            "field is immutable",
        ));
    }
    if old["parameters"] != new["parameters"] {
        errs.push(FieldError::forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csi_driver_defaults_match_upstream() {
        let mut d = json!({"metadata": {"name": "csi.example.com"}});
        CSI_DRIVER.apply_defaults(&mut d);
        assert_eq!(
            d["spec"],
            json!({"attachRequired": true, "podInfoOnMount": false, "storageCapacity": false,
                   "fsGroupPolicy": "ReadWriteOnceWithFSType", "volumeLifecycleModes": ["Persistent"],
                   "requiresRepublish": false, "seLinuxMount": false})
        );
        assert!(CSI_DRIVER.validate_create(&d, false).is_empty());
    }

    #[test]
    fn volume_attachment_needs_attacher_node_and_one_source() {
        let va = json!({"metadata": {"name": "va"}, "spec": {"source": {}}});
        let errs: Vec<String> = VOLUME_ATTACHMENT
            .validate_create(&va, false)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs, vec![
            "spec.attacher: Required value",
            "spec.nodeName: Required value",
            "spec.source: Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName",
        ]);
    }
}
