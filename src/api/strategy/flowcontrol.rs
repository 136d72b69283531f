//! flowcontrol.apiserver.k8s.io FlowSchemas and PriorityLevelConfigurations: served and
//! stored with upstream's defaults and essential validation, and upstream's mandatory
//! objects (`exempt`, `catch-all`) restored by the API server at every start
//! ([`mandatory_objects`]; the suggested ones are not created). This server does not classify or queue requests by them (no API
//! Priority and Fairness enforcement): they are data for clients that read or manage them.
//!
//! Invariant: defaulting only fills unset fields.

use super::{Printing, Strategy};
use crate::api::defaults::json::{default_int_nonzero, default_value, ensure_obj, obj_mut};
use crate::api::table::printers;
use crate::api::validation::FieldError;
use serde_json::{json, Map, Value};

/// Annotation that says whether the server keeps a bootstrap object's spec; set to
/// `"true"` on the mandatory objects, whose spec is always restored.
pub const AUTO_UPDATE_ANNOTATION: &str = "apf.kubernetes.io/autoupdate-spec";

pub static FLOW_SCHEMA: Strategy = Strategy {
    kind: "FlowSchema",
    defaults: flow_schema_defaults,
    validate: validate_flow_schema,
    printer: Printing::Builtin(&printers::FLOW_SCHEMA),
    ..Strategy::GENERIC
};

pub static PRIORITY_LEVEL_CONFIGURATION: Strategy = Strategy {
    kind: "PriorityLevelConfiguration",
    defaults: priority_level_defaults,
    validate: validate_priority_level,
    printer: Printing::Builtin(&printers::PRIORITY_LEVEL_CONFIGURATION),
    ..Strategy::GENERIC
};

fn flow_schema_defaults(o: &mut Map<String, Value>) {
    if let Some(spec) = ensure_obj(o, "spec") {
        default_int_nonzero(spec, "matchingPrecedence", 1000);
    }
}

fn priority_level_defaults(o: &mut Map<String, Value>) {
    let Some(spec) = ensure_obj(o, "spec") else {
        return;
    };
    if let Some(e) = obj_mut(spec, "exempt") {
        default_value(e, "nominalConcurrencyShares", json!(0));
        default_value(e, "lendablePercent", json!(0));
    }
    if let Some(l) = obj_mut(spec, "limited") {
        default_value(l, "nominalConcurrencyShares", json!(30));
        default_value(l, "lendablePercent", json!(0));
        if let Some(q) = obj_mut(l, "limitResponse").and_then(|r| obj_mut(r, "queuing")) {
            default_int_nonzero(q, "handSize", 8);
            default_int_nonzero(q, "queues", 64);
            default_int_nonzero(q, "queueLengthLimit", 50);
        }
    }
}

fn validate_flow_schema(fs: &Value, errs: &mut Vec<FieldError>) {
    let spec = &fs["spec"];
    if spec["priorityLevelConfiguration"]["name"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        errs.push(FieldError::required(
            "spec.priorityLevelConfiguration.name",
            "must reference a priority level",
        ));
    }
    let p = spec["matchingPrecedence"].as_i64().unwrap_or(0);
    if p > 10000 {
        errs.push(FieldError::invalid(
            "spec.matchingPrecedence",
            p,
            "must not be greater than 10000",
        ));
    }
    if let Some(t) = spec["distinguisherMethod"]["type"].as_str() {
        if !matches!(t, "ByNamespace" | "ByUser") {
            errs.push(FieldError::not_supported(
                "spec.distinguisherMethod.type",
                t,
                &["ByNamespace", "ByUser"],
            ));
        }
    }
}

