//! admissionregistration.k8s.io: Mutating/ValidatingWebhookConfigurations,
//! ValidatingAdmissionPolicies and their bindings, with upstream's defaults (failurePolicy
//! Fail, matchPolicy Equivalent, empty selectors, timeoutSeconds 10, reinvocationPolicy
//! Never, rule scope `*`, service port 443) and the essentials of upstream's validation.
//!
//! These objects are stored and served here; calling webhooks is the admission chain's job.
//! ValidatingAdmissionPolicies are not evaluated by this server yet, and each one says so in
//! its status: a condition of type `TypeChecked` with status `False` and reason
//! [`CEL_NOT_EVALUATED`] is set when the policy is created (upstream's type checker would
//! fill `status.typeChecking` instead).
//!
//! Invariant: defaulting only fills unset fields.

use super::{Printing, Strategy};
use crate::api::defaults::json::{default_str, default_value, each_obj, ensure_obj, obj_mut};
use crate::api::table::printers;
use crate::api::validation::strings::{is_dns1035_label, is_dns1123_subdomain};
use crate::api::validation::FieldError;
use serde_json::{json, Map, Value};

/// Reason of the `TypeChecked` condition every ValidatingAdmissionPolicy carries here.
pub const CEL_NOT_EVALUATED: &str = "CELNotEvaluated";

pub static VALIDATING_WEBHOOK_CONFIGURATION: Strategy = Strategy {
    kind: "ValidatingWebhookConfiguration",
    defaults: validating_webhooks_defaults,
    validate: validate_validating_webhooks,
    printer: Printing::Builtin(&printers::WEBHOOKS),
    ..Strategy::GENERIC
};

pub static MUTATING_WEBHOOK_CONFIGURATION: Strategy = Strategy {
    kind: "MutatingWebhookConfiguration",
    defaults: mutating_webhooks_defaults,
    validate: validate_mutating_webhooks,
    printer: Printing::Builtin(&printers::WEBHOOKS),
    ..Strategy::GENERIC
};

pub static VALIDATING_ADMISSION_POLICY: Strategy = Strategy {
    kind: "ValidatingAdmissionPolicy",
    defaults: policy_defaults,
    validate: validate_policy,
    initial_status: policy_initial_status,
    printer: Printing::Builtin(&printers::VALIDATING_ADMISSION_POLICY),
    ..Strategy::GENERIC
};

pub static VALIDATING_ADMISSION_POLICY_BINDING: Strategy = Strategy {
    kind: "ValidatingAdmissionPolicyBinding",
    defaults: binding_defaults,
    validate: validate_binding,
    printer: Printing::Builtin(&printers::VALIDATING_ADMISSION_POLICY_BINDING),
    ..Strategy::GENERIC
};

fn rule_defaults(rule: &mut Map<String, Value>) {
    default_str(rule, "scope", "*");
}

fn webhook_defaults(hook: &mut Map<String, Value>, mutating: bool) {
    default_str(hook, "failurePolicy", "Fail");
    default_str(hook, "matchPolicy", "Equivalent");
    default_value(hook, "namespaceSelector", json!({}));
    default_value(hook, "objectSelector", json!({}));
    default_value(hook, "timeoutSeconds", json!(10));
    if mutating {
        default_str(hook, "reinvocationPolicy", "Never");
    }
    each_obj(hook, "rules", rule_defaults);
    if let Some(svc) = obj_mut(hook, "clientConfig").and_then(|c| obj_mut(c, "service")) {
        default_value(svc, "port", json!(443));
    }
}

fn validating_webhooks_defaults(o: &mut Map<String, Value>) {
    each_obj(o, "webhooks", |h| webhook_defaults(h, false));
}

fn mutating_webhooks_defaults(o: &mut Map<String, Value>) {
    each_obj(o, "webhooks", |h| webhook_defaults(h, true));
}

fn match_resources_defaults(m: &mut Map<String, Value>) {
    default_str(m, "matchPolicy", "Equivalent");
    default_value(m, "namespaceSelector", json!({}));
    default_value(m, "objectSelector", json!({}));
    each_obj(m, "resourceRules", rule_defaults);
    each_obj(m, "excludeResourceRules", rule_defaults);
}

fn policy_defaults(o: &mut Map<String, Value>) {
    if let Some(spec) = ensure_obj(o, "spec") {
        default_str(spec, "failurePolicy", "Fail");
        if let Some(m) = obj_mut(spec, "matchConstraints") {
            match_resources_defaults(m);
        }
    }
}

fn binding_defaults(o: &mut Map<String, Value>) {
    if let Some(spec) = obj_mut(o, "spec") {
        if let Some(m) = obj_mut(spec, "matchResources") {
            match_resources_defaults(m);
        }
        if let Some(p) = obj_mut(spec, "paramRef") {
            default_str(p, "parameterNotFoundAction", "Deny");
        }
    }
}

