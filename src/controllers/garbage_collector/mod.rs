//! The garbage collector (upstream's `garbagecollector` controller): deletes objects whose
//! owners are gone, and carries out foreground and orphan deletion.
//!
//! How it works:
//! - A metadata-only shared informer per deletable resource type (built-in and custom; the
//!   set follows CRDs as they come and go; events excepted, as upstream) feeds one graph
//!   builder task, which keeps the [`graph::Graph`] of owners and dependents by UID.
//!   Nothing scans every type per deleted owner: an owner's dependents are found in the
//!   graph.
//! - The graph turns changes into work on a [`WorkQueue`]; workers act through the API:
//!   - *attempt to delete* an object: look at each owner live (GET, with a cache of owners
//!     known absent). Owners that exist and are not being deleted in the foreground keep it;
//!     dangling references (absent, or a different UID) and references to owners waiting in
//!     the foreground are removed when some owner still holds it; if none does, the object is
//!     deleted (Foreground if an owner is waiting and it has dependents itself, else by its
//!     own finalizers: Orphan, Foreground, or Background).
//!   - a *virtual* owner (named by a reference, never seen) is looked up; if the API does
//!     not have it (an owner that never existed or is gone), its dependents are rechecked.
//!   - an object whose owner waits in the foreground and that has dependents is deleted in
//!     the foreground too; if one of those dependents also waits (an ownership cycle), its
//!     own references stop blocking first, so the cycle unwinds (upstream's rule).
//!   - an owner in *foreground deletion* (`foregroundDeletion` finalizer) waits until no
//!     dependent with `blockOwnerDeletion: true` is left, then loses the finalizer.
//!   - an owner with the *orphan* finalizer has its UID removed from its dependents' owner
//!     references, then loses the finalizer.
//! - Namespaced owners are looked up in their dependent's namespace; cluster-scoped owners
//!   (of namespaced or cluster-scoped dependents) at cluster scope; a cluster-scoped object
//!   that names a namespaced owner is left alone, as upstream does.

pub mod graph;

use super::discovery::{ResourceType, ResourceTypes};
use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::informers::Change;
use futures::StreamExt;
use graph::{Graph, Identity, Observed, OwnerRef, Uid, Work, FOREGROUND, ORPHAN};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams,
    Preconditions, PropagationPolicy,
};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Concurrent workers (upstream runs 20 per queue; requests here are in-process).
const WORKERS: usize = 16;
/// Owners known to be absent are remembered up to this many UIDs.
const ABSENT_CACHE_LIMIT: usize = 100_000;

pub struct GarbageCollector {
    ctx: Context,
    queue: WorkQueue<Work>,
}

/// One informer change, with the type it came from.
struct GraphEvent {
    rt: Arc<ResourceType>,
    change: Change<PartialObjectMeta<DynamicObject>>,
}

impl GarbageCollector {
    pub fn new(ctx: Context) -> GarbageCollector {
        GarbageCollector {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let client = self.ctx.client_for("generic-garbage-collector");
        let types = Arc::new(ResourceTypes::discover(&client).await?);
        let state = Arc::new(Shared {
            client,
            graph: Mutex::new(Graph::default()),
            types: Mutex::new(types.clone()),
            absent: Mutex::new(HashSet::new()),
            queue: self.queue.clone(),
        });
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut monitors = Monitors {
            informers: self.ctx.informers.clone(),
            running: HashMap::new(),
            events: events_tx,
            shutdown: shutdown.clone(),
        };
        monitors.sync(&types).await?;
        let crds = self.ctx.informers.typed::<CustomResourceDefinition>();
        crds.synced().await?;
        let builder = build_graph(state.clone(), events_rx);
        // CRDs come and go: follow them with the set of monitored types.
        let follow_types = {
            let state = state.clone();
            let mut crd_changes = crds.subscribe();
            async move {
                while crd_changes.next().await.is_some() {
                    // Coalesce a burst of CRD changes into one discovery.
                    while let Some(Some(_)) = futures::FutureExt::now_or_never(crd_changes.next()) {
                    }
                    let types = match ResourceTypes::discover(&state.client).await {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::warn!(error = %e, "garbage collector: discovery failed");
                            continue;
                        }
                    };
                    monitors.sync(&types).await?;
                    *state.types.lock() = Arc::new(types);
                }
                Ok(())
            }
        };
        let workers = run_workers(
            Arc::new(Worker {
                shared: state.clone(),
            }),
            self.queue,
            WORKERS,
            shutdown.clone(),
        );
        tokio::select! {
            _ = builder => Err(ControllerError::Invalid("garbage collector graph builder stopped".into())),
            r = follow_types => r.and(Err(ControllerError::Invalid("garbage collector stopped following CRDs".into()))),
            _ = workers => Ok(()),
        }
    }
}

