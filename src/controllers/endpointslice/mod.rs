//! The EndpointSlice controller (upstream's `pkg/controller/endpointslice` over
//! `staging/src/k8s.io/endpointslice`): for every Service with a selector, EndpointSlices
//! (`discovery.k8s.io/v1`) listing the pods the selector matches, one endpoint per pod and
//! address family, with ready/serving/terminating conditions, node, zone, hostname and
//! topology hints, at most [`reconciler::MAX_ENDPOINTS_PER_SLICE`] endpoints per slice.
//!
//! Invariants:
//! - The controller only touches slices labelled `endpointslice.kubernetes.io/managed-by:
//!   endpointslice-controller.k8s.io` and `kubernetes.io/service-name: <svc>`; each is
//!   controlled by its Service, so the garbage collector removes them with it.
//! - Services without selector (their slices come from the mirroring controller or their
//!   owner) and ExternalName services are left alone.
//! - A sync runs only on a slice cache that has seen the controller's previous writes
//!   ([`staleness`]), so it never creates a slice twice.
//! - Writes are the minimal set [`reconciler::plan`] computes: creates and updates before
//!   deletes, so an endpoint moving between slices is never missing in between.
//!
//! The shared parts — pods and ports ([`pods`]), trigger times ([`trigger_time`]), pod to
//! service mapping ([`memberships`]) — serve the Endpoints controller too.

pub mod desired;
pub mod memberships;
pub mod pods;
pub mod reconciler;
#[cfg(test)]
mod tests;
pub mod topology;
pub mod trigger_time;

use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::events::{object_ref, Recorder};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use memberships::{key_of, Memberships};
use parking_lot::Mutex;
use reconciler::{Plan, CONTROLLER_NAME, LABEL_MANAGED_BY, LABEL_SERVICE_NAME};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Upstream's `--concurrent-service-endpoint-syncs` default.
const WORKERS: usize = 5;
/// How soon a service with pods on unknown nodes is looked at again.
const MISSING_NODE_RETRY: Duration = Duration::from_secs(1);

pub struct EndpointSliceController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl EndpointSliceController {
    pub fn new(ctx: Context) -> EndpointSliceController {
        EndpointSliceController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let services = self.ctx.informers.typed::<Service>();
        let pods = self.ctx.informers.typed::<Pod>();
        let nodes = self.ctx.informers.typed::<Node>();
        let slices = self.ctx.informers.typed::<EndpointSlice>();
        let synced = async {
            services.synced().await?;
            pods.synced().await?;
            nodes.synced().await?;
            slices.synced().await
        };
        if !synced_unless_shutdown(&shutdown, synced).await? {
            return Ok(());
        }
        let client = self.ctx.client_for("endpointslice-controller");
        let reconciler = Arc::new(Sync {
            recorder: Recorder::spawn_for(client.clone(), "endpoint-slice-controller"),
            client,
            services: services.store(),
            pods: pods.store(),
            nodes: nodes.store(),
            slices: slices.store(),
            trigger_times: Default::default(),
            staleness: Default::default(),
            hinted: Default::default(),
        });
        let queue = self.queue.clone();
        let feeder = async move {
            let mut memberships = Memberships::new(services.store());
            let mut svc_changes = services.subscribe();
            let mut pod_changes = pods.subscribe();
            let mut node_changes = nodes.subscribe();
            let mut slice_changes = slices.subscribe();
            let mut ratios = topology::cpu_ratios(&nodes.store().state());
            loop {
                tokio::select! {
                    Some(c) = svc_changes.next() => queue.add(key_of(&c.object().metadata)),
                    Some(c) = pod_changes.next() => {
                        for key in memberships.pod_changed(&c) {
                            queue.add(key);
                        }
                    }
                    Some(c) = slice_changes.next() => {
                        if let Some(key) = managed_service_key(c.object(), CONTROLLER_NAME) {
                            queue.add(key);
                        }
                    }
                    Some(_) = node_changes.next() => {
                        // Zones and CPU decide hints: services using them look again.
                        let now = topology::cpu_ratios(&nodes.store().state());
                        if now != ratios {
                            ratios = now;
                            for s in services.store().state() {
                                if topology::hints_enabled(&s) {
                                    queue.add(key_of(&s.metadata));
                                }
                            }
                        }
                    }
                    else => return,
                }
            }
        };
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid("endpointslice: the informers' change feeds ended".into())),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

/// The key of the service a slice belongs to, if `manager` manages it.
pub fn managed_service_key(slice: &EndpointSlice, manager: &str) -> Option<String> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(LABEL_MANAGED_BY).map(String::as_str) != Some(manager) {
        return None;
    }
    let svc = labels.get(LABEL_SERVICE_NAME)?;
    Some(format!(
        "{}/{svc}",
        slice.metadata.namespace.as_deref().unwrap_or_default()
    ))
}

