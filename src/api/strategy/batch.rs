//! batch/v1 Jobs and CronJobs: defaults, validation, the selector and pod labels a new Job
//! gets from its uid, and batch/v1 Jobs orphaning their pods when a delete names no policy.

use super::{Delete, Printing, Propagation, Strategy};
use crate::api::defaults::workloads;
use crate::api::table::printers;
use crate::api::validation::workloads::{validate_cronjob, validate_job};
use serde_json::Value;

pub static JOB: Strategy = Strategy {
    kind: "Job",
    defaults: workloads::job,
    validate: validate_job,
    prepare_for_create: job_selector,
    printer: Printing::Builtin(&printers::JOB),
    delete: Delete {
        default_propagation: job_default_propagation,
        ..Delete::IMMEDIATE
    },
    ..Strategy::GENERIC
};

pub static CRON_JOB: Strategy = Strategy {
    kind: "CronJob",
    defaults: workloads::cron_job,
    validate: validate_cronjob,
    printer: Printing::Builtin(&printers::CRON_JOB),
    ..Strategy::GENERIC
};

fn job_selector(job: &mut Value) {
    let uid = job["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    workloads::job_selector_defaults(job, &uid);
}

/// Upstream keeps batch/v1's old default for compatibility: a Job deleted without a policy
/// leaves its pods (kubectl always sends one).
fn job_default_propagation(version: &str) -> Propagation {
    match version {
        "v1" => Propagation::Orphan,
        _ => Propagation::Background,
    }
}
