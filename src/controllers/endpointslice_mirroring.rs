//! The EndpointSlice mirroring controller (upstream's `pkg/controller/endpointslicemirroring`):
//! for a Service without selector whose Endpoints someone writes by hand, EndpointSlices
//! with the same addresses, so slice consumers (service proxies, DNS) see them too.
//!
//! As upstream:
//! - only Endpoints of an existing selectorless Service are mirrored, and not those labelled
//!   `endpointslice.kubernetes.io/skip-mirror: "true"` or holding a leader-election record;
//!   otherwise the mirrored slices are deleted;
//! - one slice per address type and port set (subsets with the same ports merge), owned by
//!   the Endpoints, labelled `endpointslice.kubernetes.io/managed-by:
//!   endpointslicemirroring-controller.k8s.io` and `kubernetes.io/service-name`, carrying the
//!   Endpoints' labels and annotations (less the trigger time and kubectl's last-applied);
//! - at most [`MAX_ENDPOINTS_PER_SUBSET`] addresses of a subset are mirrored; skipped and
//!   invalid addresses are reported as Warning events on the Endpoints;
//! - `addresses` become ready endpoints, `notReadyAddresses` not ready ones.

use super::endpointslice::memberships::key_of;
use super::endpointslice::pods::Family;
use super::endpointslice::reconciler::{
    endpoint_key, ports_key, LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
};
use super::endpointslice::{managed_service_key, managed_slices, trigger_time};
use super::staleness::Staleness;
use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::events::{object_ref, Recorder};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// `endpointslice.kubernetes.io/managed-by` of mirrored slices.
pub const CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
pub const LABEL_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Upstream's `--mirroring-max-endpoints-per-subset` default.
pub const MAX_ENDPOINTS_PER_SUBSET: usize = 1000;
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const WORKERS: usize = 5;

pub struct MirroringController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl MirroringController {
    pub fn new(ctx: Context) -> MirroringController {
        MirroringController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let services = self.ctx.informers.typed::<Service>();
        let endpoints = self.ctx.informers.typed::<Endpoints>();
        let slices = self.ctx.informers.typed::<EndpointSlice>();
        let synced = async {
            services.synced().await?;
            endpoints.synced().await?;
            slices.synced().await
        };
        if !super::endpointslice::synced_unless_shutdown(&shutdown, synced).await? {
            return Ok(());
        }
        let client = self.ctx.client_for("endpointslicemirroring-controller");
        let reconciler = Arc::new(Sync {
            recorder: Recorder::spawn_for(client.clone(), "endpoint-slice-mirroring-controller"),
            client,
            services: services.store(),
            endpoints: endpoints.store(),
            slices: slices.store(),
            staleness: Default::default(),
        });
        let queue = self.queue.clone();
        let feeder = async move {
            let mut svc_changes = services.subscribe();
            let mut ep_changes = endpoints.subscribe();
            let mut slice_changes = slices.subscribe();
            loop {
                tokio::select! {
                    Some(c) = svc_changes.next() => queue.add(key_of(&c.object().metadata)),
                    Some(c) = ep_changes.next() => queue.add(key_of(&c.object().metadata)),
                    Some(c) = slice_changes.next() => {
                        if let Some(key) = managed_service_key(c.object(), CONTROLLER_NAME) {
                            queue.add(key);
                        }
                    }
                    else => return,
                }
            }
        };
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid("endpointslicemirroring: the informers' change feeds ended".into())),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

struct Sync {
    client: kube::Client,
    recorder: Recorder,
    services: Store<Service>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    staleness: Staleness,
}

/// Whether `ep` is mirrored at all (not opted out, not a lock).
fn should_mirror(ep: &Endpoints) -> bool {
    let skip = ep
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SKIP_MIRROR))
        .is_some_and(|v| v == "true");
    let lock = ep
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(LEADER_ANNOTATION));
    !skip && !lock
}

