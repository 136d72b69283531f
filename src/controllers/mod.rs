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
pub mod daemonset;
pub mod deployment;
mod discovery;
pub mod disruption;
pub mod endpoints;
pub mod endpointslice;
pub mod endpointslice_mirroring;
pub mod garbage_collector;
pub mod history;
pub mod job;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod persistentvolume;
pub mod pod_index;
pub mod podautoscaler;
pub mod podgc;
pub mod pv_protection;
pub mod pvc_protection;
mod queue;
pub mod replicaset;
pub mod resource_quota;
pub mod root_ca;
pub mod service_account;
pub mod serviceaccount_token;
#[cfg(test)]
mod signing_tests;
pub mod staleness;
pub mod statefulset;
#[cfg(test)]
pub(crate) mod testing;
pub mod ttl_after_finished;
pub mod vac_protection;

use batch::BatchControllers;
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
                        if e.code() == Some(409) {
                            // Optimistic concurrency: a write raced another and is retried
                            // from the newer object (upstream logs these at V(2) only).
                            tracing::debug!(controller = R::NAME, %key, error = %e, "reconcile conflicted; retrying");
                        } else {
                            tracing::warn!(controller = R::NAME, %key, error = %e, "reconcile failed; retrying");
                        }
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

/// A controller's run future, started by [`ControllerManager::run`].
type RunFn = Box<
    dyn FnOnce(
            CancellationToken,
        )
            -> std::pin::Pin<Box<dyn Future<Output = Result<(), ControllerError>> + Send>>
        + Send,
>;

/// The controllers `skiff server` runs, with their counters. Adding a controller is one
/// [`ControllerManager::add`] line in [`ControllerManager::new`].
pub struct ControllerManager {
    /// In start order: name (upstream's controller name), counters, run function.
    controllers: Vec<(&'static str, Arc<Stats>, RunFn)>,
    /// The Job, CronJob and TTL controllers, kept apart until `run` so tests can set their clock.
    batch_ctls: Option<BatchControllers>,
    ctx: Context,
}

impl ControllerManager {
    pub fn new(ctx: Context) -> ControllerManager {
        let mut m = ControllerManager {
            controllers: Vec::new(),
            batch_ctls: Some(BatchControllers::new(&ctx)),
            ctx: ctx.clone(),
        };
        let c = namespace::NamespaceController::new(ctx.clone());
        m.add("namespace", c.stats(), |stop| c.run(stop));
        let c = garbage_collector::GarbageCollector::new(ctx.clone());
        m.add("garbage-collector", c.stats(), |stop| c.run(stop));
        let c = crd_cleanup::CrdCleanupController::new(ctx.clone());
        m.add("crd-cleanup", c.stats(), |stop| c.run(stop));
        let c = resource_quota::ResourceQuotaController::new(ctx.clone());
        m.add("resourcequota", c.stats(), |stop| c.run(stop));
        let c = clusterrole_aggregation::ClusterRoleAggregationController::new(ctx.clone());
        m.add("clusterrole-aggregation", c.stats(), |stop| c.run(stop));
        let c = service_account::ServiceAccountController::new(ctx.clone());
        m.add("serviceaccount", c.stats(), |stop| c.run(stop));
        let c = root_ca::RootCaPublisher::new(ctx.clone());
        m.add("root-ca-cert-publisher", c.stats(), |stop| c.run(stop));
        let c = bootstrap_token_cleaner::BootstrapTokenCleaner::new(ctx.clone());
        m.add("tokencleaner", c.stats(), |stop| c.run(stop));
        let c = replicaset::ReplicaSetController::new(ctx.clone());
        m.add("replicaset", c.stats(), |stop| c.run(stop));
        let c = replicaset::ReplicationManager::new(ctx.clone());
        m.add("replicationcontroller", c.stats(), |stop| c.run(stop));
        let c = deployment::DeploymentController::new(ctx.clone());
        m.add("deployment", c.stats(), |stop| c.run(stop));
        let c = disruption::DisruptionController::new(ctx.clone());
        m.add("disruption", c.stats(), |stop| c.run(stop));
        let c = node_lifecycle::taint_eviction::TaintEvictionController::new(ctx.clone());
        m.add("taint-eviction", c.stats(), |stop| c.run(stop));
        let c = persistentvolume::PersistentVolumeController::new(ctx.clone());
        m.add("persistentvolume-binder", c.stats(), |stop| c.run(stop));
        let c = pvc_protection::PvcProtectionController::new(ctx.clone());
        m.add("pvc-protection", c.stats(), |stop| c.run(stop));
        let c = pv_protection::PvProtectionController::new(ctx.clone());
        m.add("pv-protection", c.stats(), |stop| c.run(stop));
        let c = vac_protection::VacProtectionController::new(ctx.clone());
        m.add("volumeattributesclass-protection", c.stats(), |stop| {
            c.run(stop)
        });
        let c = endpoints::EndpointsController::new(ctx.clone());
        m.add("endpoint", c.stats(), |stop| c.run(stop));
        let c = endpointslice::EndpointSliceController::new(ctx.clone());
        m.add("endpointslice", c.stats(), |stop| c.run(stop));
        let c = endpointslice_mirroring::MirroringController::new(ctx.clone());
        m.add("endpointslicemirroring", c.stats(), |stop| c.run(stop));
        let c = statefulset::StatefulSetController::new(ctx.clone());
        m.add("statefulset", c.stats(), |stop| c.run(stop));
        let c = daemonset::DaemonSetController::new(ctx.clone());
        m.add("daemonset", c.stats(), |stop| c.run(stop));
        if let Some(signing) = ctx.signing.clone() {
            let c = csr_signing::CsrSigningController::new(ctx.clone(), signing.clone());
            m.add("csrsigning", c.stats(), |stop| c.run(stop));
            let c = csr_approving::CsrApprovingController::new(ctx.clone());
            m.add("csrapproving", c.stats(), |stop| c.run(stop));
            let c = serviceaccount_token::TokensController::new(ctx.clone(), signing);
            m.add("serviceaccount-token", c.stats(), |stop| c.run(stop));
        }
        m
    }

