//! scheduling.k8s.io PriorityClasses and node.k8s.io RuntimeClasses: upstream's defaults
//! (`preemptionPolicy: PreemptLowerPriority`), the reserved `system-` names and priority
//! range, and their immutable fields. The two system classes are written at start by the
//! API server (`apiserver::lifecycle`), from [`SYSTEM_PRIORITY_CLASSES`].
//!
//! Invariant: a class whose name starts with `system-` is one of the known system classes
//! with exactly their value and globalDefault; any other class has a value of at most
//! [`HIGHEST_USER_DEFINABLE_PRIORITY`].

use super::{immutable, Printing, Strategy};
use crate::api::defaults::json::default_str;
use crate::api::table::printers;
use crate::api::validation::strings::is_dns1123_label;
use crate::api::validation::FieldError;
use serde_json::{Map, Value};

/// Priorities above this are reserved for the system classes.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
const SYSTEM_PREFIX: &str = "system-";
const SYSTEM_CRITICAL: i64 = 2 * HIGHEST_USER_DEFINABLE_PRIORITY;

/// A system PriorityClass: name, value, description (upstream's scheduling bootstrap).
pub struct SystemPriorityClass {
    pub name: &'static str,
    pub value: i64,
    pub description: &'static str,
}

/// Upstream's system classes, created at every start when absent.
pub const SYSTEM_PRIORITY_CLASSES: &[SystemPriorityClass] = &[
    SystemPriorityClass {
        name: "system-node-critical",
        value: SYSTEM_CRITICAL + 1000,
        description: "Used for system critical pods that must not be moved from their current node.",
    },
    SystemPriorityClass {
        name: "system-cluster-critical",
        value: SYSTEM_CRITICAL,
        description: "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    },
];

pub static PRIORITY_CLASS: Strategy = Strategy {
    kind: "PriorityClass",
    defaults: priority_class_defaults,
    validate: validate_priority_class,
    validate_update: priority_class_update,
    printer: Printing::Builtin(&printers::PRIORITY_CLASS),
    ..Strategy::GENERIC
};

pub static RUNTIME_CLASS: Strategy = Strategy {
    kind: "RuntimeClass",
    validate: validate_runtime_class,
    validate_update: runtime_class_update,
    printer: Printing::Builtin(&printers::RUNTIME_CLASS),
    ..Strategy::GENERIC
};

fn priority_class_defaults(o: &mut Map<String, Value>) {
    default_str(o, "preemptionPolicy", "PreemptLowerPriority");
}

/// Upstream's `IsKnownSystemPriorityClass`: `Err` says why not.
fn known_system_class(name: &str, value: i64, global_default: bool) -> Result<(), String> {
    let Some(spc) = SYSTEM_PRIORITY_CLASSES.iter().find(|c| c.name == name) else {
        return Err(format!("{name} is not a known system priority class"));
    };
    if spc.value != value {
        return Err(format!(
            "value of {} PriorityClass must be {}",
            spc.name, spc.value
        ));
    }
    if global_default {
        return Err(format!(
            "globalDefault of {} PriorityClass must be false",
            spc.name
        ));
    }
    Ok(())
}

fn validate_priority_class(pc: &Value, errs: &mut Vec<FieldError>) {
    let name = pc["metadata"]["name"].as_str().unwrap_or_default();
    let value = pc["value"].as_i64().unwrap_or(0);
    if name.starts_with(SYSTEM_PREFIX) {
        let global = pc["globalDefault"].as_bool().unwrap_or(false);
        if let Err(e) = known_system_class(name, value, global) {
            errs.push(FieldError::forbidden(
                "metadata.name",
                &format!("priority class names with '{SYSTEM_PREFIX}' prefix are reserved for system use only. error: {e}"),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(FieldError::forbidden(
            "value",
            &format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
            ),
        ));
    }
    if let Some(p) = pc["preemptionPolicy"].as_str() {
        if !matches!(p, "Never" | "PreemptLowerPriority") {
            errs.push(FieldError::not_supported(
                "preemptionPolicy",
                p,
                &["Never", "PreemptLowerPriority"],
            ));
        }
    }
}

fn priority_class_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if old["value"] != new["value"] {
        errs.push(FieldError::forbidden(
            "value",
            "may not be changed in an update.",
        ));
    }
    if old["preemptionPolicy"] != new["preemptionPolicy"] {
        errs.push(immutable(
            "preemptionPolicy",
            &new["preemptionPolicy"],
            "field is immutable",
        ));
    }
}

fn validate_runtime_class(rc: &Value, errs: &mut Vec<FieldError>) {
    let handler = rc["handler"].as_str().unwrap_or_default();
    if handler.is_empty() {
        errs.push(FieldError::required("handler", ""));
    } else {
        for msg in is_dns1123_label(handler) {
            errs.push(FieldError::invalid("handler", handler, &msg));
        }
    }
}

fn runtime_class_update(old: &Value, new: &Value, errs: &mut Vec<FieldError>) {
    if old["handler"] != new["handler"] {
        errs.push(immutable("handler", &new["handler"], "field is immutable"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(pc: Value) -> Vec<String> {
        let mut pc = pc;
        PRIORITY_CLASS.apply_defaults(&mut pc);
        PRIORITY_CLASS
            .validate_create(&pc, false)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn user_classes_may_not_use_the_system_prefix_or_range() {
        let errs = check(json!({"metadata": {"name": "system-mine"}, "value": 10}));
        assert_eq!(errs, vec!["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"]);
        let errs = check(json!({"metadata": {"name": "huge"}, "value": 1_000_000_001}));
        assert_eq!(
            errs,
            vec![
                "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
            ]
        );
        assert!(check(json!({"metadata": {"name": "high"}, "value": 1_000_000_000})).is_empty());
    }

    #[test]
    fn system_classes_validate_with_their_exact_values() {
        for spc in SYSTEM_PRIORITY_CLASSES {
            assert!(check(json!({"metadata": {"name": spc.name}, "value": spc.value})).is_empty());
        }
        let errs = check(json!({"metadata": {"name": "system-node-critical"}, "value": 5}));
        assert!(errs[0].contains("value of system-node-critical PriorityClass must be 2000001000"));
    }

    #[test]
    fn preemption_policy_defaults_and_value_is_immutable() {
        let mut pc = json!({"metadata": {"name": "a"}, "value": 1});
        PRIORITY_CLASS.apply_defaults(&mut pc);
        assert_eq!(pc["preemptionPolicy"], "PreemptLowerPriority");
        let mut new = pc.clone();
        new["value"] = json!(2);
        let errs = PRIORITY_CLASS.validate_update(None, &pc, &new);
        assert_eq!(
            errs[0].to_string(),
            "value: Forbidden: may not be changed in an update."
        );
    }

    #[test]
    fn runtime_class_needs_a_dns_label_handler() {
        let errs = RUNTIME_CLASS.validate_create(&json!({"metadata": {"name": "r"}}), false);
        assert_eq!(errs[0].to_string(), "handler: Required value");
        let errs = RUNTIME_CLASS.validate_create(
            &json!({"metadata": {"name": "r"}, "handler": "Bad_H"}),
            false,
        );
        assert_eq!(errs[0].field, "handler");
    }
}
