//! Deployment, ReplicaSet, StatefulSet, DaemonSet, Job and CronJob checks.
//!
//! Invariant: the selector/template relationship is judged with the real label-selector
//! semantics (`super::super::selector`), so "`selector` does not match template `labels`"
//! fires exactly when the controller would not see its own pods.

use serde_json::Value;

use super::super::selector::LabelSelector;
use super::cron::validate_schedule;
use super::field::{FieldError, FieldPath};
use super::json::{arr_of, bool_of, field, int_of, map_json, obj_of, str_of};
use super::meta::{validate_labels, validate_nonnegative};
use super::pod::validate_pod_template;
use super::strings::{is_qualified_name, is_valid_label_value};

/// Upstream's `ValidateLabelSelector` for a `metav1.LabelSelector` at `path`.
fn validate_label_selector(sel: Option<&Value>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let Some(sel) = sel else { return };
    validate_labels(
        obj_of(Some(sel), "matchLabels"),
        &path.child("matchLabels"),
        errs,
    );
    for (i, e) in arr_of(Some(sel), "matchExpressions").iter().enumerate() {
        let e = Some(e);
        let p = path.child("matchExpressions").index(i);
        let values = arr_of(e, "values");
        match str_of(e, "operator") {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                p.child("values").as_str(),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                p.child("values").as_str(),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                p.child("operator").as_str(),
                other,
                "not a valid selector operator",
            )),
        }
        let key = str_of(e, "key");
        for msg in is_qualified_name(key) {
            errs.push(FieldError::invalid(p.child("key").as_str(), key, &msg));
        }
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or_default();
            for msg in is_valid_label_value(v) {
                errs.push(FieldError::invalid(
                    p.child("values").index(j).as_str(),
                    v,
                    &msg,
                ));
            }
        }
    }
}

fn selector_is_empty(sel: &Value) -> bool {
    obj_of(Some(sel), "matchLabels").is_none_or(|m| m.is_empty())
        && arr_of(Some(sel), "matchExpressions").is_empty()
}

/// Required, syntactically valid and non-empty selector (Deployment, ReplicaSet, StatefulSet).
/// Returns the parsed selector when it can be used to judge the template.
fn required_selector(
    spec: Option<&Value>,
    path: &FieldPath,
    owner: &str,
    errs: &mut Vec<FieldError>,
) -> Option<LabelSelector> {
    let sel = field(spec, "selector");
    let sel_path = path.child("selector");
    match sel {
        None => errs.push(FieldError::required(sel_path.as_str(), "")),
        Some(s) => {
            validate_label_selector(Some(s), &sel_path, errs);
            if selector_is_empty(s) {
                errs.push(FieldError::invalid(
                    sel_path.as_str(),
                    s,
                    &format!("empty selector is invalid for {owner}"),
                ));
            }
        }
    }
    match LabelSelector::from_json(sel.unwrap_or(&Value::Null)) {
        Ok(s) => Some(s),
        Err(_) => {
            let bad = sel.cloned().unwrap_or(Value::Null);
            errs.push(FieldError::invalid(
                sel_path.as_str(),
                &bad,
                "invalid label selector",
            ));
            None
        }
    }
}

fn template_labels_match(
    selector: &LabelSelector,
    template: Option<&Value>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let labels = obj_of(field(template, "metadata"), "labels");
    if !selector.matches(labels) {
        errs.push(FieldError::invalid(
            path.child("metadata").child("labels").as_str(),
            &map_json(labels),
            "`selector` does not match template `labels`",
        ));
    }
}

fn restart_always(template: Option<&Value>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    let policy = str_of(field(template, "spec"), "restartPolicy");
    if policy != "Always" {
        errs.push(FieldError::not_supported(
            path.child("spec").child("restartPolicy").as_str(),
            policy,
            &["Always"],
        ));
    }
}