fn policy_initial_status(policy: &mut Value) {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    policy["status"] = json!({
        "observedGeneration": policy["metadata"]["generation"].as_i64().unwrap_or(1),
        "conditions": [{
            "type": "TypeChecked",
            "status": "False",
            "reason": CEL_NOT_EVALUATED,
            "message": "this server stores ValidatingAdmissionPolicies but does not type-check or evaluate CEL expressions yet: the policy is not enforced",
            "lastTransitionTime": now,
            "observedGeneration": policy["metadata"]["generation"].as_i64().unwrap_or(1),
        }],
    });
}

/// Upstream's `IsFullyQualifiedName` (webhook names).
fn fully_qualified_name(field: &str, name: &str, errs: &mut Vec<FieldError>) {
    if name.is_empty() {
        errs.push(FieldError::required(field, ""));
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let bad = is_dns1123_subdomain(name);
    if !bad.is_empty() {
        errs.push(FieldError::invalid(field, name, &bad.join(",")));
        return;
    }
    if name.split('.').count() < 3 {
        errs.push(FieldError::invalid(
            field,
            name,
            "should be a domain with at least three segments separated by dots",
        ));
    }
}

fn not_supported(path: &str, v: &Value, allowed: &[&str], errs: &mut Vec<FieldError>) {
    if let Some(s) = v.as_str() {
        if !allowed.contains(&s) {
            errs.push(FieldError::not_supported(path, s, allowed));
        }
    }
}

fn validate_client_config(path: &str, cc: &Value, errs: &mut Vec<FieldError>) {
    let (url, svc) = (
        cc.get("url").filter(|v| !v.is_null()),
        cc.get("service").filter(|v| !v.is_null()),
    );
    match (url, svc) {
        (Some(url), None) => {
            let u = url.as_str().unwrap_or_default();
            let field = format!("{path}.url");
            if u.contains('#') {
                errs.push(FieldError::invalid(
                    &field,
                    u,
                    "fragments are not permitted",
                ));
                return;
            }
            match u.parse::<http::Uri>() {
                Err(e) => errs.push(FieldError::invalid(
                    &field,
                    u,
                    &format!("url must be a valid URL: {e}"),
                )),
                Ok(parsed) => {
                    let scheme = parsed.scheme_str().unwrap_or_default();
                    if scheme != "https" {
                        errs.push(FieldError::invalid(
                            &field,
                            scheme,
                            "'https' is the only allowed URL scheme",
                        ));
                    }
                    if parsed.host().is_none_or(str::is_empty) {
                        errs.push(FieldError::invalid(&field, u, "host must be specified"));
                    }
                    if parsed.query().is_some() {
                        errs.push(FieldError::invalid(
                            &field,
                            u,
                            "query parameters are not permitted",
                        ));
                    }
                }
            }
        }
        (None, Some(svc)) => {
            let p = format!("{path}.service");
            if svc["name"].as_str().unwrap_or_default().is_empty() {
                errs.push(FieldError::required(
                    &format!("{p}.name"),
                    "service name is required",
                ));
            }
            if svc["namespace"].as_str().unwrap_or_default().is_empty() {
                errs.push(FieldError::required(
                    &format!("{p}.namespace"),
                    "service namespace is required",
                ));
            }
            if let Some(port) = svc["port"].as_i64() {
                if !(1..=65535).contains(&port) {
                    errs.push(FieldError::invalid(
                        &format!("{p}.port"),
                        port,
                        "port is not valid: must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
        _ => errs.push(FieldError::required(
            path,
            "exactly one of url or service is required",
        )),
    }
}

fn validate_webhooks(cfg: &Value, mutating: bool, errs: &mut Vec<FieldError>) {
    let hooks = cfg["webhooks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut names: Vec<&str> = Vec::new();
    for (i, hook) in hooks.iter().enumerate() {
        let p = format!("webhooks[{i}]");
        let name = hook["name"].as_str().unwrap_or_default();
        fully_qualified_name(&format!("{p}.name"), name, errs);
        for (j, rule) in hook["rules"].as_array().into_iter().flatten().enumerate() {
            if rule["operations"].as_array().is_none_or(Vec::is_empty) {
                errs.push(FieldError::required(
                    &format!("{p}.rules[{j}].operations"),
                    "",
                ));
            }
            for (field, what) in [
                ("apiGroups", "apiGroups"),
                ("apiVersions", "apiVersions"),
                ("resources", "resources"),
            ] {
                if rule[field].as_array().is_none_or(Vec::is_empty) {
                    errs.push(FieldError::required(&format!("{p}.rules[{j}].{what}"), ""));
                }
            }
            not_supported(
                &format!("{p}.rules[{j}].scope"),
                &rule["scope"],
                &["*", "Cluster", "Namespaced"],
                errs,
            );
        }
        not_supported(
            &format!("{p}.failurePolicy"),
            &hook["failurePolicy"],
            &["Fail", "Ignore"],
            errs,
        );
        not_supported(
            &format!("{p}.matchPolicy"),
            &hook["matchPolicy"],
            &["Equivalent", "Exact"],
            errs,
        );
        // New configurations may only declare webhooks without side effects.
        let side_effects: &[&str] = &["None", "NoneOnDryRun"];
        match hook.get("sideEffects").filter(|v| !v.is_null()) {
            None => errs.push(FieldError::required(
                &format!("{p}.sideEffects"),
                &format!("must specify one of {}", side_effects.join(", ")),
            )),
            Some(v) => not_supported(&format!("{p}.sideEffects"), v, side_effects, errs),
        }
        if let Some(t) = hook["timeoutSeconds"].as_i64() {
            if !(1..=30).contains(&t) {
                errs.push(FieldError::invalid(
                    &format!("{p}.timeoutSeconds"),
                    t,
                    "the timeout value must be between 1 and 30 seconds",
                ));
            }
        }
        if mutating {
            not_supported(
                &format!("{p}.reinvocationPolicy"),
                &hook["reinvocationPolicy"],
                &["IfNeeded", "Never"],
                errs,
            );
        }
        validate_client_config(&format!("{p}.clientConfig"), &hook["clientConfig"], errs);
        validate_review_versions(
            &format!("{p}.admissionReviewVersions"),
            &hook["admissionReviewVersions"],
            errs,
        );
        if !name.is_empty() {
            if names.contains(&name) {
                errs.push(FieldError::duplicate(&format!("{p}.name"), name));
            } else {
                names.push(name);
            }
        }
    }
}

/// AdmissionReview versions this server (and the prior release) understands.
const ACCEPTED_REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

fn validate_review_versions(path: &str, versions: &Value, errs: &mut Vec<FieldError>) {
    let list = versions.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        errs.push(FieldError::required(
            path,
            &format!(
                "must specify one of {}",
                ACCEPTED_REVIEW_VERSIONS.join(", ")
            ),
        ));
        return;
    }
    let mut seen = Vec::new();
    let mut accepted = false;
    for (i, v) in list.iter().enumerate() {
        let v = v.as_str().unwrap_or_default();
        if seen.contains(&v) {
            errs.push(FieldError::invalid(
                &format!("{path}[{i}]"),
                v,
                "duplicate version",
            ));
            continue;
        }
        seen.push(v);
        for msg in is_dns1035_label(v) {
            errs.push(FieldError::invalid(&format!("{path}[{i}]"), v, &msg));
        }
        accepted |= ACCEPTED_REVIEW_VERSIONS.contains(&v);
    }
    if !accepted {
        errs.push(FieldError::invalid(
            path,
            versions,
            &format!(
                "must include at least one of {}",
                ACCEPTED_REVIEW_VERSIONS.join(", ")
            ),
        ));
    }
}

fn validate_validating_webhooks(cfg: &Value, errs: &mut Vec<FieldError>) {
    validate_webhooks(cfg, false, errs);
}

fn validate_mutating_webhooks(cfg: &Value, errs: &mut Vec<FieldError>) {
    validate_webhooks(cfg, true, errs);
}

fn validate_policy(policy: &Value, errs: &mut Vec<FieldError>) {
    let spec = &policy["spec"];
    not_supported(
        "spec.failurePolicy",
        &spec["failurePolicy"],
        &["Fail", "Ignore"],
        errs,
    );
    match spec.get("matchConstraints").filter(|v| !v.is_null()) {
        None => errs.push(FieldError::required("spec.matchConstraints", "")),
        Some(m) => {
            if m["resourceRules"].as_array().is_none_or(Vec::is_empty) {
                errs.push(FieldError::required(
                    "spec.matchConstraints.resourceRules",
                    "",
                ));
            }
        }
    }
    let validations = spec["validations"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let audit = spec["auditAnnotations"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    if validations.is_empty() && audit == 0 {
        let msg = "validations or auditAnnotations must contain at least one item";
        errs.push(FieldError::required("spec.validations", msg));
        errs.push(FieldError::required("spec.auditAnnotations", msg));
    }
    for (i, v) in validations.iter().enumerate() {
        if v["expression"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            errs.push(FieldError::required(
                &format!("spec.validations[{i}].expression"),
                "expression is not specified",
            ));
        }
    }
}

fn validate_binding(binding: &Value, errs: &mut Vec<FieldError>) {
    let spec = &binding["spec"];
    if spec["policyName"].as_str().unwrap_or_default().is_empty() {
        errs.push(FieldError::required("spec.policyName", ""));
    }
    let actions = spec["validationActions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if actions.is_empty() {
        errs.push(FieldError::required(
            "spec.validationActions",
            "at least one validation action is required",
        ));
    }
    let mut seen = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        let a = a.as_str().unwrap_or_default();
        if seen.contains(&a) {
            errs.push(FieldError::duplicate(
                &format!("spec.validationActions[{i}]"),
                a,
            ));
        } else if !matches!(a, "Deny" | "Warn" | "Audit") {
            errs.push(FieldError::not_supported(
                &format!("spec.validationActions[{i}]"),
                a,
                &["Audit", "Deny", "Warn"],
            ));
        }
        seen.push(a);
    }
    if let Some(p) = spec.get("paramRef").filter(|v| !v.is_null()) {
        let has_name = p["name"].as_str().is_some_and(|n| !n.is_empty());
        if has_name == p.get("selector").is_some_and(|s| !s.is_null()) {
            errs.push(FieldError::required(
                "spec.paramRef",
                "one of name or selector must be specified",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook_config() -> Value {
        json!({"metadata": {"name": "cfg"}, "webhooks": [{
            "name": "check.example.com",
            "clientConfig": {"url": "https://127.0.0.1:9443/validate"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }]})
    }

    #[test]
    fn webhook_defaults_are_upstreams() {
        let mut cfg = webhook_config();
        MUTATING_WEBHOOK_CONFIGURATION.apply_defaults(&mut cfg);
        let h = &cfg["webhooks"][0];
        assert_eq!(h["failurePolicy"], "Fail");
        assert_eq!(h["matchPolicy"], "Equivalent");
        assert_eq!(h["namespaceSelector"], json!({}));
        assert_eq!(h["objectSelector"], json!({}));
        assert_eq!(h["timeoutSeconds"], 10);
        assert_eq!(h["reinvocationPolicy"], "Never");
        assert_eq!(h["rules"][0]["scope"], "*");
        let mut cfg = webhook_config();
        VALIDATING_WEBHOOK_CONFIGURATION.apply_defaults(&mut cfg);
        assert!(cfg["webhooks"][0].get("reinvocationPolicy").is_none());
        assert!(VALIDATING_WEBHOOK_CONFIGURATION
            .validate_create(&cfg, false)
            .is_empty());
    }

    #[test]
    fn webhooks_need_side_effects_review_versions_and_one_client() {
        let mut cfg = webhook_config();
        let h = cfg["webhooks"][0].as_object_mut().unwrap();
        h.remove("sideEffects");
        h.remove("admissionReviewVersions");
        h["clientConfig"] = json!({"url": "https://a.example.com/x",
            "service": {"name": "s", "namespace": "n"}});
        let first = cfg["webhooks"][0].clone();
        cfg["webhooks"].as_array_mut().unwrap().push(first);
        VALIDATING_WEBHOOK_CONFIGURATION.apply_defaults(&mut cfg);
        let errs: Vec<String> = VALIDATING_WEBHOOK_CONFIGURATION
            .validate_create(&cfg, false)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            errs.contains(
                &"webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun"
                    .to_string()
            ),
            "{errs:?}"
        );
        assert!(errs.contains(&"webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1".to_string()), "{errs:?}");
        assert!(errs.contains(&"webhooks[0].clientConfig: Required value: exactly one of url or service is required".to_string()), "{errs:?}");
        assert!(
            errs.contains(&"webhooks[1].name: Duplicate value: \"check.example.com\"".to_string()),
            "{errs:?}"
        );
    }

    #[test]
    fn policies_say_cel_is_not_evaluated() {
        let mut p = json!({"metadata": {"name": "p", "generation": 1}, "spec": {
            "matchConstraints": {"resourceRules": [{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}]},
            "validations": [{"expression": "object.spec.replicas <= 5"}]}});
        VALIDATING_ADMISSION_POLICY.apply_defaults(&mut p);
        (VALIDATING_ADMISSION_POLICY.initial_status)(&mut p);
        assert_eq!(p["spec"]["failurePolicy"], "Fail");
        assert_eq!(p["spec"]["matchConstraints"]["matchPolicy"], "Equivalent");
        assert_eq!(p["status"]["conditions"][0]["reason"], CEL_NOT_EVALUATED);
        assert!(VALIDATING_ADMISSION_POLICY
            .validate_create(&p, false)
            .is_empty());
        let errs = VALIDATING_ADMISSION_POLICY
            .validate_create(&json!({"metadata": {"name": "p"}, "spec": {}}), false);
        assert_eq!(errs[0].to_string(), "spec.matchConstraints: Required value");
    }
}