/// The cached slices of `key` that `manager` manages and that are not being deleted.
pub fn managed_slices(
    slices: &Store<EndpointSlice>,
    key: &str,
    manager: &str,
) -> Vec<Arc<EndpointSlice>> {
    slices
        .state()
        .into_iter()
        .filter(|s| managed_service_key(s, manager).as_deref() == Some(key))
        .collect()
}

struct Sync {
    client: kube::Client,
    recorder: Recorder,
    services: Store<Service>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    slices: Store<EndpointSlice>,
    trigger_times: trigger_time::TriggerTimes,
    staleness: super::staleness::Staleness,
    /// Services whose slices carry hints this controller allocated (for the
    /// enabled/disabled events).
    hinted: Mutex<HashSet<String>>,
}

fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

impl Reconciler for Sync {
    type Key = String;
    const NAME: &'static str = "endpointslice";

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let (ns, name) = split_key(key);
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            // The garbage collector deletes the slices with their Service.
            self.trigger_times.forget(key);
            self.staleness.forget(key);
            self.hinted.lock().remove(key);
            return Ok(Action::Done);
        };
        if !pods::selects_pods(&svc) {
            return Ok(Action::Done);
        }
        let cached = managed_slices(&self.slices, key, CONTROLLER_NAME);
        if self
            .staleness
            .is_stale(key, cached.iter().map(|s| &s.metadata))
        {
            return Ok(Action::Backoff);
        }
        let existing: Vec<EndpointSlice> = cached
            .iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .map(|s| (**s).clone())
            .collect();
        let selected: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| pods::selected_by(&svc, p))
            .collect();
        let trigger = self.trigger_times.compute(key, &svc, &selected);
        let d = desired::desired(&svc, &selected, |n| self.nodes.get(&ObjectRef::new(n)));
        let mut plan = reconciler::plan(
            &svc,
            d.desired,
            existing,
            reconciler::MAX_ENDPOINTS_PER_SLICE,
        );
        self.apply_hints(key, &svc, &mut plan);
        for s in plan.create.iter_mut().chain(plan.update.iter_mut()) {
            let annotations = s.metadata.annotations.get_or_insert_with(BTreeMap::new);
            match trigger {
                Some(t) => {
                    annotations.insert(trigger_time::ANNOTATION.into(), trigger_time::format(t));
                }
                None => {
                    annotations.remove(trigger_time::ANNOTATION);
                }
            }
        }
        tracing::debug!(service = %key, plan = %reconciler::summary(&plan), "endpointslice sync");
        if let Err(e) = self.write(key, ns, plan).await {
            self.recorder.event(
                object_ref(svc.as_ref()),
                crate::events::WARNING,
                "FailedToUpdateEndpointSlices",
                format!("Error updating Endpoint Slices for Service {key}: {e}"),
            );
            return Err(e);
        }
        if !d.missing_nodes.is_empty() {
            tracing::info!(service = %key, pods = ?d.missing_nodes, "skipping pods whose node is not known");
            return Ok(Action::RequeueAfter(MISSING_NODE_RETRY));
        }
        Ok(Action::Done)
    }
}

