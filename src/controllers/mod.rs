//! The in-process controllers: one file (or folder) per controller, all of one shape.
//!
//! A controller reads the shared caches of [`crate::informers`], writes through its
//! `kube::Client` (the in-process transport, identity `system:serviceaccount:kube-system:<name>`
//! from [`Context::client_for`], bound by the bootstrap policy to upstream's
//! `system:controller:<name>` role, so authorization, admission and validation apply exactly
//! as to any client), and never touches the store.
//!
//! The shape every controller copies (see `namespace.rs`, a screenful):
//! 1. feeders turn informer [`Change`](crate::informers::Change)s into keys on a
//!    [`WorkQueue`] ([`run_on_informer`] does this for the one-informer case);
//! 2. [`run_workers`] hands each key to [`Reconciler::reconcile`], which compares desired
//!    with observed state, acts idempotently and answers [`Action::Done`] (wait for the next
//!    change) or [`Action::RequeueAfter`];
//! 3. an error requeues the key with exponential backoff (5 ms doubling to 5 min) and counts
//!    in the controller's [`Stats`] (queue depth, reconciles, reconcile errors).
//!
//! Reconciles are level-triggered: a restart loses nothing, because the first list of
//! every informer queues every object again.

mod batch;
pub mod bootstrap_token_cleaner;
pub mod clock;
pub mod clusterrole_aggregation;
pub mod controller_utils;
pub mod crd_cleanup;
pub mod cronjob;
pub mod csr_approving;
pub mod csr_signing;
pub mod deployment;
mod discovery;
pub mod garbage_collector;
pub mod job;
pub mod namespace;
pub mod node_ipam;
mod queue;
pub mod replicaset;
pub mod resource_quota;
pub mod root_ca;
pub mod service_account;
pub mod serviceaccount_token;
#[cfg(test)]
mod signing_tests;
#[cfg(test)]
pub(crate) mod testing;
pub mod ttl_after_finished;

use batch::BatchControllers;
pub use batch::BatchStats;
pub use queue::{Stats, WorkQueue};

use crate::informers::{InformerError, Informers};
use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// What a reconcile asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing until the object changes again.
    Done,
    /// Look again after this long (waiting on something that sends no event).
    RequeueAfter(Duration),
    /// Look again after the key's growing backoff, as after a failure but without counting
    /// one (waiting on something that sends no event and may take long or never happen).
    Backoff,
}

/// Why a controller could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Informer(#[from] InformerError),
    #[error(transparent)]
    LeaderElection(#[from] crate::leader_election::LeaderElectionError),
    #[error("{0}")]
    Invalid(String),
}

impl ControllerError {
    /// The API's Status code, if the error is an API answer.
    pub fn code(&self) -> Option<u16> {
        match self {
            ControllerError::Api(kube::Error::Api(s)) => Some(s.code),
            _ => None,
        }
    }
}

/// One controller's reconcile function.
pub trait Reconciler: Send + Sync + 'static {
    type Key: Clone + Eq + Hash + Debug + Display + Send + Sync + 'static;
    /// Name for logs and metrics, e.g. `namespace`.
    const NAME: &'static str;
    fn reconcile(
        &self,
        key: &Self::Key,
    ) -> impl Future<Output = Result<Action, ControllerError>> + Send;
}

/// Runs `workers` workers over `queue` until `shutdown`; each key is reconciled in its own
/// span, failures are retried with backoff.
pub async fn run_workers<R: Reconciler>(
    reconciler: Arc<R>,
    queue: WorkQueue<R::Key>,
    workers: usize,
    shutdown: CancellationToken,
) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let r = reconciler.clone();
        let q = queue.clone();
        set.spawn(async move {
            while let Some(key) = q.next().await {
                let span = tracing::debug_span!("reconcile", controller = R::NAME, key = %key);
                let result = r.reconcile(&key).instrument(span).await;
                let stats = q.stats();
                stats
                    .reconciles
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match result {
                    Ok(Action::Backoff) => q.add_rate_limited(key.clone()),
                    Ok(action) => {
                        q.forget(&key);
                        if let Action::RequeueAfter(d) = action {
                            q.add_after(key.clone(), d);
                        }
                    }
                    Err(e) => {
                        stats
                            .reconcile_errors
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(controller = R::NAME, %key, error = %e, "reconcile failed; retrying");
                        q.add_rate_limited(key.clone());
                    }
                }
                q.done(&key);
            }
        });
    }
    shutdown.cancelled().await;
    queue.shut_down();
    while set.join_next().await.is_some() {}
}