/// The running metadata informers, by type.
struct Monitors {
    informers: crate::informers::Informers,
    running: HashMap<String, (ApiResource, tokio::task::JoinHandle<()>)>,
    events: mpsc::UnboundedSender<GraphEvent>,
    shutdown: CancellationToken,
}

impl Monitors {
    /// Starts monitors for new deletable types and stops those of vanished ones; waits
    /// until the new ones have listed.
    async fn sync(&mut self, types: &ResourceTypes) -> Result<(), ControllerError> {
        let wanted: HashMap<String, &ResourceType> =
            types.collectable().map(|t| (key(&t.ar), t)).collect();
        let gone: Vec<String> = self
            .running
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some((ar, task)) = self.running.remove(&k) {
                task.abort();
                self.informers.forget_metadata(&ar);
            }
        }
        let mut started = Vec::new();
        for (k, t) in wanted {
            if self.running.contains_key(&k) {
                continue;
            }
            let informer = self.informers.metadata(&t.ar);
            let rt = Arc::new(t.clone());
            let tx = self.events.clone();
            let mut changes = informer.subscribe();
            let stop = self.shutdown.clone();
            let task = tokio::spawn(async move {
                loop {
                    let change = tokio::select! {
                        _ = stop.cancelled() => return,
                        c = changes.next() => match c { Some(c) => c, None => return },
                    };
                    if tx
                        .send(GraphEvent {
                            rt: rt.clone(),
                            change,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            });
            self.running.insert(k, (t.ar.clone(), task));
            started.push(informer);
        }
        for informer in started {
            informer.synced().await?;
        }
        Ok(())
    }
}

fn key(ar: &ApiResource) -> String {
    format!("{} {}", ar.api_version, ar.plural)
}

/// The graph builder: the only writer of the graph.
async fn build_graph(state: Arc<Shared>, mut events: mpsc::UnboundedReceiver<GraphEvent>) {
    while let Some(ev) = events.recv().await {
        let work = {
            let mut graph = state.graph.lock();
            match &ev.change {
                Change::Applied(obj) => graph.observe(observed(&ev.rt, obj)),
                Change::Deleted(obj) => {
                    graph.remove(obj.metadata.uid.as_deref().unwrap_or_default())
                }
            }
        };
        for w in work {
            state.queue.add(w);
        }
    }
}

fn observed(rt: &ResourceType, obj: &PartialObjectMeta<DynamicObject>) -> Observed {
    let m = &obj.metadata;
    Observed {
        identity: Identity {
            api_version: rt.ar.api_version.clone(),
            kind: rt.ar.kind.clone(),
            namespace: m.namespace.clone(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
        },
        owners: m
            .owner_references
            .iter()
            .flatten()
            .map(|o| OwnerRef {
                api_version: o.api_version.clone(),
                kind: o.kind.clone(),
                name: o.name.clone(),
                uid: o.uid.clone(),
                block_owner_deletion: o.block_owner_deletion.unwrap_or(false),
            })
            .collect(),
        being_deleted: m.deletion_timestamp.is_some(),
        finalizers: m.finalizers.clone().unwrap_or_default(),
    }
}

struct Shared {
    client: kube::Client,
    graph: Mutex<Graph>,
    types: Mutex<Arc<ResourceTypes>>,
    /// UIDs of owners the API said do not exist.
    absent: Mutex<HashSet<Uid>>,
    queue: WorkQueue<Work>,
}

struct Worker {
    shared: Arc<Shared>,
}

/// What an owner reference points at, as the API sees it now.
enum OwnerState {
    /// Exists with that UID and is not waiting for its dependents.
    Solid,
    /// Absent, or the name now belongs to another UID.
    Dangling,
    /// Exists and is in foreground deletion.
    Waiting,
    /// Cannot be resolved (a cluster-scoped object naming a namespaced owner).
    Unresolvable,
}

impl Reconciler for Worker {
    type Key = Work;
    const NAME: &'static str = "garbage-collector";

    async fn reconcile(&self, work: &Work) -> Result<Action, ControllerError> {
        match work {
            Work::AttemptToDelete(uid) => self.attempt_to_delete(uid).await,
            Work::Orphan(uid) => self.orphan_dependents(uid).await,
        }
    }
}

impl Worker {
    /// The served type an `apiVersion` + `kind` names (retried with backoff while unknown).
    fn resolve(&self, api_version: &str, kind: &str) -> Result<ResourceType, ControllerError> {
        self.shared
            .types
            .lock()
            .resolve(api_version, kind)
            .ok_or_else(|| {
                ControllerError::Invalid(format!(
                    "unable to get REST mapping for {api_version}/{kind}"
                ))
            })
    }

    fn api_for(
        &self,
        identity: &Identity,
    ) -> Result<(Api<DynamicObject>, ResourceType), ControllerError> {
        let rt = self.resolve(&identity.api_version, &identity.kind)?;
        let api = match (&identity.namespace, rt.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.shared.client.clone(), ns, &rt.ar),
            _ => Api::all_with(self.shared.client.clone(), &rt.ar),
        };
        Ok((api, rt))
    }

    fn enqueue(&self, work: Vec<Work>) {
        for w in work {
            self.shared.queue.add(w);
        }
    }

    async fn attempt_to_delete(&self, uid: &str) -> Result<Action, ControllerError> {
        let Some(node) = self.shared.graph.lock().view(uid) else {
            return Ok(Action::Done);
        };
        if node.is_virtual {
            return self.check_virtual(&node.identity).await;
        }
        if node.deleting_dependents {
            return self.finish_foreground(&node).await;
        }
        let (api, _) = self.api_for(&node.identity)?;
        let latest = match api.get_metadata_opt(&node.identity.name).await? {
            Some(l) if l.metadata.uid.as_deref() == Some(uid) => l,
            // Gone (or replaced) without the informer having said so yet.
            _ => {
                let work = self.shared.graph.lock().remove(uid);
                self.enqueue(work);
                return Ok(Action::Done);
            }
        };
        let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
        if latest.metadata.deletion_timestamp.is_some()
            && !finalizers.iter().any(|f| f == FOREGROUND)
        {
            return Ok(Action::Done);
        }
        let owners = latest.metadata.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(Action::Done);
        }
        let (mut solid, mut dangling, mut waiting) = (0, Vec::new(), Vec::new());
        for o in &owners {
            match self.owner_state(&node.identity, o).await? {
                OwnerState::Solid | OwnerState::Unresolvable => solid += 1,
                OwnerState::Dangling => dangling.push(o.uid.clone()),
                OwnerState::Waiting => waiting.push(o.uid.clone()),
            }
        }
        let name = &node.identity.name;
        let rv = latest.metadata.resource_version.clone();
        if solid > 0 {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(Action::Done);
            }
            // Still owned: only drop the references that no longer hold it.
            let kept: Vec<_> = owners
                .iter()
                .filter(|o| !dangling.contains(&o.uid) && !waiting.contains(&o.uid))
                .collect();
            let patch = json!({"metadata": {"ownerReferences": refs_or_null(&kept), "resourceVersion": rv}});
            tracing::debug!(object = %name, removed = ?[&dangling[..], &waiting[..]].concat(), "removing owner references");
            return patch_ignoring_gone(&api, name, &patch).await;
        }
        let policy = if !waiting.is_empty() && !node.dependents.is_empty() {
            if node.a_dependent_is_deleting_dependents {
                // Possibly an ownership cycle (an owner waits for us, we would wait for a
                // dependent that waits too): stop blocking our owners so the cycle
                // unwinds, as upstream does.
                let unblocked: Vec<_> = owners
                    .iter()
                    .cloned()
                    .map(|mut o| {
                        if o.block_owner_deletion == Some(true) {
                            o.block_owner_deletion = Some(false);
                        }
                        o
                    })
                    .collect();
                let patch =
                    json!({"metadata": {"ownerReferences": unblocked, "resourceVersion": rv}});
                patch_ignoring_gone(&api, name, &patch).await?;
            }
            // Its own dependents must go first so the waiting owner sees them leave.
            PropagationPolicy::Foreground
        } else if finalizers.iter().any(|f| f == ORPHAN) {
            PropagationPolicy::Orphan
        } else if finalizers.iter().any(|f| f == FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::debug!(object = %name, ?policy, "deleting: no owner holds it");
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            // The version the decision was made on: if the object changed since (an orphaning
            // owner removed its reference meanwhile), the delete fails instead of removing
            // something that no longer depends on a dangling owner (upstream does the same).
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: rv,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => Ok(Action::Done),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::Done),
            // Changed since it was read, or replaced by a namesake: decide again on what is
            // there now.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::Backoff),
            Err(e) => Err(e.into()),
        }
    }

    async fn owner_state(
        &self,
        dependent: &Identity,
        owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<OwnerState, ControllerError> {
        if self.shared.absent.lock().contains(&owner.uid) {
            return Ok(OwnerState::Dangling);
        }
        let rt = self.resolve(&owner.api_version, &owner.kind)?;
        let api: Api<DynamicObject> = match (rt.namespaced, &dependent.namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.shared.client.clone(), ns, &rt.ar),
            (true, None) => return Ok(OwnerState::Unresolvable),
            (false, _) => Api::all_with(self.shared.client.clone(), &rt.ar),
        };
        match api.get_metadata_opt(&owner.name).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
                let waiting = o.metadata.deletion_timestamp.is_some()
                    && o.metadata
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == FOREGROUND);
                Ok(if waiting {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                })
            }
            _ => {
                let mut absent = self.shared.absent.lock();
                if absent.len() >= ABSENT_CACHE_LIMIT {
                    absent.clear();
                }
                absent.insert(owner.uid.clone());
                Ok(OwnerState::Dangling)
            }
        }
    }

    /// A virtual node: does the owner exist? If not, its dependents are rechecked.
    async fn check_virtual(&self, identity: &Identity) -> Result<Action, ControllerError> {
        let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: identity.api_version.clone(),
            kind: identity.kind.clone(),
            name: identity.name.clone(),
            uid: identity.uid.clone(),
            ..Default::default()
        };
        match self.owner_state(identity, &owner).await {
            Ok(OwnerState::Dangling) => {
                let work = self.shared.graph.lock().remove_virtual(&identity.uid);
                self.enqueue(work);
                Ok(Action::Done)
            }
            // It exists: its informer will show it. Until then look again, with backoff:
            // an owner added and removed before its informer listed would otherwise stay
            // virtual for ever and keep its dependents (upstream's issue 56121).
            Ok(OwnerState::Solid | OwnerState::Waiting) => {
                let still_virtual = self
                    .shared
                    .graph
                    .lock()
                    .view(&identity.uid)
                    .is_some_and(|n| n.is_virtual);
                Ok(if still_virtual {
                    Action::Backoff
                } else {
                    Action::Done
                })
            }
            Ok(OwnerState::Unresolvable) => Ok(Action::Done),
            Err(e) => Err(e),
        }
    }

    /// An owner in foreground deletion: drop its finalizer once no blocking dependent is
    /// left; until then make sure those dependents are being deleted.
    async fn finish_foreground(&self, node: &graph::NodeView) -> Result<Action, ControllerError> {
        if !node.blocking_dependents.is_empty() {
            for (dep, being_deleted) in &node.blocking_dependents {
                if !being_deleted {
                    self.shared
                        .queue
                        .add(Work::AttemptToDelete(dep.uid.clone()));
                }
            }
            return Ok(Action::Done);
        }
        self.remove_finalizer(&node.identity, FOREGROUND).await
    }

    async fn orphan_dependents(&self, uid: &str) -> Result<Action, ControllerError> {
        let Some(node) = self.shared.graph.lock().view(uid) else {
            return Ok(Action::Done);
        };
        for dep in &node.dependents {
            let (api, _) = self.api_for(dep)?;
            let Some(latest) = api.get_metadata_opt(&dep.name).await? else {
                continue;
            };
            let owners = latest.metadata.owner_references.clone().unwrap_or_default();
            if !owners.iter().any(|o| o.uid == uid) {
                continue;
            }
            let kept: Vec<_> = owners.iter().filter(|o| o.uid != uid).collect();
            let patch = json!({"metadata": {
                "ownerReferences": refs_or_null(&kept),
                "resourceVersion": latest.metadata.resource_version,
            }});
            patch_ignoring_gone(&api, &dep.name, &patch).await?;
        }
        self.remove_finalizer(&node.identity, ORPHAN).await
    }

    async fn remove_finalizer(
        &self,
        identity: &Identity,
        finalizer: &str,
    ) -> Result<Action, ControllerError> {
        let (api, _) = self.api_for(identity)?;
        let Some(latest) = api.get_metadata_opt(&identity.name).await? else {
            return Ok(Action::Done);
        };
        if latest.metadata.uid.as_deref() != Some(identity.uid.as_str()) {
            return Ok(Action::Done);
        }
        let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(Action::Done);
        }
        let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
        let patch = json!({"metadata": {
            "finalizers": kept,
            "resourceVersion": latest.metadata.resource_version,
        }});
        tracing::debug!(object = %identity.name, finalizer, "removing finalizer");
        patch_ignoring_gone(&api, &identity.name, &patch).await
    }
}

/// The owner references left after removing some: `null` (field removed) when none is.
fn refs_or_null<T: serde::Serialize>(kept: &[T]) -> serde_json::Value {
    if kept.is_empty() {
        serde_json::Value::Null
    } else {
        json!(kept)
    }
}

/// A merge patch guarded by the resourceVersion in it: 404 means done; 409 is an error, so
/// the key is retried with the newer state.
async fn patch_ignoring_gone(
    api: &Api<DynamicObject>,
    name: &str,
    patch: &serde_json::Value,
) -> Result<Action, ControllerError> {
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(Action::Done),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Action::Done),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests;