/// Deployment and ReplicaSet (upstream words the empty-selector error "for deployment" for both).
pub(crate) fn validate_replicated(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = field(Some(obj), "spec");
    let path = FieldPath::new("spec");
    validate_nonnegative(int_of(spec, "replicas"), &path.child("replicas"), errs);
    let template = field(spec, "template");
    let tpath = path.child("template");
    if let Some(sel) = required_selector(spec, &path, "deployment", errs) {
        if !sel.is_empty() {
            template_labels_match(&sel, template, &tpath, errs);
        }
        validate_pod_template(template, &tpath, errs);
        restart_always(template, &tpath, errs);
    }
    for f in ["minReadySeconds", "revisionHistoryLimit"] {
        validate_nonnegative(int_of(spec, f), &path.child(f), errs);
    }
}

pub(crate) fn validate_statefulset(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = field(Some(obj), "spec");
    let path = FieldPath::new("spec");
    match str_of(spec, "podManagementPolicy") {
        "" => errs.push(FieldError::required(
            path.child("podManagementPolicy").as_str(),
            "",
        )),
        "OrderedReady" | "Parallel" => {}
        other => errs.push(FieldError::invalid(
            path.child("podManagementPolicy").as_str(),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    validate_nonnegative(int_of(spec, "replicas"), &path.child("replicas"), errs);
    let template = field(spec, "template");
    let tpath = path.child("template");
    if let Some(sel) = required_selector(spec, &path, "statefulset", errs) {
        if !sel.is_empty() {
            template_labels_match(&sel, template, &tpath, errs);
        }
        validate_pod_template(template, &tpath, errs);
    }
    restart_always(template, &tpath, errs);
}

pub(crate) fn validate_daemonset(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = field(Some(obj), "spec");
    let path = FieldPath::new("spec");
    let sel = field(spec, "selector");
    validate_label_selector(sel, &path.child("selector"), errs);
    let template = field(spec, "template");
    let tpath = path.child("template");
    // A missing selector selects nothing, so upstream reports it as a mismatch.
    if let Ok(s) = LabelSelector::from_json(sel.unwrap_or(&Value::Null)) {
        template_labels_match(&s, template, &tpath, errs);
    }
    if let Some(s) = sel.filter(|s| selector_is_empty(s)) {
        errs.push(FieldError::invalid(
            path.child("selector").as_str(),
            s,
            "empty selector is invalid for daemonset",
        ));
    }
    validate_pod_template(template, &tpath, errs);
    restart_always(template, &tpath, errs);
}

/// The part of a Job spec shared by Jobs and CronJob job templates.
fn validate_job_spec_common(spec: Option<&Value>, path: &FieldPath, errs: &mut Vec<FieldError>) {
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
    ] {
        validate_nonnegative(int_of(spec, f), &path.child(f), errs);
    }
}

fn validate_job_restart_policy(
    template: Option<&Value>,
    path: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    let p = path.child("spec").child("restartPolicy");
    match str_of(field(template, "spec"), "restartPolicy") {
        // Templates default to Always, so a missing policy surfaces here as Always.
        "" | "Always" => errs.push(FieldError::required(
            p.as_str(),
            "valid values: \"OnFailure\", \"Never\"",
        )),
        "OnFailure" | "Never" => {}
        other => errs.push(FieldError::not_supported(
            p.as_str(),
            other,
            &["OnFailure", "Never"],
        )),
    }
}

/// Job; run `defaults::job_selector_defaults` first, as the API server generates the selector
/// before validating.
pub(crate) fn validate_job(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = field(Some(obj), "spec");
    let path = FieldPath::new("spec");
    let template = field(spec, "template");
    let tpath = path.child("template");
    // Upstream checks the template before the selector.
    validate_job_spec_common(spec, &path, errs);
    validate_pod_template(template, &tpath, errs);
    validate_job_restart_policy(template, &tpath, errs);
    let sel = field(spec, "selector");
    match sel {
        None => errs.push(FieldError::required(path.child("selector").as_str(), "")),
        Some(s) => validate_label_selector(Some(s), &path.child("selector"), errs),
    }
    if let Ok(s) = LabelSelector::from_json(sel.unwrap_or(&Value::Null)) {
        template_labels_match(&s, template, &tpath, errs);
    }
}

pub(crate) fn validate_cronjob(obj: &Value, errs: &mut Vec<FieldError>) {
    let name = str_of(field(Some(obj), "metadata"), "name");
    if name.len() > 52 {
        // The controller appends an 11-character suffix to name Jobs (max 63).
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be no more than 52 characters",
        ));
    }
    let spec = field(Some(obj), "spec");
    let path = FieldPath::new("spec");
    let schedule = str_of(spec, "schedule");
    if schedule.is_empty() {
        errs.push(FieldError::required(path.child("schedule").as_str(), ""));
    } else {
        for msg in validate_schedule(schedule) {
            errs.push(FieldError::invalid(
                path.child("schedule").as_str(),
                schedule,
                &msg,
            ));
        }
    }
    validate_nonnegative(
        int_of(spec, "startingDeadlineSeconds"),
        &path.child("startingDeadlineSeconds"),
        errs,
    );
    const POLICIES: &[&str] = &["Allow", "Forbid", "Replace"];
    match str_of(spec, "concurrencyPolicy") {
        "" => errs.push(FieldError::required(
            path.child("concurrencyPolicy").as_str(),
            "",
        )),
        p if POLICIES.contains(&p) => {}
        p => errs.push(FieldError::not_supported(
            path.child("concurrencyPolicy").as_str(),
            p,
            POLICIES,
        )),
    }
    let jt = field(spec, "jobTemplate");
    let jpath = path.child("jobTemplate");
    let jspec = field(jt, "spec");
    let jspath = jpath.child("spec");
    validate_job_spec_common(jspec, &jspath, errs);
    if let Some(sel) = field(jspec, "selector") {
        errs.push(FieldError::invalid(
            jspath.child("selector").as_str(),
            sel,
            "`selector` will be auto-generated",
        ));
    }
    if bool_of(jspec, "manualSelector") {
        errs.push(FieldError::not_supported(
            jspath.child("manualSelector").as_str(),
            &Value::Bool(true),
            &["nil", "false"],
        ));
    }
    let template = field(jspec, "template");
    let tpath = jspath.child("template");
    validate_pod_template(template, &tpath, errs);
    validate_job_restart_policy(template, &tpath, errs);
    for f in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        validate_nonnegative(int_of(spec, f), &path.child(f), errs);
    }
}

