//! ResourceQuota status (upstream's resourcequota controller): sets each quota's
//! `status.hard` from `spec.hard` and recounts `status.used` from the objects in its
//! namespace — when a quota is created or its `spec.hard` changes, when a counted object is
//! deleted (so usage goes down when pods go), and every five minutes (upstream's
//! `--resource-quota-sync-period`).
//!
//! Keys are namespaces: one reconcile recounts every quota of the namespace, reading each
//! kind of object once. Usage is computed by the same evaluators the ResourceQuota
//! admission plugin charges with ([`crate::apiserver::admission::resource_quota::usage`]).
//!
//! Deletions of pods, services, claims, configmaps, secrets and replication controllers are
//! seen at once; other `count/...` kinds and pods turning terminal are recounted at the
//! periodic resync. Status writes carry the quota's resourceVersion, so a charge admission
//! makes meanwhile turns the write into a conflict and a fresh recount.

use super::discovery::ResourceTypes;
use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::api::quantity::Quantity;
use crate::apiserver::admission::resource_quota::usage::{
    self, kind_of, matching_resources, resource_list, Kind, ResourceList,
};
use crate::informers::Change;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota,
    ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Upstream's default full resync period.
const RESYNC: Duration = Duration::from_secs(5 * 60);
const WORKERS: usize = 2;

pub struct ResourceQuotaController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl ResourceQuotaController {
    pub fn new(ctx: Context) -> ResourceQuotaController {
        ResourceQuotaController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let quotas = self.ctx.informers.typed::<ResourceQuota>();
        quotas.synced().await?;
        let store = quotas.store();
        // Every namespace with quotas once at start; each reconcile then asks for the next
        // periodic resync.
        for q in store.state() {
            if let Some(ns) = &q.metadata.namespace {
                self.queue.add(ns.clone());
            }
        }
        let mut feeds = tokio::task::JoinSet::new();
        let queue = self.queue.clone();
        let mut changes = quotas.subscribe();
        feeds.spawn(async move {
            while let Some(change) = changes.next().await {
                if let Change::Applied(q) = change {
                    if needs_sync(&q) {
                        if let Some(ns) = &q.metadata.namespace {
                            queue.add(ns.clone());
                        }
                    }
                }
            }
        });
        for ar in [
            ApiResource::erase::<Pod>(&()),
            ApiResource::erase::<Service>(&()),
            ApiResource::erase::<PersistentVolumeClaim>(&()),
            ApiResource::erase::<ConfigMap>(&()),
            ApiResource::erase::<Secret>(&()),
            ApiResource::erase::<ReplicationController>(&()),
        ] {
            let mut changes = self.ctx.informers.metadata(&ar).subscribe();
            let queue = self.queue.clone();
            let store = store.clone();
            feeds.spawn(async move {
                while let Some(change) = changes.next().await {
                    let Change::Deleted(obj) = change else {
                        continue;
                    };
                    let Some(ns) = obj.metadata.namespace.as_deref() else {
                        continue;
                    };
                    let has_quota = store
                        .state()
                        .iter()
                        .any(|q| q.metadata.namespace.as_deref() == Some(ns));
                    if has_quota {
                        queue.add(ns.to_owned());
                    }
                }
            });
        }
        let reconciler = Arc::new(Reconcile {
            client: self.ctx.client_for("resourcequota-controller"),
        });
        tokio::select! {
            _ = feeds.join_next() => Err(ControllerError::Invalid("resource_quota: an informer's change feed ended".into())),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

/// Whether a quota's status does not yet reflect its spec.
fn needs_sync(q: &ResourceQuota) -> bool {
    let spec = q
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let status = q.status.as_ref();
    let hard = status.and_then(|s| s.hard.clone()).unwrap_or_default();
    let used = status.and_then(|s| s.used.clone()).unwrap_or_default();
    !same(&spec, &hard) || spec.keys().any(|k| !used.contains_key(k))
}

/// Equal as quantities (`1k` == `1000`).
fn same(a: &BTreeMap<String, K8sQuantity>, b: &BTreeMap<String, K8sQuantity>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k).is_some_and(|w| {
                Quantity::parse(&v.0)
                    .ok()
                    .zip(Quantity::parse(&w.0).ok())
                    .is_some_and(|(x, y)| x == y)
            })
        })
}