    /// Registers a controller: `run` is called once, by [`ControllerManager::run`].
    pub fn add<F, Fut>(&mut self, name: &'static str, stats: Arc<Stats>, run: F)
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), ControllerError>> + Send + 'static,
    {
        self.controllers
            .push((name, stats, Box::new(move |stop| Box::pin(run(stop)))));
    }

    /// The counters of the controller registered as `name`.
    pub fn stats(&self, name: &str) -> Option<Arc<Stats>> {
        self.controllers
            .iter()
            .find(|(n, ..)| *n == name)
            .map(|(_, s, _)| s.clone())
            .or_else(|| self.batch_ctls.as_ref().and_then(|b| b.stats_of(name)))
    }

    /// Runs `node-ipam-controller` too, allocating node pod CIDRs from `cluster_cidr`
    /// (upstream's `--allocate-node-cidrs --cluster-cidr`).
    pub fn enable_node_ipam(&mut self, cluster_cidr: &str) -> Result<Arc<Stats>, String> {
        let c = node_ipam::NodeIpamController::new(self.ctx.clone(), cluster_cidr)?;
        let stats = c.stats();
        self.add("nodeipam", stats.clone(), |stop| c.run(stop));
        Ok(stats)
    }

    /// Runs the node lifecycle controller (heartbeats, Unknown conditions, node taints) and
    /// pod garbage collection with the server's timing flags.
    pub fn enable_node_lifecycle(
        &mut self,
        lifecycle: node_lifecycle::Settings,
        gc: podgc::Settings,
    ) {
        let c = node_lifecycle::NodeLifecycleController::new(self.ctx.clone(), lifecycle);
        self.add("node-lifecycle", c.stats(), |stop| c.run(stop));
        let c = podgc::PodGc::new(self.ctx.clone(), gc);
        self.add("podgc", c.stats(), |stop| c.run(stop));
    }

    /// Runs the local-path provisioner too, its volumes' directories under `storage_dir` on
    /// their nodes (k3s's `--default-local-storage-path`).
    pub fn enable_local_path(&mut self, storage_dir: std::path::PathBuf) -> Arc<Stats> {
        let c =
            persistentvolume::local_path::LocalPathProvisioner::new(self.ctx.clone(), storage_dir);
        let stats = c.stats();
        self.add("local-path-provisioner", stats.clone(), |stop| c.run(stop));
        stats
    }

    /// Runs `horizontal-pod-autoscaler` with upstream's
    /// `--horizontal-pod-autoscaler-sync-period` (15 s by default; tests use shorter).
    pub fn enable_horizontal_pod_autoscaler(&mut self, sync_period: Duration) -> Arc<Stats> {
        let c =
            podautoscaler::HorizontalPodAutoscalerController::new(self.ctx.clone(), sync_period);
        let stats = c.stats();
        self.add("horizontalpodautoscaling", stats.clone(), |stop| {
            c.run(stop)
        });
        stats
    }

    /// Makes the Job, CronJob and TTL-after-finished controllers read time from `clock`
    /// (tests step it over schedules and backoffs).
    pub fn set_batch_clock(&mut self, clock: clock::Clock) {
        if let Some(b) = self.batch_ctls.as_mut() {
            b.set_clock(clock);
        }
    }

    /// The controller manager's own client (`system:kube-controller-manager`).
    pub fn client(&self) -> kube::Client {
        self.ctx.client.clone()
    }

    /// Runs every controller until `shutdown`; the first one to fail stops the rest.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let stop = shutdown.child_token();
        let mut set = tokio::task::JoinSet::new();
        for (_, _, run) in self.controllers {
            set.spawn(run(stop.clone()));
        }
        if let Some(b) = self.batch_ctls {
            b.spawn(&mut set, &stop);
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
                // A controller stopped while its informers were still loading reports their
                // shutdown: that is the stop asked for, not a failure.
                let stopping = matches!(e, ControllerError::Informer(InformerError::ShutDown(_)))
                    && stop.is_cancelled();
                if result.is_ok() && !stopping {
                    result = Err(e);
                }
                stop.cancel();
            }
        }
        result
    }
}
