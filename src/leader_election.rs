//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does
//! for kube-scheduler and kube-controller-manager (`kube-system/kube-scheduler`,
//! `kube-system/kube-controller-manager`): a component acts only while it holds the Lease,
//! so a second server can stand by safely.
//!
//! Timings are upstream's defaults: lease duration 15 s, renew deadline 10 s, retry period
//! 2 s. A holder that cannot renew within the renew deadline stops acting (the work future
//! is dropped and [`LeaderElector::run`] fails, so the process stops and its service manager
//! restarts it — upstream exits too).
//!
//! One difference, for a fast restart: the identity is stable per server (the caller passes
//! e.g. `<hostname>_<data-dir id>`), so a server killed with SIGKILL takes its own unexpired
//! Lease back at once instead of waiting out the 15 s; two processes never share a data dir
//! (the store is locked), so they never share an identity. On a clean stop the Lease is
//! released (upstream's `ReleaseOnCancel`).

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a Lease is valid after its last renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// A holder that has not renewed for this long stops acting.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the holder renews and a candidate retries.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum LeaderElectionError {
    #[error("lost the {lease} lease: not renewed within {deadline:?}")]
    Lost { lease: String, deadline: Duration },
}

/// What a Lease said when we last looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Nobody holds it, or the holder let it expire.
    Free,
    /// We hold it.
    Us,
    /// Someone else holds it and it has not expired.
    Other(String),
}

/// Who holds `lease` at `now` (`identity` is us).
pub fn holder_of(lease: &Lease, identity: &str, now: k8s_openapi::jiff::Timestamp) -> Holder {
    let Some(spec) = lease.spec.as_ref() else {
        return Holder::Free;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return Holder::Free;
    }
    if holder == identity {
        return Holder::Us;
    }
    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(t) if t.as_second() + duration > now.as_second() => Holder::Other(holder.to_owned()),
        _ => Holder::Free,
    }
}

/// Campaigns for one Lease and runs work while holding it.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

impl LeaderElector {
    /// Elects on `kube-system/<name>` as `identity`.
    pub fn new(client: kube::Client, name: &str, identity: &str) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, "kube-system"),
            name: name.to_owned(),
            identity: identity.to_owned(),
        }
    }

    /// Waits until this elector holds the Lease, then runs `work` while renewing it. Returns
    /// `work`'s result, `Ok` on `shutdown` (releasing the Lease), or an error when the Lease
    /// could not be renewed in time.
    pub async fn run<E, F>(
        self,
        shutdown: CancellationToken,
        work: impl FnOnce(CancellationToken) -> F,
    ) -> Result<(), E>
    where
        F: Future<Output = Result<(), E>>,
        E: From<LeaderElectionError>,
    {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                acquired = self.try_acquire_or_renew() => if acquired { break },
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(RETRY_PERIOD) => {}
            }
        }
        tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
        let stop = shutdown.child_token();
        let work = work(stop.clone());
        tokio::pin!(work);
        let mut last_renewal = tokio::time::Instant::now();
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = tokio::time::sleep(RETRY_PERIOD) => {
                    if self.try_acquire_or_renew().await {
                        last_renewal = tokio::time::Instant::now();
                    } else if last_renewal.elapsed() > RENEW_DEADLINE {
                        stop.cancel();
                        break Err(LeaderElectionError::Lost {
                            lease: self.name.clone(),
                            deadline: RENEW_DEADLINE,
                        }
                        .into());
                    }
                }
            }
        };
        if shutdown.is_cancelled() {
            self.release().await;
        }
        result
    }

    /// One attempt: creates the Lease, takes it over when free, or renews it when ours.
    async fn try_acquire_or_renew(&self) -> bool {
        let now = k8s_openapi::jiff::Timestamp::now();
        let lease = match self.api.get_opt(&self.name).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(lease = %self.name, error = %e, "reading the lease failed");
                return false;
            }
        };
        let Some(mut lease) = lease else {
            let fresh = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some("kube-system".into()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return self
                .api
                .create(&PostParams::default(), &fresh)
                .await
                .is_ok();
        };
        let transitions = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_transitions)
            .unwrap_or(0);
        let spec = match holder_of(&lease, &self.identity, now) {
            Holder::Other(holder) => {
                tracing::debug!(lease = %self.name, %holder, "the lease is held by another");
                return false;
            }
            Holder::Us => {
                let acquired = lease.spec.as_ref().and_then(|s| s.acquire_time.clone());
                self.spec(now, acquired, transitions)
            }
            Holder::Free => self.spec(now, None, transitions + 1),
        };
        lease.spec = Some(spec);
        // The update carries the resourceVersion read above: of two candidates racing for a
        // free Lease only one update succeeds.
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .is_ok()
    }

    fn spec(
        &self,
        now: k8s_openapi::jiff::Timestamp,
        acquired: Option<MicroTime>,
        transitions: i32,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Gives the Lease up on a clean stop so a standby takes over at once.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        if holder_of(&lease, &self.identity, k8s_openapi::jiff::Timestamp::now()) != Holder::Us {
            return;
        }
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
        }
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::debug!(lease = %self.name, error = %e, "releasing the lease failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed_secs_ago: i64, duration: i32) -> Lease {
        let now = k8s_openapi::jiff::Timestamp::now();
        let t = now - k8s_openapi::jiff::SignedDuration::from_secs(renewed_secs_ago);
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(t)),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_lease_renewed_within_its_duration_belongs_to_its_holder() {
        let now = k8s_openapi::jiff::Timestamp::now();
        assert_eq!(
            holder_of(&lease("other", 5, 15), "me", now),
            Holder::Other("other".into())
        );
        assert_eq!(holder_of(&lease("me", 5, 15), "me", now), Holder::Us);
    }

    #[test]
    fn an_expired_or_released_lease_is_free() {
        let now = k8s_openapi::jiff::Timestamp::now();
        assert_eq!(holder_of(&lease("other", 16, 15), "me", now), Holder::Free);
        assert_eq!(holder_of(&lease("", 0, 15), "me", now), Holder::Free);
    }

    #[tokio::test]
    async fn a_second_candidate_waits_while_the_first_holds_the_lease() {
        let server = crate::apiserver::testing::TestServer::start().await;
        let client = server.admin();
        let first = LeaderElector::new(client.clone(), "test-lease", "first");
        assert!(first.try_acquire_or_renew().await);
        let second = LeaderElector::new(client.clone(), "test-lease", "second");
        assert!(!second.try_acquire_or_renew().await);
        // The holder renews; the same identity after a restart takes it back at once.
        assert!(first.try_acquire_or_renew().await);
        let restarted = LeaderElector::new(client.clone(), "test-lease", "first");
        assert!(restarted.try_acquire_or_renew().await);
        first.release().await;
        assert!(second.try_acquire_or_renew().await);
        let lease = Api::<Lease>::namespaced(client, "kube-system")
            .get("test-lease")
            .await
            .expect("lease");
        let spec = lease.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("second"));
        assert_eq!(spec.lease_transitions, Some(1));
    }
}
