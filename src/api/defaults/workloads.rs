//! Defaults of apps/v1 and batch/v1 workloads and their pod templates.
//!
//! Invariant: strategy sub-objects are only filled when the strategy type is (or defaults to)
//! the rolling one, as upstream does; an explicit `Recreate`/`OnDelete` stays bare.

use serde_json::{json, Map, Value};

use super::json::{default_str, default_value, ensure_obj, obj_mut, str_field};
use super::pod::default_pod_template;

fn spec_of(obj: &mut Map<String, Value>) -> Option<&mut Map<String, Value>> {
    ensure_obj(obj, "spec")
}

fn template(spec: &mut Map<String, Value>) {
    if let Some(t) = ensure_obj(spec, "template") {
        default_pod_template(t);
    }
}

pub(crate) fn deployment(obj: &mut Map<String, Value>) {
    let Some(spec) = spec_of(obj) else { return };
    default_value(spec, "replicas", json!(1));
    if let Some(strategy) = ensure_obj(spec, "strategy") {
        default_str(strategy, "type", "RollingUpdate");
        if str_field(strategy, "type") == "RollingUpdate" {
            if let Some(ru) = ensure_obj(strategy, "rollingUpdate") {
                default_value(ru, "maxUnavailable", json!("25%"));
                default_value(ru, "maxSurge", json!("25%"));
            }
        }
    }
    default_value(spec, "revisionHistoryLimit", json!(10));
    default_value(spec, "progressDeadlineSeconds", json!(600));
    template(spec);
}

pub(crate) fn replica_set(obj: &mut Map<String, Value>) {
    let Some(spec) = spec_of(obj) else { return };
    default_value(spec, "replicas", json!(1));
    template(spec);
}

pub(crate) fn stateful_set(obj: &mut Map<String, Value>) {
    let Some(spec) = spec_of(obj) else { return };
    default_str(spec, "podManagementPolicy", "OrderedReady");
    if let Some(us) = ensure_obj(spec, "updateStrategy") {
        if str_field(us, "type").is_empty() {
            us.insert("type".into(), json!("RollingUpdate"));
            default_value(us, "rollingUpdate", json!({}));
        }
        if str_field(us, "type") == "RollingUpdate" {
            if let Some(ru) = obj_mut(us, "rollingUpdate") {
                default_value(ru, "partition", json!(0));
            }
        }
    }
    if let Some(policy) = ensure_obj(spec, "persistentVolumeClaimRetentionPolicy") {
        default_str(policy, "whenDeleted", "Retain");
        default_str(policy, "whenScaled", "Retain");
    }
    default_value(spec, "replicas", json!(1));
    default_value(spec, "revisionHistoryLimit", json!(10));
    template(spec);
    if let Some(claims) = spec
        .get_mut("volumeClaimTemplates")
        .and_then(Value::as_array_mut)
    {
        for claim in claims.iter_mut().filter_map(Value::as_object_mut) {
            super::core_v1::pvc(claim);
        }
    }
}

pub(crate) fn daemon_set(obj: &mut Map<String, Value>) {
    let Some(spec) = spec_of(obj) else { return };
    if let Some(us) = ensure_obj(spec, "updateStrategy") {
        default_str(us, "type", "RollingUpdate");
        if str_field(us, "type") == "RollingUpdate" {
            if let Some(ru) = ensure_obj(us, "rollingUpdate") {
                default_value(ru, "maxUnavailable", json!(1));
                default_value(ru, "maxSurge", json!(0));
            }
        }
    }
    default_value(spec, "revisionHistoryLimit", json!(10));
    template(spec);
}

pub(crate) fn replication_controller(obj: &mut Map<String, Value>) {
    let Some(spec) = spec_of(obj) else { return };
    default_value(spec, "replicas", json!(1));
    let labels = spec
        .get("template")
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(t) = obj_mut(spec, "template") {
        default_pod_template(t);
    }
    if let Some(labels) = labels {
        if spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            spec.insert("selector".into(), labels.clone());
        }
        if let Some(meta) = ensure_obj(obj, "metadata") {
            if meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
            {
                meta.insert("labels".into(), labels);
            }
        }
    }
}

pub(crate) fn job(obj: &mut Map<String, Value>) {
    let template_labels = obj
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    let Some(spec) = spec_of(obj) else { return };
    let unset = |v: Option<&Value>| v.is_none_or(Value::is_null);
    if unset(spec.get("completions")) && unset(spec.get("parallelism")) {
        spec.insert("completions".into(), json!(1));
    }
    default_value(spec, "parallelism", json!(1));
    let backoff = if unset(spec.get("backoffLimitPerIndex")) {
        6
    } else {
        i64::from(i32::MAX)
    };
    default_value(spec, "backoffLimit", json!(backoff));
    default_str(spec, "completionMode", "NonIndexed");
    default_value(spec, "suspend", json!(false));
    let replacement = if unset(spec.get("podFailurePolicy")) {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    default_str(spec, "podReplacementPolicy", replacement);
    default_value(spec, "manualSelector", json!(false));
    if let Some(pfp) = obj_mut(spec, "podFailurePolicy") {
        super::json::each_obj(pfp, "rules", |rule| {
            super::json::each_obj(rule, "onPodConditions", |c| {
                default_str(c, "status", "True")
            });
        });
    }
    template(spec);
    // A Job without labels of its own is labelled like its pods.
    if let Some(labels) = template_labels {
        if let Some(meta) = ensure_obj(obj, "metadata") {
            if meta
                .get("labels")
                .and_then(Value::as_object)
                .is_none_or(Map::is_empty)
            {
                meta.insert("labels".into(), labels);
            }
        }
    }
}

pub(crate) fn cron_job(obj: &mut Map<String, Value>) {
    let Some(spec) = spec_of(obj) else { return };
    default_str(spec, "concurrencyPolicy", "Allow");
    default_value(spec, "suspend", json!(false));
    default_value(spec, "successfulJobsHistoryLimit", json!(3));
    default_value(spec, "failedJobsHistoryLimit", json!(1));
    // Only the pod template inside the job template is defaulted, not the Job spec itself.
    if let Some(jt) = ensure_obj(spec, "jobTemplate") {
        if let Some(js) = ensure_obj(jt, "spec") {
            template(js);
        }
    }
}

/// Labels and selector the API server gives a new Job unless `spec.manualSelector` is true:
/// pods are labelled with the Job's uid and name, and the selector picks the uid label.
/// Existing labels are kept (a conflicting one then fails validation, as upstream).
pub fn job_selector_defaults(obj: &mut Value, uid: &str) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let name = root
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(spec) = ensure_obj(root, "spec") else {
        return;
    };
    if spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    if let Some(labels) = ensure_obj(spec, "template")
        .and_then(|t| ensure_obj(t, "metadata"))
        .and_then(|m| ensure_obj(m, "labels"))
    {
        for key in ["job-name", "batch.kubernetes.io/job-name"] {
            labels.entry(key).or_insert_with(|| json!(name));
        }
        for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
            labels.entry(key).or_insert_with(|| json!(uid));
        }
    }
    if let Some(ml) = ensure_obj(spec, "selector").and_then(|s| ensure_obj(s, "matchLabels")) {
        ml.entry("batch.kubernetes.io/controller-uid")
            .or_insert_with(|| json!(uid));
    }
}