impl Sync {
    /// Topology hints per address type: allocated for `topology-mode: Auto`, kept to the
    /// own zone for `trafficDistribution`, otherwise removed.
    fn apply_hints(&self, key: &str, svc: &Service, plan: &mut Plan) {
        let auto = topology::hints_enabled(svc);
        let ratios = auto
            .then(|| topology::cpu_ratios(&self.nodes.state()))
            .flatten();
        let mut by_type: BTreeMap<String, Plan> = BTreeMap::new();
        let take = |v: &mut Vec<EndpointSlice>| std::mem::take(v);
        for (which, slices) in [
            (0, take(&mut plan.create)),
            (1, take(&mut plan.update)),
            (2, take(&mut plan.unchanged)),
        ] {
            for s in slices {
                let p = by_type.entry(s.address_type.clone()).or_default();
                [&mut p.create, &mut p.update, &mut p.unchanged][which].push(s);
            }
        }
        let was_hinted = self.hinted.lock().contains(key);
        let mut now_hinted = false;
        for (address_type, mut p) in by_type {
            if auto {
                match topology::add_hints(&mut p, ratios.as_ref(), &address_type) {
                    Ok(()) => {
                        now_hinted = true;
                        if !was_hinted {
                            self.event(
                                svc,
                                crate::events::NORMAL,
                                "TopologyAwareHintsEnabled",
                                format!("{}, addressType: {address_type}", topology::HINTS_ENABLED),
                            );
                        }
                    }
                    Err(e) => self.event(svc, e.type_, e.reason, e.message),
                }
            } else if !traffic_distribution_hints(svc, &mut p) {
                if was_hinted {
                    self.event(
                        svc,
                        crate::events::WARNING,
                        "TopologyAwareHintsDisabled",
                        format!("{}, addressType: {address_type}", topology::HINTS_DISABLED),
                    );
                }
                topology::remove_hints(&mut p);
            }
            plan.create.extend(p.create);
            plan.update.extend(p.update);
            plan.unchanged.extend(p.unchanged);
        }
        let mut hinted = self.hinted.lock();
        if now_hinted {
            hinted.insert(key.to_string());
        } else {
            hinted.remove(key);
        }
    }

    fn event(&self, svc: &Service, type_: &'static str, reason: &'static str, message: String) {
        self.recorder.event(object_ref(svc), type_, reason, message);
    }

    async fn write(&self, key: &str, ns: &str, plan: Plan) -> Result<(), ControllerError> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        for s in &plan.create {
            match api.create(&PostParams::default(), s).await {
                Ok(created) => self.staleness.written(key, &created.metadata),
                // A namespace being deleted refuses new objects; its services go too.
                Err(kube::Error::Api(e))
                    if e.code == 403 && e.message.contains("being terminated") =>
                {
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        for s in &plan.update {
            let name = s.metadata.name.clone().unwrap_or_default();
            let updated = api.replace(&name, &PostParams::default(), s).await?;
            self.staleness.written(key, &updated.metadata);
        }
        for s in &plan.delete {
            let name = s.metadata.name.clone().unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => self.staleness.deleted(key, &name),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// `spec.trafficDistribution` `PreferClose`/`PreferSameZone` (and `PreferSameNode`) hint
/// each endpoint to its own zone (and node); answers whether the field asked for hints.
fn traffic_distribution_hints(svc: &Service, plan: &mut Plan) -> bool {
    use k8s_openapi::api::discovery::v1::{EndpointHints, ForNode, ForZone};
    let mode = svc
        .spec
        .as_ref()
        .and_then(|s| s.traffic_distribution.as_deref());
    let same_node = match mode {
        Some("PreferClose" | "PreferSameZone") => false,
        Some("PreferSameNode") => true,
        _ => return false,
    };
    let hints_of = |ep: &k8s_openapi::api::discovery::v1::Endpoint| {
        let zone = ep.zone.clone().filter(|z| !z.is_empty());
        let node = ep.node_name.clone().filter(|n| same_node && !n.is_empty());
        (zone.is_some() || node.is_some()).then(|| EndpointHints {
            for_zones: zone.map(|name| vec![ForZone { name }]),
            for_nodes: node.map(|name| vec![ForNode { name }]),
        })
    };
    for s in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        for ep in &mut s.endpoints {
            ep.hints = hints_of(ep);
        }
    }
    let unchanged = std::mem::take(&mut plan.unchanged);
    for mut s in unchanged {
        if s.endpoints.iter().all(|e| e.hints == hints_of(e)) {
            plan.unchanged.push(s);
        } else {
            for ep in &mut s.endpoints {
                ep.hints = hints_of(ep);
            }
            plan.update.push(s);
        }
    }
    true
}

/// Waits for the informers' first lists (`synced`), unless `shutdown` comes first: then
/// `false`, which is no failure (a cluster stopped right after it started).
pub async fn synced_unless_shutdown(
    shutdown: &CancellationToken,
    synced: impl std::future::Future<Output = Result<(), crate::informers::InformerError>>,
) -> Result<bool, ControllerError> {
    tokio::select! {
        biased;
        _ = shutdown.cancelled() => Ok(false),
        r = synced => r.map(|()| true).map_err(ControllerError::from),
    }
}
