//! ConfigMaps and Secrets: `immutable` data, the write-only `stringData` of Secrets merged
//! into `data`, and the Secret `type` default.

use super::{immutable, Printing, Strategy};
use crate::api::defaults::core_v1;
use crate::api::table::printers;
use crate::api::validation::core_v1::{validate_config_map, validate_secret};
use crate::api::validation::FieldError;
use serde_json::{json, Value};

pub static CONFIG_MAP: Strategy = Strategy {
    kind: "ConfigMap",
    validate: validate_config_map,
    validate_update: data_unchanged_when_immutable,
    printer: Printing::Builtin(&printers::CONFIG_MAP),
    ..Strategy::GENERIC
};

pub static SECRET: Strategy = Strategy {
    kind: "Secret",
    defaults: core_v1::secret,
    validate: validate_secret,
    validate_update: data_unchanged_when_immutable,
    prepare_for_create: merge_string_data,
    prepare_for_update: |_, new| merge_string_data(new),
    printer: Printing::Builtin(&printers::SECRET),
    ..Strategy::GENERIC
};

fn data_unchanged_when_immutable(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if old["immutable"] != json!(true) {
        return;
    }
    // Upstream reports the first changed field only.
    if let Some(f) = ["data", "binaryData", "immutable"]
        .into_iter()
        .find(|f| old.get(*f) != new.get(*f))
    {
        errs.push(immutable(
            f,
            new.get(f).unwrap_or(&Value::Null),
            "field is immutable when `immutable` is set",
        ));
    }
}

/// Secrets: `stringData` is write-only and merged into `data` (base64).
pub fn merge_string_data(obj: &mut Value) {
    use base64::Engine;
    let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    if let Value::Object(sd) = sd {
        if !obj["data"].is_object() {
            obj["data"] = json!({});
        }
        for (k, v) in sd {
            let s = v.as_str().unwrap_or_default();
            obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(s));
        }
    }
}
