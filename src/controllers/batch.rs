//! The batch/v1 controllers together: Job, CronJob and TTL-after-finished, which share a
//! clock so tests can move time for all three at once.

use super::clock::Clock;
use super::{cronjob, job, ttl_after_finished, Context, ControllerError, Stats};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub(super) struct BatchControllers {
    job: job::JobController,
    cronjob: cronjob::CronJobController,
    ttl: ttl_after_finished::TtlAfterFinishedController,
}

impl BatchControllers {
    pub(super) fn new(ctx: &Context) -> BatchControllers {
        BatchControllers {
            job: job::JobController::new(ctx.clone()),
            cronjob: cronjob::CronJobController::new(ctx.clone()),
            ttl: ttl_after_finished::TtlAfterFinishedController::new(ctx.clone()),
        }
    }

    /// The counters of `job`, `cronjob` or `ttl-after-finished`.
    pub(super) fn stats_of(&self, name: &str) -> Option<Arc<Stats>> {
        match name {
            "job" => Some(self.job.stats()),
            "cronjob" => Some(self.cronjob.stats()),
            "ttl-after-finished" => Some(self.ttl.stats()),
            _ => None,
        }
    }

    pub(super) fn set_clock(&mut self, clock: Clock) {
        self.job.set_clock(clock.clone());
        self.cronjob.set_clock(clock.clone());
        self.ttl.set_clock(clock);
    }

    pub(super) fn spawn(
        self,
        set: &mut tokio::task::JoinSet<Result<(), ControllerError>>,
        stop: &CancellationToken,
    ) {
        set.spawn(self.job.run(stop.clone()));
        set.spawn(self.cronjob.run(stop.clone()));
        set.spawn(self.ttl.run(stop.clone()));
    }
}