/// core/v1 ReplicationControllers (`ValidateReplicationControllerSpec`): a non-empty
/// map selector that the template's labels satisfy, a valid template restarting Always.
pub(crate) fn validate_replication_controller(obj: &Value, errs: &mut Vec<FieldError>) {
    let spec = field(Some(obj), "spec");
    let path = FieldPath::new("spec");
    validate_nonnegative(int_of(spec, "replicas"), &path.child("replicas"), errs);
    validate_nonnegative(
        int_of(spec, "minReadySeconds"),
        &path.child("minReadySeconds"),
        errs,
    );
    let selector = obj_of(spec, "selector");
    if selector.is_none_or(|s| s.is_empty()) {
        errs.push(FieldError::required(path.child("selector").as_str(), ""));
    }
    let tpath = path.child("template");
    let Some(template) = field(spec, "template").filter(|t| !t.is_null()) else {
        errs.push(FieldError::required(tpath.as_str(), ""));
        return;
    };
    let labels = obj_of(field(Some(template), "metadata"), "labels");
    if let Some(sel) = selector.filter(|s| !s.is_empty()) {
        let matches = sel
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
        if !matches {
            errs.push(FieldError::invalid(
                tpath.child("metadata").child("labels").as_str(),
                &map_json(labels),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validate_pod_template(Some(template), &tpath, errs);
    restart_always(Some(template), &tpath, errs);
}

/// core/v1 PodTemplates (`ValidatePodTemplate`): the template as any pod template.
pub(crate) fn validate_pod_template_kind(obj: &Value, errs: &mut Vec<FieldError>) {
    let template = field(Some(obj), "template");
    let empty = Value::Object(Default::default());
    validate_pod_template(
        Some(template.unwrap_or(&empty)),
        &FieldPath::new("template"),
        errs,
    );
}
