//! Workload validation tests (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob).

use serde_json::json;

use super::super::strategy::testing::of;
use super::tests::{check, has, meta, rendered, template};
use super::*;
#[test]
fn deployment_selector_must_exist_and_match_template() {
    let errs = check(
        "apps",
        "Deployment",
        json!({"metadata": meta("web"), "spec": {"template": template()}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec![
            "spec.selector: Required value",
            "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`",
        ]
    );
    let errs = check(
        "apps",
        "Deployment",
        json!({"metadata": meta("web"), "spec": {"replicas": -1,
        "selector": {"matchLabels": {"app": "api"}}, "template": template()}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec![
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`",
        ]
    );
    let errs = check(
        "apps",
        "Deployment",
        json!({"metadata": meta("web"), "spec": {"selector": {},
        "template": template()}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec!["spec.selector: Invalid value: {}: empty selector is invalid for deployment"]
    );

    let mut t = template();
    t["spec"]["restartPolicy"] = json!("Never");
    t["spec"]["containers"][0]["image"] = json!("");
    let errs = check(
        "apps",
        "Deployment",
        json!({"metadata": meta("web"), "spec": {
        "selector": {"matchLabels": {"app": "web"}}, "template": t}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec![
            "spec.template.spec.containers[0].image: Required value",
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
        ]
    );
    assert_eq!(
        format_invalid_message("Deployment.apps", "web", &errs),
        "Deployment.apps \"web\" is invalid: [spec.template.spec.containers[0].image: Required value, spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"]"
    );
}

#[test]
fn selector_expressions_are_checked() {
    let errs = check(
        "apps",
        "ReplicaSet",
        json!({"metadata": meta("rs"), "spec": {
        "selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}, "template": template()}}),
        true,
    );
    let r = rendered(&errs);
    assert!(has(&errs, "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"), "{r:#?}");
    assert!(
        r.iter().any(|e| e.ends_with(": invalid label selector")),
        "{r:#?}"
    );
}

#[test]
fn statefulset_and_daemonset_rules() {
    let errs = check(
        "apps",
        "StatefulSet",
        json!({"metadata": meta("db"), "spec": {
        "selector": {}, "template": template()}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec!["spec.selector: Invalid value: {}: empty selector is invalid for statefulset"]
    );
    let errs = check(
        "apps",
        "DaemonSet",
        json!({"metadata": meta("ds"), "spec": {"template": template()}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec!["spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"]
    );
}

#[test]
fn job_requires_on_failure_or_never() {
    let errs = check(
        "batch",
        "Job",
        json!({"metadata": meta("pi"), "spec": {"template": {"spec": {
        "containers": [{"name": "pi", "image": "perl"}]}}}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec!["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
    );
    // Without the generated selector the Job is incomplete, as upstream's create path ensures.
    let mut job = json!({"metadata": meta("pi"), "spec": {"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "pi", "image": "perl"}]}}}});
    of("batch", "Job").apply_defaults(&mut job);
    assert!(has(
        &of("batch", "Job").validate_create(&job, true),
        "spec.selector: Required value"
    ));
}

#[test]
fn cronjob_rules() {
    let errs = check(
        "batch",
        "CronJob",
        json!({"metadata": meta(&"c".repeat(53)), "spec": {
        "schedule": "", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "a", "image": "b"}]}}}}}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec![
            format!(
                "metadata.name: Invalid value: \"{}\": must be no more than 52 characters",
                "c".repeat(53)
            ),
            "spec.schedule: Required value".to_string(),
        ]
    );
    let errs = check(
        "batch",
        "CronJob",
        json!({"metadata": meta("c"), "spec": {
        "schedule": "every minute", "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "a", "image": "b"}]}}}}}}),
        true,
    );
    assert_eq!(
        rendered(&errs),
        vec![
            "spec.schedule: Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]",
            "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
        ]
    );
}