impl Reconciler for Sync {
    type Key = String;
    const NAME: &'static str = "endpointslicemirroring";

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        let svc = self.services.get(&ObjectRef::new(name).within(ns));
        let ep = self.endpoints.get(&ObjectRef::new(name).within(ns));
        let cached = managed_slices(&self.slices, key, CONTROLLER_NAME);
        let mirror = match (&svc, &ep) {
            (Some(svc), Some(ep)) => {
                svc.spec.as_ref().is_some_and(|s| s.selector.is_none()) && should_mirror(ep)
            }
            _ => false,
        };
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let Some(ep) = ep.filter(|_| mirror) else {
            for s in &cached {
                self.delete(&api, key, s).await?;
            }
            if cached.is_empty() {
                self.staleness.forget(key);
            }
            return Ok(Action::Done);
        };
        if self
            .staleness
            .is_stale(key, cached.iter().map(|s| &s.metadata))
        {
            return Ok(Action::Backoff);
        }
        let desired = desired_slices(&ep);
        if desired.invalid > 0 {
            self.recorder.event(
                object_ref(ep.as_ref()),
                crate::events::WARNING,
                "InvalidIPAddress",
                format!(
                    "Skipped {} invalid IP addresses when mirroring to EndpointSlices",
                    desired.invalid
                ),
            );
        }
        if desired.skipped > desired.invalid {
            self.recorder.event(
                object_ref(ep.as_ref()),
                crate::events::WARNING,
                "TooManyAddressesToMirror",
                format!(
                    "A max of {MAX_ENDPOINTS_PER_SUBSET} addresses can be mirrored to EndpointSlices per Endpoints subset. {} addresses were skipped",
                    desired.skipped
                ),
            );
        }
        // Existing slices by (address type, ports): the first of each group is kept and
        // rewritten if it differs, the others go.
        let mut existing: BTreeMap<(String, String), Vec<Arc<EndpointSlice>>> = BTreeMap::new();
        let mut sorted = cached.clone();
        sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        for s in sorted {
            let k = (
                s.address_type.clone(),
                ports_key(s.ports.as_deref().unwrap_or_default()),
            );
            existing.entry(k).or_default().push(s);
        }
        let (mut create, mut update, mut delete) = (Vec::new(), Vec::new(), Vec::new());
        for (k, want) in desired.slices {
            let have = existing.remove(&k).unwrap_or_default();
            let mut have = have.into_iter();
            match have.next() {
                None => create.push(want),
                Some(first) => {
                    if !same_slice(&first, &want) {
                        let mut s = want;
                        s.metadata.name = first.metadata.name.clone();
                        s.metadata.generate_name = None;
                        s.metadata.resource_version = first.metadata.resource_version.clone();
                        update.push(s);
                    }
                }
            }
            delete.extend(have);
        }
        delete.extend(existing.into_values().flatten());
        // Recycle: rather than create one and delete another, rewrite the doomed one.
        while let (Some(_), Some(_)) = (create.last(), delete.last()) {
            let (Some(mut s), Some(old)) = (create.pop(), delete.pop()) else {
                break;
            };
            s.metadata.name = old.metadata.name.clone();
            s.metadata.generate_name = None;
            s.metadata.resource_version = old.metadata.resource_version.clone();
            update.push(s);
        }
        if ep.metadata.deletion_timestamp.is_none() {
            for s in &create {
                let created = api.create(&PostParams::default(), s).await?;
                self.staleness.written(key, &created.metadata);
            }
        }
        for s in &update {
            let name = s.metadata.name.clone().unwrap_or_default();
            let updated = api.replace(&name, &PostParams::default(), s).await?;
            self.staleness.written(key, &updated.metadata);
        }
        for s in &delete {
            self.delete(&api, key, s).await?;
        }
        Ok(Action::Done)
    }
}