/// The common case of the shape: keys come from one informer's changes (`key_of` picks the
/// changes that matter), workers reconcile them until `shutdown`. Waits for the informer's
/// first list before the first reconcile.
pub async fn run_on_informer<K, R>(
    informer: crate::informers::Informer<K>,
    key_of: impl Fn(&crate::informers::Change<K>) -> Option<R::Key> + Send + 'static,
    reconciler: Arc<R>,
    queue: WorkQueue<R::Key>,
    workers: usize,
    shutdown: CancellationToken,
) -> Result<(), ControllerError>
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash,
    R: Reconciler,
{
    use futures::StreamExt;
    informer.synced().await?;
    let mut changes = informer.subscribe();
    let feed = queue.clone();
    let feeder = async move {
        while let Some(change) = changes.next().await {
            if let Some(key) = key_of(&change) {
                feed.add(key);
            }
        }
    };
    tokio::select! {
        _ = feeder => Err(ControllerError::Invalid(format!("{}: the informer's change feed ended", R::NAME))),
        _ = run_workers(reconciler, queue, workers, shutdown) => Ok(()),
    }
}

/// Everything a controller is built from.
#[derive(Clone)]
pub struct Context {
    /// Acts as `system:kube-controller-manager` (upstream's role of that name: events,
    /// leases, service accounts, list/watch of everything).
    pub client: kube::Client,
    pub informers: Informers,
    /// Makes the client a controller acts as: upstream's `--use-service-account-credentials`,
    /// the service account `kube-system/<name>` the bootstrap policy binds to
    /// `system:controller:<name>` (see [`Context::client_for`]).
    pub clients: ClientFactory,
    /// The API server's own privileged loopback identity (`system:apiserver` in
    /// `system:masters`), for work upstream does inside the API server (CRD finalization).
    pub loopback: kube::Client,
    /// The cluster CA bundle (PEM) the root-CA publisher hands to every namespace.
    pub root_ca: Arc<str>,
    /// Key material the signing controllers use, handed over in-process (never through the
    /// API); without it the CSR signer, CSR approver and token controller do not run.
    pub signing: Option<Arc<Signing>>,
}

/// Makes a client acting as the given controller's service account.
pub type ClientFactory = Arc<dyn Fn(&str) -> kube::Client + Send + Sync>;

impl Context {
    /// The client of the controller whose upstream role is `system:controller:<name>`
    /// (`namespace-controller`, `generic-garbage-collector`, ...).
    pub fn client_for(&self, name: &str) -> kube::Client {
        (self.clients)(name)
    }
}

/// The cluster CA (certificates for approved CSRs) and the service-account key (legacy
/// token Secrets).
pub struct Signing {
    pub ca: crate::pki::CertPair,
    pub service_account_key: Arc<crate::pki::ServiceAccountKey>,
}

/// The controllers `skiff server` runs, with their counters.
pub struct ControllerManager {
    pub namespace: Arc<Stats>,
    pub garbage_collector: Arc<Stats>,
    pub crd_cleanup: Arc<Stats>,
    pub resource_quota: Arc<Stats>,
    pub clusterrole_aggregation: Arc<Stats>,
    pub service_account: Arc<Stats>,
    pub root_ca: Arc<Stats>,
    pub bootstrap_token_cleaner: Arc<Stats>,
    pub batch: BatchStats,
    batch_ctls: BatchControllers,
    pub replicaset: Arc<Stats>,
    pub replication: Arc<Stats>,
    pub deployment: Arc<Stats>,
    namespace_ctl: namespace::NamespaceController,
    gc: garbage_collector::GarbageCollector,
    crd_ctl: crd_cleanup::CrdCleanupController,
    quota_ctl: resource_quota::ResourceQuotaController,
    aggregation_ctl: clusterrole_aggregation::ClusterRoleAggregationController,
    sa_ctl: service_account::ServiceAccountController,
    root_ca_ctl: root_ca::RootCaPublisher,
    token_cleaner: bootstrap_token_cleaner::BootstrapTokenCleaner,
    rs_ctl: replicaset::ReplicaSetController,
    rc_ctl: replicaset::ReplicationManager,
    deployment_ctl: deployment::DeploymentController,
    /// The controllers that need [`Context::signing`].
    signing_ctls: Option<SigningControllers>,
    /// `node-ipam-controller`, when pod CIDRs are allocated ([`ControllerManager::enable_node_ipam`]).
    node_ipam: Option<node_ipam::NodeIpamController>,
    ctx: Context,
}

struct SigningControllers {
    csr_signing: csr_signing::CsrSigningController,
    csr_approving: csr_approving::CsrApprovingController,
    tokens: serviceaccount_token::TokensController,
}

