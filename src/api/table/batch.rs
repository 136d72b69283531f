//! `batch/v1` printers: Job and CronJob.
//!
//! Invariant: a Job's STATUS follows upstream's precedence — Complete,
//! Failed, Terminating, Suspended, FailureTarget, else Running.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::duration::{human_duration, parse_time, since};
use super::fields::{
    created, deleting, get, int_at, list_at, n, name, opt_int, opt_str, s, str_at,
};
use super::format::{bool_ptr, container_cells, format_label_selector};
use super::{col, no_conditions, wide, Col, Spec, AGE, CONTAINERS_DESC, IMAGES_DESC, NAME};

pub static JOB: Spec = Spec {
    columns: &JOB_COLUMNS,
    cells: job_cells,
    conditions: no_conditions,
    list: None,
};

static JOB_COLUMNS: [Col; 8] = [
    NAME,
    col(
        "Status",
        "string",
        "State of the job: Running, Complete, Failed, Suspended, ...",
    ),
    col(
        "Completions",
        "string",
        "Pods that succeeded out of the completions wanted.",
    ),
    col(
        "Duration",
        "string",
        "How long the job ran, or has been running.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide("Selector", "string", "Label selector of the job's pods."),
];

/// True when the first condition of `ty` is True (later duplicates ignored).
fn has_condition(job: &Value, ty: &str) -> bool {
    list_at(job, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == ty)
        .is_some_and(|c| str_at(c, &["status"]) == "True")
}

fn job_status(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if deleting(job) {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let succeeded = int_at(job, &["status", "succeeded"]);
    let completions = match opt_int(job, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match opt_int(job, &["spec", "parallelism"]).unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = opt_str(job, &["status", "startTime"]).and_then(parse_time);
    let end = opt_str(job, &["status", "completionTime"]).and_then(parse_time);
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(st), None) => human_duration(now - st),
        (Some(st), Some(en)) => human_duration(en - st),
    };
    let (names, images) = container_cells(get(job, &["spec", "template", "spec"]));
    vec![
        s(name(job)),
        s(job_status(job)),
        s(completions),
        s(duration),
        s(since(created(job), now)),
        s(names),
        s(images),
        s(format_label_selector(get(job, &["spec", "selector"]))),
    ]
}

pub static CRON_JOB: Spec = Spec {
    columns: &CRON_JOB_COLUMNS,
    cells: cron_job_cells,
    conditions: no_conditions,
    list: None,
};

static CRON_JOB_COLUMNS: [Col; 10] = [
    NAME,
    col(
        "Schedule",
        "string",
        "Cron schedule the jobs are created on.",
    ),
    col(
        "Timezone",
        "string",
        "Time zone the schedule is evaluated in.",
    ),
    col("Suspend", "boolean", "Whether new runs are suspended."),
    col("Active", "integer", "Number of jobs currently running."),
    col(
        "Last Schedule",
        "string",
        "Time since a job was last scheduled.",
    ),
    AGE,
    wide("Containers", "string", CONTAINERS_DESC),
    wide("Images", "string", IMAGES_DESC),
    wide(
        "Selector",
        "string",
        "Label selector of the created jobs' pods.",
    ),
];

fn cron_job_cells(cj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let last = match opt_str(cj, &["status", "lastScheduleTime"]) {
        Some(t) => since(Some(t), now),
        None => "<none>".to_string(),
    };
    let job_spec = get(cj, &["spec", "jobTemplate", "spec"]);
    let (names, images) = container_cells(job_spec.and_then(|j| get(j, &["template", "spec"])));
    vec![
        s(name(cj)),
        s(str_at(cj, &["spec", "schedule"])),
        s(opt_str(cj, &["spec", "timeZone"]).unwrap_or("<none>")),
        s(bool_ptr(get(cj, &["spec", "suspend"]))),
        n(list_at(cj, &["status", "active"]).len() as i64),
        s(last),
        s(since(created(cj), now)),
        s(names),
        s(images),
        s(format_label_selector(
            job_spec.and_then(|j| j.get("selector")),
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::printers;
    use super::super::testutil::{ago, cells};
    use serde_json::{json, Value};

    fn job(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "job1", "creationTimestamp": ago(10 * 365 * 86400)},
               "spec": spec, "status": status})
    }

    fn short(j: &Value) -> Value {
        Value::Array(cells(&printers::JOB, j)[..5].to_vec())
    }

    #[test]
    fn running_job_counts_completions() {
        let j = json!({"metadata": {"name": "job1", "creationTimestamp": ago(0)},
            "spec": {"completions": 2, "selector": {"matchLabels": {"job-name": "job1"}},
                     "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1}});
        assert_eq!(
            Value::Array(cells(&printers::JOB, &j)),
            json!([
                "job1",
                "Running",
                "1/2",
                "",
                "0s",
                "pi",
                "perl",
                "job-name=job1"
            ])
        );
    }

    #[test]
    fn duration_uses_completion_time_or_now() {
        let done = job(
            json!({}),
            json!({"startTime": ago(31 * 60), "completionTime": ago(60),
            "conditions": [{"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(
            short(&done),
            json!(["job1", "Complete", "0/1", "30m", "10y"])
        );
        let running = job(json!({}), json!({"startTime": ago(20 * 60)}));
        assert_eq!(
            short(&running),
            json!(["job1", "Running", "0/1", "20m", "10y"])
        );
    }

    #[test]
    fn parallel_jobs_without_completions_show_parallelism() {
        let j = job(json!({"parallelism": 3}), json!({"succeeded": 1}));
        assert_eq!(short(&j)[2], "1/1 of 3");
    }

    #[test]
    fn status_precedence_matches_upstream() {
        let cond = |t: &str| {
            job(
                json!({}),
                json!({"conditions": [{"type": t, "status": "True"}]}),
            )
        };
        assert_eq!(short(&cond("Failed"))[1], "Failed");
        assert_eq!(short(&cond("Suspended"))[1], "Suspended");
        assert_eq!(short(&cond("FailureTarget"))[1], "FailureTarget");
        let mut deleting = cond("Suspended");
        deleting["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(short(&deleting)[1], "Terminating");
        let not_true = job(
            json!({}),
            json!({"conditions": [{"type": "Complete", "status": "False"}]}),
        );
        assert_eq!(short(&not_true)[1], "Running");
    }

    #[test]
    fn cron_job_shows_schedule_and_last_run() {
        let cj = json!({"metadata": {"name": "cronjob2", "creationTimestamp": ago(300)},
            "spec": {"schedule": "0/5 * * * ?", "suspend": false,
                     "jobTemplate": {"spec": {"selector": {"matchLabels": {"a": "b"}},
                         "template": {"spec": {"containers": [{"name": "c1", "image": "i1"}, {"name": "c2", "image": "i2"}]}}}}},
            "status": {"lastScheduleTime": ago(30), "active": [{"name": "j1"}]}});
        assert_eq!(
            Value::Array(cells(&printers::CRON_JOB, &cj)),
            json!([
                "cronjob2",
                "0/5 * * * ?",
                "<none>",
                "False",
                1,
                "30s",
                "5m",
                "c1,c2",
                "i1,i2",
                "a=b"
            ])
        );
        let never = json!({"metadata": {"name": "c3"}, "spec": {"schedule": "@hourly", "timeZone": "Etc/UTC"}});
        assert_eq!(
            Value::Array(cells(&printers::CRON_JOB, &never)[..7].to_vec()),
            json!([
                "c3",
                "@hourly",
                "Etc/UTC",
                "<unset>",
                0,
                "<none>",
                "<unknown>"
            ])
        );
    }
}