impl Sync {
    async fn delete(
        &self,
        api: &Api<EndpointSlice>,
        key: &str,
        s: &EndpointSlice,
    ) -> Result<(), ControllerError> {
        let name = s.metadata.name.clone().unwrap_or_default();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                self.staleness.deleted(key, &name);
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether an existing slice already says what `want` says.
fn same_slice(have: &EndpointSlice, want: &EndpointSlice) -> bool {
    let key_set = |s: &EndpointSlice| -> BTreeMap<String, Endpoint> {
        s.endpoints
            .iter()
            .map(|e| (endpoint_key(e), e.clone()))
            .collect()
    };
    key_set(have) == key_set(want)
        && have.metadata.labels == want.metadata.labels
        && have.metadata.annotations.clone().unwrap_or_default()
            == want.metadata.annotations.clone().unwrap_or_default()
}

/// The mirrored slices of one Endpoints, by (address type, ports key).
struct DesiredSlices {
    slices: BTreeMap<(String, String), EndpointSlice>,
    invalid: usize,
    skipped: usize,
}

fn desired_slices(ep: &Endpoints) -> DesiredSlices {
    let mut out = DesiredSlices {
        slices: BTreeMap::new(),
        invalid: 0,
        skipped: 0,
    };
    for subset in ep.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let pk = ports_key(&ports);
        let addresses = subset.addresses.iter().flatten().map(|a| (a, true)).chain(
            subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| (a, false)),
        );
        let mut added = 0;
        let mut total = 0;
        for (addr, ready) in addresses {
            total += 1;
            if added >= MAX_ENDPOINTS_PER_SUBSET {
                continue;
            }
            let Some(family) = Family::of(&addr.ip) else {
                out.invalid += 1;
                continue;
            };
            added += 1;
            let key = (family.address_type().to_string(), pk.clone());
            let slice = out
                .slices
                .entry(key)
                .or_insert_with(|| new_mirrored_slice(ep, family, &ports));
            let endpoint = address_endpoint(addr, ready);
            let id = endpoint_key(&endpoint);
            if !slice.endpoints.iter().any(|e| endpoint_key(e) == id) {
                slice.endpoints.push(endpoint);
            }
        }
        out.skipped += total - added;
    }
    out
}

fn address_endpoint(addr: &EndpointAddress, ready: bool) -> Endpoint {
    Endpoint {
        addresses: vec![addr.ip.clone()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            ..Default::default()
        }),
        hostname: addr.hostname.clone().filter(|h| !h.is_empty()),
        node_name: addr.node_name.clone().filter(|n| !n.is_empty()),
        target_ref: addr.target_ref.clone(),
        ..Default::default()
    }
}

fn new_mirrored_slice(ep: &Endpoints, family: Family, ports: &[EndpointPort]) -> EndpointSlice {
    let name = ep.metadata.name.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = ep
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != LABEL_SKIP_MIRROR)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(LABEL_SERVICE_NAME.into(), name.clone());
    labels.insert(LABEL_MANAGED_BY.into(), CONTROLLER_NAME.into());
    let annotations: BTreeMap<String, String> = ep
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != trigger_time::ANNOTATION && k.as_str() != LAST_APPLIED)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: ep.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: Some(vec![super::controller_utils::new_controller_ref(
                "v1",
                "Endpoints",
                &ep.metadata,
            )]),
            ..Default::default()
        },
        address_type: family.address_type().into(),
        endpoints: Vec::new(),
        ports: Some(ports.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_with_the_same_ports_merge_into_one_slice_per_address_type() {
        let ep: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "ext", "namespace": "default", "uid": "u",
                         "labels": {"team": "a", LABEL_SKIP_MIRROR: "false"},
                         "annotations": {LAST_APPLIED: "{}", "note": "x"}},
            "subsets": [
                {"addresses": [{"ip": "192.0.2.1"}], "notReadyAddresses": [{"ip": "192.0.2.2"}],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
                {"addresses": [{"ip": "192.0.2.3"}, {"ip": "2001:db8::1"}, {"ip": "not-an-ip"}],
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}]}))
        .expect("valid endpoints");
        let d = desired_slices(&ep);
        assert_eq!(d.invalid, 1);
        assert_eq!(d.skipped, 1);
        assert_eq!(d.slices.len(), 2);
        let v4 = d
            .slices
            .values()
            .find(|s| s.address_type == "IPv4")
            .expect("an IPv4 slice");
        let ready: Vec<(String, Option<bool>)> = v4
            .endpoints
            .iter()
            .map(|e| {
                (
                    e.addresses[0].clone(),
                    e.conditions.as_ref().and_then(|c| c.ready),
                )
            })
            .collect();
        assert_eq!(
            ready,
            vec![
                ("192.0.2.1".into(), Some(true)),
                ("192.0.2.2".into(), Some(false)),
                ("192.0.2.3".into(), Some(true))
            ]
        );
        let labels = v4.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels[LABEL_MANAGED_BY], CONTROLLER_NAME);
        assert_eq!(labels[LABEL_SERVICE_NAME], "ext");
        assert_eq!(labels["team"], "a");
        assert!(!labels.contains_key(LABEL_SKIP_MIRROR));
        let annotations = v4.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), vec!["note"]);
        let owner = &v4.metadata.owner_references.as_ref().expect("owned")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("Endpoints", Some(true))
        );
    }
}