impl ControllerManager {
    pub fn new(ctx: Context) -> ControllerManager {
        let namespace_ctl = namespace::NamespaceController::new(ctx.clone());
        let gc = garbage_collector::GarbageCollector::new(ctx.clone());
        let crd_ctl = crd_cleanup::CrdCleanupController::new(ctx.clone());
        let quota_ctl = resource_quota::ResourceQuotaController::new(ctx.clone());
        let aggregation_ctl =
            clusterrole_aggregation::ClusterRoleAggregationController::new(ctx.clone());
        let sa_ctl = service_account::ServiceAccountController::new(ctx.clone());
        let root_ca_ctl = root_ca::RootCaPublisher::new(ctx.clone());
        let token_cleaner = bootstrap_token_cleaner::BootstrapTokenCleaner::new(ctx.clone());
        let rs_ctl = replicaset::ReplicaSetController::new(ctx.clone());
        let rc_ctl = replicaset::ReplicationManager::new(ctx.clone());
        let deployment_ctl = deployment::DeploymentController::new(ctx.clone());
        let signing_ctls = ctx.signing.clone().map(|signing| SigningControllers {
            csr_signing: csr_signing::CsrSigningController::new(ctx.clone(), signing.clone()),
            csr_approving: csr_approving::CsrApprovingController::new(ctx.clone()),
            tokens: serviceaccount_token::TokensController::new(ctx.clone(), signing),
        });
        let batch_ctls = BatchControllers::new(&ctx);
        ControllerManager {
            batch: batch_ctls.stats(),
            batch_ctls,
            service_account: sa_ctl.stats(),
            root_ca: root_ca_ctl.stats(),
            bootstrap_token_cleaner: token_cleaner.stats(),
            token_cleaner,
            replicaset: rs_ctl.stats(),
            replication: rc_ctl.stats(),
            rs_ctl,
            rc_ctl,
            deployment: deployment_ctl.stats(),
            deployment_ctl,
            sa_ctl,
            root_ca_ctl,
            namespace: namespace_ctl.stats(),
            garbage_collector: gc.stats(),
            crd_cleanup: crd_ctl.stats(),
            resource_quota: quota_ctl.stats(),
            clusterrole_aggregation: aggregation_ctl.stats(),
            namespace_ctl,
            gc,
            crd_ctl,
            quota_ctl,
            aggregation_ctl,
            signing_ctls,
            node_ipam: None,
            ctx,
        }
    }

    /// Runs `node-ipam-controller` too, allocating node pod CIDRs from `cluster_cidr`
    /// (upstream's `--allocate-node-cidrs --cluster-cidr`).
    pub fn enable_node_ipam(&mut self, cluster_cidr: &str) -> Result<Arc<Stats>, String> {
        let c = node_ipam::NodeIpamController::new(self.ctx.clone(), cluster_cidr)?;
        let stats = c.stats();
        self.node_ipam = Some(c);
        Ok(stats)
    }

    /// Makes the Job, CronJob and TTL-after-finished controllers read time from `clock`
    /// (tests step it over schedules and backoffs).
    pub fn set_batch_clock(&mut self, clock: clock::Clock) {
        self.batch_ctls.set_clock(clock);
    }

    /// The controller manager's own client (`system:kube-controller-manager`).
    pub fn client(&self) -> kube::Client {
        self.ctx.client.clone()
    }

    /// Runs every controller until `shutdown`; the first one to fail stops the rest.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let stop = shutdown.child_token();
        let mut set = tokio::task::JoinSet::new();
        set.spawn(self.namespace_ctl.run(stop.clone()));
        set.spawn(self.gc.run(stop.clone()));
        set.spawn(self.crd_ctl.run(stop.clone()));
        set.spawn(self.quota_ctl.run(stop.clone()));
        set.spawn(self.aggregation_ctl.run(stop.clone()));
        set.spawn(self.sa_ctl.run(stop.clone()));
        set.spawn(self.root_ca_ctl.run(stop.clone()));
        set.spawn(self.token_cleaner.run(stop.clone()));
        self.batch_ctls.spawn(&mut set, &stop);
        set.spawn(self.rs_ctl.run(stop.clone()));
        set.spawn(self.rc_ctl.run(stop.clone()));
        set.spawn(self.deployment_ctl.run(stop.clone()));
        if let Some(c) = self.node_ipam {
            set.spawn(c.run(stop.clone()));
        }
        if let Some(c) = self.signing_ctls {
            set.spawn(c.csr_signing.run(stop.clone()));
            set.spawn(c.csr_approving.run(stop.clone()));
            set.spawn(c.tokens.run(stop.clone()));
        }
        let mut result = Ok(());
        while let Some(done) = set.join_next().await {
            let r = match done {
                Ok(r) => r,
                Err(e) => Err(ControllerError::Invalid(format!(
                    "controller panicked: {e}"
                ))),
            };
            if let Err(e) = r {
                if result.is_ok() {
                    result = Err(e);
                }
                stop.cancel();
            }
        }
        result
    }
}
