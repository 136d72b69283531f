//! The Endpoints controller (upstream's `pkg/controller/endpoint`): the legacy `v1`
//! Endpoints object of every Service with a selector, named like the service, listing the
//! matching pods' addresses grouped into subsets by the ports they serve.
//!
//! As upstream:
//! - a pod is listed when it has an IP and is not finished; Ready pods (every pod with
//!   `publishNotReadyAddresses`) under `addresses`, the others under `notReadyAddresses`;
//!   terminating pods only with `publishNotReadyAddresses`;
//! - one address per pod, of the service's IP family, with `nodeName`, `targetRef` and, for
//!   a pod naming the service as its `subdomain`, `hostname`;
//! - at most [`MAX_CAPACITY`] addresses: beyond, the lists are cut proportionally per
//!   subset, ready addresses first, and `endpoints.kubernetes.io/over-capacity: truncated`
//!   says so;
//! - the labels are the service's, plus `service.kubernetes.io/headless` for a headless
//!   service and `endpoints.kubernetes.io/managed-by: endpoint-controller`;
//! - the Endpoints goes when its Service goes; at start, Endpoints this controller made
//!   whose Service is gone are removed too.

use super::endpointslice::memberships::{key_of, Memberships};
use super::endpointslice::pods::{self, CLUSTER_IP_NONE};
use super::endpointslice::trigger_time;
use super::staleness::Staleness;
use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::controllers::controller_utils::is_pod_ready;
use crate::informers::Change;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Most addresses one Endpoints holds.
pub const MAX_CAPACITY: usize = 1000;
pub const ANNOTATION_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
pub const LABEL_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
pub const CONTROLLER_NAME: &str = "endpoint-controller";
/// Endpoints carrying a leader-election record are locks, not service endpoints.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
const WORKERS: usize = 5;