struct Reconcile {
    client: kube::Client,
}

/// Which objects a quota resource name counts: `(group, plural, evaluator)`.
fn counted_by(name: &str) -> Option<(String, String, Kind)> {
    let one = [name.to_owned()];
    for (plural, kind) in [
        ("pods", Kind::Pods),
        ("services", Kind::Services),
        ("persistentvolumeclaims", Kind::Claims),
    ] {
        if !matching_resources("", plural, kind, one.iter()).is_empty() {
            return Some((String::new(), plural.to_owned(), kind));
        }
    }
    let (plural, group) = match name.strip_prefix("count/") {
        Some(rest) => rest.split_once('.').unwrap_or((rest, "")),
        None => (name, ""),
    };
    let kind = kind_of(group, plural)?;
    (!matching_resources(group, plural, kind, one.iter()).is_empty())
        .then(|| (group.to_owned(), plural.to_owned(), kind))
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "resource_quota";

    async fn reconcile(&self, ns: &String) -> Result<Action, ControllerError> {
        let api: Api<ResourceQuota> = Api::namespaced(self.client.clone(), ns);
        let quotas = api.list(&ListParams::default()).await?;
        if quotas.items.is_empty() {
            return Ok(Action::Done);
        }
        let mut objects: HashMap<(String, String), Vec<Value>> = HashMap::new();
        let mut types: Option<ResourceTypes> = None;
        for q in &quotas.items {
            let qv =
                serde_json::to_value(q).map_err(|e| ControllerError::Invalid(e.to_string()))?;
            let spec_hard = q
                .spec
                .as_ref()
                .and_then(|s| s.hard.clone())
                .unwrap_or_default();
            let mut used = ResourceList::new();
            for name in spec_hard.keys() {
                let Some((group, plural, kind)) = counted_by(name) else {
                    continue;
                };
                let key = (group.clone(), plural.clone());
                if !objects.contains_key(&key) {
                    let list = self.list(ns, &group, &plural, &mut types).await?;
                    objects.insert(key.clone(), list);
                }
                let total = objects[&key]
                    .iter()
                    .filter(|o| usage::in_scopes(kind, &qv, o))
                    .filter_map(|o| usage::usage(&group, &plural, kind, o).get(name).copied())
                    .fold(Quantity::ZERO, Quantity::plus);
                used.insert(name.clone(), total);
            }
            let status_used = resource_list(&qv["status"]["used"]);
            let status_hard = q
                .status
                .as_ref()
                .and_then(|s| s.hard.clone())
                .unwrap_or_default();
            if same(&spec_hard, &status_hard) && status_used == used {
                continue;
            }
            let mut updated = q.clone();
            updated.status = Some(ResourceQuotaStatus {
                hard: Some(spec_hard),
                used: Some(
                    used.iter()
                        .map(|(k, v)| (k.clone(), K8sQuantity(v.to_string())))
                        .collect(),
                ),
            });
            let name = q.metadata.name.clone().unwrap_or_default();
            api.replace_status(&name, &PostParams::default(), &updated)
                .await?;
        }
        Ok(Action::RequeueAfter(RESYNC))
    }
}

impl Reconcile {
    /// Every object of `group/plural` in `ns`, as JSON.
    async fn list(
        &self,
        ns: &str,
        group: &str,
        plural: &str,
        types: &mut Option<ResourceTypes>,
    ) -> Result<Vec<Value>, ControllerError> {
        if types.is_none() {
            *types = Some(ResourceTypes::discover(&self.client).await?);
        }
        let Some(t) = types.as_ref().and_then(|ts| {
            ts.all()
                .iter()
                .find(|t| t.ar.group == group && t.ar.plural == plural)
        }) else {
            // Not served (a CRD not installed yet): nothing to count.
            return Ok(Vec::new());
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &t.ar);
        let list = api.list(&ListParams::default()).await?;
        list.items
            .into_iter()
            .map(|o| serde_json::to_value(o).map_err(|e| ControllerError::Invalid(e.to_string())))
            .collect()
    }
}
