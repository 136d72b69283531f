//! The disruption controller: keeps every PodDisruptionBudget's status (healthy pods,
//! desired healthy pods, expected pods, disruptions allowed, the DisruptionAllowed
//! condition) current, so the `pods/eviction` subresource can decide from the status alone.
//!
//! The expected pod count of a percentage or maxUnavailable budget comes from the scale
//! subresource of the pods' controllers (a ReplicaSet's Deployment, a ReplicaSet,
//! ReplicationController or StatefulSet, or any other kind with a scale subresource, such
//! as a custom resource's), as upstream. Entries the API server added to
//! `status.disruptedPods` are dropped once their pod is deleting, gone, or two minutes old.

mod budget;
#[cfg(test)]
mod tests;

use super::controller_utils::{controller_ref, Selector};
use super::WorkQueue;
use super::{clock::Clock, run_workers, Action, Context, ControllerError, Reconciler, Stats};
use crate::events::{object_ref, Recorder, NORMAL, WARNING};
use crate::informers::{Change, Informer};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use kube::discovery::Scope;
use kube::runtime::reflector::{ObjectRef, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The controller's identity (`system:controller:disruption-controller`).
pub const CONTROLLER: &str = "disruption-controller";
const WORKERS: usize = 2;

pub struct DisruptionController {
    ctx: Context,
    queue: WorkQueue<String>,
    clock: Clock,
}

impl DisruptionController {
    pub fn new(ctx: Context) -> DisruptionController {
        DisruptionController {
            ctx,
            queue: WorkQueue::new(),
            clock: Clock::system(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let pdbs = self.ctx.informers.typed::<PodDisruptionBudget>();
        let pods = self.ctx.informers.typed::<Pod>();
        let replicasets = self.ctx.informers.typed::<ReplicaSet>();
        pdbs.synced().await?;
        pods.synced().await?;
        replicasets.synced().await?;
        let client = self.ctx.client_for(CONTROLLER);
        let reconciler = Arc::new(Sync {
            recorder: Recorder::spawn_for(client.clone(), CONTROLLER),
            client,
            pdbs: pdbs.store(),
            pods: pods.store(),
            replicasets: replicasets.store(),
            clock: self.clock,
        });
        let feed = feed(pdbs, pods, self.queue.clone());
        tokio::select! {
            _ = feed => Err(ControllerError::Invalid(format!("{CONTROLLER}: the informers' change feeds ended"))),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

fn key_of(ns: Option<&str>, name: Option<&str>) -> String {
    format!("{}/{}", ns.unwrap_or_default(), name.unwrap_or_default())
}

/// Budget changes queue the budget; pod changes queue every budget selecting the pod.
async fn feed(pdbs: Informer<PodDisruptionBudget>, pods: Informer<Pod>, queue: WorkQueue<String>) {
    let mut pdb_changes = pdbs.subscribe();
    let mut pod_changes = pods.subscribe();
    let store = pdbs.store();
    loop {
        tokio::select! {
            Some(change) = pdb_changes.next() => {
                let (Change::Applied(p) | Change::Deleted(p)) = change;
                queue.add(key_of(p.metadata.namespace.as_deref(), p.metadata.name.as_deref()));
            }
            Some(change) = pod_changes.next() => {
                let (Change::Applied(pod) | Change::Deleted(pod)) = change;
                for pdb in budgets_of(&store, &pod) {
                    queue.add(key_of(pdb.metadata.namespace.as_deref(), pdb.metadata.name.as_deref()));
                }
            }
            else => return,
        }
    }
}

/// The budgets in the pod's namespace whose (non-empty) selector matches it.
fn budgets_of(store: &Store<PodDisruptionBudget>, pod: &Pod) -> Vec<Arc<PodDisruptionBudget>> {
    store
        .state()
        .into_iter()
        .filter(|b| b.metadata.namespace == pod.metadata.namespace)
        .filter(|b| {
            let sel = Selector::new(b.spec.as_ref().and_then(|s| s.selector.as_ref()));
            !sel.is_everything() && sel.matches(pod.metadata.labels.as_ref())
        })
        .collect()
}

struct Sync {
    client: kube::Client,
    recorder: Recorder,
    pdbs: Store<PodDisruptionBudget>,
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
    clock: Clock,
}

impl Reconciler for Sync {
    type Key = String;
    const NAME: &'static str = "disruption";

    async fn reconcile(&self, key: &String) -> Result<Action, ControllerError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(Action::Done);
        };
        let Some(pdb) = self.pdbs.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Done);
        };
        let spec = pdb.spec.clone().unwrap_or_default();
        let selector = Selector::new(spec.selector.as_ref());
        let pods: Vec<Arc<Pod>> = self
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter(|p| !selector.is_everything() && selector.matches(p.metadata.labels.as_ref()))
            .collect();
        let pods: Vec<&Pod> = pods.iter().map(|p| p.as_ref()).collect();
        if pods.is_empty() {
            self.recorder.event(
                object_ref(pdb.as_ref()),
                NORMAL,
                "NoPods",
                "No matching pods found".into(),
            );
        }
        let now = self.clock.now();
        let generation = pdb.metadata.generation.unwrap_or(0);
        let old = pdb.status.clone().unwrap_or_default();
        let count = i32::try_from(pods.len()).unwrap_or(i32::MAX);
        let scale = self.expected_scale(ns, &pods).await;
        let (status, recheck) = match budget::expected_and_desired(&spec, count, move || scale) {
            Ok((expected, desired)) => {
                let (disrupted, recheck) =
                    budget::disrupted_pods(&pods, old.disrupted_pods.as_ref(), now);
                let current = budget::healthy(&pods, &disrupted);
                let status = budget::computed_status(
                    &old, generation, expected, desired, current, disrupted, now,
                );
                (status, recheck)
            }
            Err(why) => {
                self.recorder.event(
                    object_ref(pdb.as_ref()),
                    WARNING,
                    "CalculateExpectedPodCountFailed",
                    format!("Failed to calculate the number of expected pods: {why}"),
                );
                (budget::failed_status(&old, generation, why, now), None)
            }
        };
        if old != status {
            let mut updated = (*pdb).clone();
            updated.status = Some(status);
            let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), ns);
            api.replace_status(name, &PostParams::default(), &updated)
                .await?;
        }
        Ok(match recheck {
            Some(at) => {
                let wait = at.duration_since(now).unsigned_abs();
                Action::RequeueAfter(wait.max(Duration::from_millis(100)))
            }
            None => Action::Done,
        })
    }
}