pub struct EndpointsController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl EndpointsController {
    pub fn new(ctx: Context) -> EndpointsController {
        EndpointsController {
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
        let endpoints = self.ctx.informers.typed::<Endpoints>();
        let synced = async {
            services.synced().await?;
            pods.synced().await?;
            endpoints.synced().await
        };
        if !super::endpointslice::synced_unless_shutdown(&shutdown, synced).await? {
            return Ok(());
        }
        let client = self.ctx.client_for("endpoint-controller");
        let reconciler = Arc::new(Sync {
            recorder: crate::events::Recorder::spawn_for(client.clone(), CONTROLLER_NAME),
            client,
            services: services.store(),
            pods: pods.store(),
            endpoints: endpoints.store(),
            trigger_times: Default::default(),
            staleness: Default::default(),
        });
        // Leftovers: Endpoints this controller made for services deleted while it was down.
        for ep in endpoints.store().state() {
            let labels = ep.metadata.labels.as_ref();
            let ours = labels
                .and_then(|l| l.get(LABEL_MANAGED_BY))
                .map(String::as_str)
                == Some(CONTROLLER_NAME);
            let lock = ep
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
            if ours && !lock {
                self.queue.add(key_of(&ep.metadata));
            }
        }
        let queue = self.queue.clone();
        let feeder = async move {
            let mut memberships = Memberships::new(services.store());
            let mut svc_changes = services.subscribe();
            let mut pod_changes = pods.subscribe();
            let mut ep_changes = endpoints.subscribe();
            loop {
                tokio::select! {
                    Some(c) = svc_changes.next() => queue.add(key_of(&c.object().metadata)),
                    Some(c) = pod_changes.next() => {
                        for key in memberships.pod_changed(&c) {
                            queue.add(key);
                        }
                    }
                    // A deleted Endpoints of a live service is made again.
                    Some(c) = ep_changes.next() => if let Change::Deleted(ep) = c {
                        queue.add(key_of(&ep.metadata));
                    },
                    else => return,
                }
            }
        };
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid("endpoint: the informers' change feeds ended".into())),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

struct Sync {
    client: kube::Client,
    recorder: crate::events::Recorder,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    trigger_times: trigger_time::TriggerTimes,
    staleness: Staleness,
}

impl Reconciler for Sync {
    type Key = String;
    const NAME: &'static str = "endpoint";

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let current = self.endpoints.get(&ObjectRef::new(name).within(ns));
        let Some(svc) = self.services.get(&ObjectRef::new(name).within(ns)) else {
            self.trigger_times.forget(key);
            self.staleness.forget(key);
            if current.is_some() {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(Action::Done);
        };
        if !pods::selects_pods(&svc) {
            return Ok(Action::Done);
        }
        if self
            .staleness
            .is_stale(key, current.iter().map(|e| &e.metadata))
        {
            return Ok(Action::Backoff);
        }
        let selected: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| pods::selected_by(&svc, p))
            .collect();
        let trigger = self.trigger_times.compute(key, &svc, &selected);
        let subsets = subsets_for(&svc, &selected);
        let labels = endpoints_labels(&svc);
        if let Some(cur) = &current {
            let same_subsets = cur.subsets.clone().unwrap_or_default() == subsets;
            let over = cur
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(ANNOTATION_OVER_CAPACITY));
            let capacity_ok = count(&subsets) <= MAX_CAPACITY && !over;
            if same_subsets && cur.metadata.labels.as_ref() == Some(&labels) && capacity_ok {
                return Ok(Action::Done);
            }
        }
        let mut new = current.as_deref().cloned().unwrap_or_else(|| Endpoints {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(ns.to_string()),
                ..Default::default()
            },
            subsets: None,
        });
        let annotations = new.metadata.annotations.get_or_insert_with(BTreeMap::new);
        match trigger {
            Some(t) => {
                annotations.insert(trigger_time::ANNOTATION.into(), trigger_time::format(t));
            }
            None => {
                annotations.remove(trigger_time::ANNOTATION);
            }
        }
        let mut subsets = subsets;
        if truncate(&mut subsets) {
            annotations.insert(ANNOTATION_OVER_CAPACITY.into(), "truncated".into());
        } else {
            annotations.remove(ANNOTATION_OVER_CAPACITY);
        }
        new.subsets = (!subsets.is_empty()).then_some(subsets);
        new.metadata.labels = Some(labels);
        let result = if current.is_some() {
            api.replace(name, &PostParams::default(), &new).await
        } else {
            api.create(&PostParams::default(), &new).await
        };
        match result {
            Ok(written) => {
                self.staleness.written(key, &written.metadata);
                Ok(Action::Done)
            }
            Err(kube::Error::Api(e))
                if current.is_none() && e.code == 403 && e.message.contains("being terminated") =>
            {
                Ok(Action::Done)
            }
            Err(e) => {
                let (reason, message) = if current.is_some() {
                    (
                        "FailedToUpdateEndpoint",
                        format!("Failed to update endpoint {key}: {e}"),
                    )
                } else {
                    (
                        "FailedToCreateEndpoint",
                        format!("Failed to create endpoint for service {key}: {e}"),
                    )
                };
                self.recorder.event(
                    crate::events::object_ref(&new),
                    crate::events::WARNING,
                    reason,
                    message,
                );
                Err(e.into())
            }
        }
    }
}

/// The service's labels, the headless marker for a headless service, and the manager.
fn endpoints_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    let has_ip = svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != CLUSTER_IP_NONE);
    if has_ip {
        labels.remove(super::endpointslice::reconciler::LABEL_HEADLESS);
    } else {
        labels.insert(
            super::endpointslice::reconciler::LABEL_HEADLESS.into(),
            String::new(),
        );
    }
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    labels
}