fn validate_priority_level(pl: &Value, errs: &mut Vec<FieldError>) {
    let spec = &pl["spec"];
    let has = |k: &str| spec.get(k).is_some_and(|v| !v.is_null());
    match spec["type"].as_str().unwrap_or_default() {
        "Exempt" => {
            if has("limited") {
                errs.push(FieldError::forbidden(
                    "spec.limited",
                    "must be nil if the type is not Limited",
                ));
            }
        }
        "Limited" => {
            if !has("limited") {
                errs.push(FieldError::required(
                    "spec.limited",
                    "must not be empty when type is Limited",
                ));
            }
            if has("exempt") {
                errs.push(FieldError::forbidden(
                    "spec.exempt",
                    "must be nil if the type is Limited",
                ));
            }
        }
        "" => errs.push(FieldError::required("spec.type", "")),
        other => errs.push(FieldError::not_supported(
            "spec.type",
            other,
            &["Exempt", "Limited"],
        )),
    }
}

/// Upstream's mandatory configuration: `(PriorityLevelConfigurations, FlowSchemas)`, in the
/// shape `apf_bootstrap` writes them (annotated for automatic update).
pub fn mandatory_objects() -> (Vec<Value>, Vec<Value>) {
    const AV: &str = "flowcontrol.apiserver.k8s.io/v1";
    let meta = |name: &str| json!({"name": name, "annotations": {AUTO_UPDATE_ANNOTATION: "true"}});
    let everything = json!([{
        "subjects": [],
        "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                           "namespaces": ["*"], "clusterScope": true}],
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
    }]);
    let with_groups = |groups: &[&str]| {
        let mut rules = everything.clone();
        rules[0]["subjects"] = groups
            .iter()
            .map(|g| json!({"kind": "Group", "group": {"name": g}}))
            .collect();
        rules
    };
    let levels = vec![
        json!({"apiVersion": AV, "kind": "PriorityLevelConfiguration", "metadata": meta("exempt"),
               "spec": {"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}}),
        json!({"apiVersion": AV, "kind": "PriorityLevelConfiguration", "metadata": meta("catch-all"),
               "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 5, "lendablePercent": 0,
                        "limitResponse": {"type": "Reject"}}}}),
    ];
    let schemas = vec![
        json!({"apiVersion": AV, "kind": "FlowSchema", "metadata": meta("exempt"),
               "spec": {"priorityLevelConfiguration": {"name": "exempt"}, "matchingPrecedence": 1,
                        "rules": with_groups(&["system:masters"])}}),
        json!({"apiVersion": AV, "kind": "FlowSchema", "metadata": meta("catch-all"),
               "spec": {"priorityLevelConfiguration": {"name": "catch-all"}, "matchingPrecedence": 10000,
                        "distinguisherMethod": {"type": "ByUser"},
                        "rules": with_groups(&["system:unauthenticated", "system:authenticated"])}}),
    ];
    (levels, schemas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mandatory_objects_are_valid_after_defaulting() {
        let (levels, schemas) = mandatory_objects();
        for mut pl in levels {
            PRIORITY_LEVEL_CONFIGURATION.apply_defaults(&mut pl);
            assert!(
                PRIORITY_LEVEL_CONFIGURATION
                    .validate_create(&pl, false)
                    .is_empty(),
                "{pl}"
            );
        }
        for mut fs in schemas {
            FLOW_SCHEMA.apply_defaults(&mut fs);
            assert!(FLOW_SCHEMA.validate_create(&fs, false).is_empty(), "{fs}");
        }
    }

    #[test]
    fn queuing_defaults_fill_zero_values() {
        let mut pl = json!({"metadata": {"name": "p"}, "spec": {"type": "Limited",
            "limited": {"limitResponse": {"type": "Queue", "queuing": {}}}}});
        PRIORITY_LEVEL_CONFIGURATION.apply_defaults(&mut pl);
        let l = &pl["spec"]["limited"];
        assert_eq!(l["nominalConcurrencyShares"], 30);
        assert_eq!(
            l["limitResponse"]["queuing"],
            json!({"handSize": 8, "queues": 64, "queueLengthLimit": 50})
        );
    }
}