impl Sync {
    /// The summed scale of the controllers of `pods`: each controller counted once; a pod
    /// without a controller with a scale makes the count unknown.
    async fn expected_scale(&self, ns: &str, pods: &[&Pod]) -> Result<i32, String> {
        let mut seen: BTreeMap<String, i32> = BTreeMap::new();
        for pod in pods {
            let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
            let Some(owner) = controller_ref(&pod.metadata) else {
                return Err(format!("found no controller ref for pod {pod_name:?}"));
            };
            if seen.contains_key(&owner.uid) {
                continue;
            }
            let (uid, replicas) = self
                .scale_of(ns, &owner.api_version, &owner.kind, &owner.name, &owner.uid)
                .await
                .ok_or_else(|| format!("found no controllers for pod {pod_name:?}"))?;
            seen.insert(owner.uid.clone(), 0);
            seen.insert(uid, replicas);
        }
        Ok(seen.values().sum())
    }

    /// (uid, replicas) of the scalable controller behind the owner reference: the
    /// Deployment above a ReplicaSet, else the owner itself.
    async fn scale_of(
        &self,
        ns: &str,
        api_version: &str,
        kind: &str,
        name: &str,
        uid: &str,
    ) -> Option<(String, i32)> {
        let c = self.client.clone();
        let scale = match (api_version, kind) {
            ("apps/v1", "ReplicaSet") => {
                let rs = self.replicasets.get(&ObjectRef::new(name).within(ns))?;
                if rs.metadata.uid.as_deref() != Some(uid) {
                    return None;
                }
                match controller_ref(&rs.metadata) {
                    Some(d) if d.kind == "Deployment" && d.api_version == "apps/v1" => {
                        let s = Api::<Deployment>::namespaced(c, ns)
                            .get_scale(&d.name)
                            .await
                            .ok()?;
                        return checked(s, &d.uid);
                    }
                    _ => Api::<ReplicaSet>::namespaced(c, ns)
                        .get_scale(name)
                        .await
                        .ok()?,
                }
            }
            ("v1", "ReplicationController") => Api::<ReplicationController>::namespaced(c, ns)
                .get_scale(name)
                .await
                .ok()?,
            ("apps/v1", "StatefulSet") => Api::<StatefulSet>::namespaced(c, ns)
                .get_scale(name)
                .await
                .ok()?,
            _ => self.any_scale(ns, api_version, kind, name).await?,
        };
        checked(scale, uid)
    }

    /// The scale subresource of any other kind (a custom resource's), as upstream's
    /// `getScaleController`: the kind's resource is found by discovering its group version.
    async fn any_scale(
        &self,
        ns: &str,
        api_version: &str,
        kind: &str,
        name: &str,
    ) -> Option<k8s_openapi::api::autoscaling::v1::Scale> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .ok()?;
        let api: Api<DynamicObject> = match caps.scope {
            Scope::Namespaced => Api::namespaced_with(self.client.clone(), ns, &ar),
            Scope::Cluster => Api::all_with(self.client.clone(), &ar),
        };
        api.get_scale(name).await.ok()
    }
}

/// The scale's replicas, if it belongs to the object with `uid` (not a namesake).
fn checked(s: k8s_openapi::api::autoscaling::v1::Scale, uid: &str) -> Option<(String, i32)> {
    (s.metadata.uid.as_deref() == Some(uid))
        .then(|| (uid.to_owned(), s.spec.and_then(|s| s.replicas).unwrap_or(0)))
}