/// The subsets for the selected pods, packed: one subset per distinct port set, addresses
/// and ports in a stable order (upstream's `RepackSubsets`).
pub fn subsets_for(svc: &Service, selected: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let publish = pods::publish_not_ready(svc);
    let spec_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    // Port set key → (ports, ready, not ready), addresses by (ip, target uid).
    type Packed = (
        Vec<EndpointPort>,
        BTreeMap<(String, String), EndpointAddress>,
        BTreeMap<(String, String), EndpointAddress>,
    );
    let mut packed: BTreeMap<String, Packed> = BTreeMap::new();
    let mut add = |ports: Vec<EndpointPort>, addr: &EndpointAddress, ready: bool| {
        let mut ports = ports;
        ports.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
        let key = format!("{ports:?}");
        let entry = packed
            .entry(key)
            .or_insert_with(|| (ports, BTreeMap::new(), BTreeMap::new()));
        let id = (
            addr.ip.clone(),
            addr.target_ref
                .as_ref()
                .and_then(|r| r.uid.clone())
                .unwrap_or_default(),
        );
        if ready {
            entry.1.insert(id, addr.clone());
        } else {
            entry.2.insert(id, addr.clone());
        }
    };
    for pod in selected {
        if !pods::should_be_in_endpoints(pod, publish) {
            continue;
        }
        let family = pods::endpoints_family(svc, pod);
        let Some(ip) = pods::ips_of_family(pod, family).into_iter().next() else {
            continue;
        };
        let spec = pod.spec.as_ref();
        let addr = EndpointAddress {
            ip,
            node_name: Some(spec.and_then(|s| s.node_name.clone()).unwrap_or_default()),
            target_ref: Some(pods::pod_ref(pod)),
            hostname: pods::should_set_hostname(pod, svc)
                .then(|| spec.and_then(|s| s.hostname.clone()))
                .flatten(),
        };
        let ready = publish || is_pod_ready(pod);
        if spec_ports.is_empty() {
            // A headless service may have no ports: addresses only.
            if pods::is_headless(svc) {
                add(Vec::new(), &addr, ready);
            }
            continue;
        }
        // Each port is added on its own and repacked, so a pod serving only some of the
        // ports lands in the subset of exactly those.
        let mut ports = Vec::new();
        for sp in &spec_ports {
            if let Some(port) = pods::find_port(pod, sp) {
                ports.push(EndpointPort {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port,
                    protocol: sp.protocol.clone(),
                    app_protocol: sp.app_protocol.clone(),
                });
            }
        }
        if !ports.is_empty() {
            add(ports, &addr, ready);
        }
    }
    packed
        .into_values()
        .map(|(ports, ready, not_ready)| EndpointSubset {
            addresses: (!ready.is_empty()).then(|| ready.into_values().collect()),
            not_ready_addresses: (!not_ready.is_empty()).then(|| not_ready.into_values().collect()),
            ports: (!ports.is_empty()).then_some(ports),
        })
        .collect()
}

fn count(subsets: &[EndpointSubset]) -> usize {
    subsets
        .iter()
        .map(|s| {
            s.addresses.as_ref().map_or(0, Vec::len)
                + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
        })
        .sum()
}

/// Cuts the subsets to [`MAX_CAPACITY`] addresses as upstream's `truncateEndpoints`: each
/// subset keeps its proportional share (rounded up, the last one takes what is left); not
/// ready addresses go first, ready ones are cut only if there are more than fit. Answers
/// whether anything was cut.
pub fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let ready: usize = subsets
        .iter()
        .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
        .sum();
    let not_ready = count(subsets) - ready;
    if ready + not_ready <= MAX_CAPACITY {
        return false;
    }
    let cut_ready = ready > MAX_CAPACITY;
    let (max, total) = if cut_ready {
        (MAX_CAPACITY, ready)
    } else {
        (MAX_CAPACITY - ready, not_ready)
    };
    let mut room = max;
    for s in subsets.iter_mut() {
        let list = if cut_ready {
            s.not_ready_addresses = None;
            &mut s.addresses
        } else {
            &mut s.not_ready_addresses
        };
        let n = list.as_ref().map_or(0, Vec::len);
        let share = ((n as f64 / total as f64) * max as f64).ceil() as usize;
        let keep = share.min(room).min(n);
        if let Some(l) = list.as_mut() {
            l.truncate(keep);
        }
        room -= keep;
    }
    true
}

#[cfg(test)]
#[path = "endpoints_tests.rs"]
mod tests;
