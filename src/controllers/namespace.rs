//! Namespace deletion (upstream's namespace controller): when a namespace is Terminating,
//! delete everything in it — pods first, then every other namespaced type the API serves,
//! custom resources included — through the API (so finalizers, graceful pod deletion and
//! garbage collection apply), report progress in the namespace's status conditions, and
//! once nothing is left remove the `kubernetes` finalizer through `namespaces/{name}/finalize`,
//! which lets the API server remove the namespace.

use super::discovery::{ResourceType, ResourceTypes};
use super::{run_on_informer, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::informers::Change;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::verbs;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The finalizer this controller owns on every namespace.
pub const FINALIZER: &str = "kubernetes";
/// How often a namespace whose content is still going away is looked at again.
const RECHECK: Duration = Duration::from_secs(1);
const WORKERS: usize = 4;

pub struct NamespaceController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl NamespaceController {
    pub fn new(ctx: Context) -> NamespaceController {
        NamespaceController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let informer = self.ctx.informers.typed::<Namespace>();
        let reconciler = Arc::new(Reconcile {
            client: self.ctx.client_for("namespace-controller"),
            namespaces: informer.store(),
        });
        // Only namespaces being deleted are this controller's business.
        let key_of = |change: &Change<Namespace>| match change {
            Change::Applied(ns) if ns.metadata.deletion_timestamp.is_some() => {
                ns.metadata.name.clone()
            }
            _ => None,
        };
        run_on_informer(informer, key_of, reconciler, self.queue, WORKERS, shutdown).await
    }
}

struct Reconcile {
    client: kube::Client,
    namespaces: kube::runtime::reflector::Store<Namespace>,
}

/// What is left in a namespace after a deletion pass.
#[derive(Default)]
struct Remaining {
    /// "configmaps" / "deployments.apps" → count
    by_resource: BTreeMap<String, usize>,
    /// finalizer → count of objects carrying it
    finalizers: BTreeMap<String, usize>,
    /// errors deleting or listing, by resource
    failures: Vec<String>,
}

impl Remaining {
    fn is_empty(&self) -> bool {
        self.by_resource.is_empty() && self.failures.is_empty()
    }
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "namespace";

    async fn reconcile(&self, name: &String) -> Result<Action, ControllerError> {
        let key = kube::runtime::reflector::ObjectRef::new(name);
        let Some(ns) = self.namespaces.get(&key) else {
            return Ok(Action::Done);
        };
        if ns.metadata.deletion_timestamp.is_none() {
            return Ok(Action::Done);
        }
        let finalizers = ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(Action::Done);
        }
        let types = ResourceTypes::discover(&self.client).await?;
        let namespaced: Vec<&ResourceType> = types
            .all()
            .iter()
            .filter(|t| t.namespaced && t.supports(verbs::LIST))
            .collect();
        // Pods go first and must be gone before the rest is deleted, so workloads cannot
        // recreate them and their controllers see them leave (upstream's ordered deletion).
        let (pods, rest): (Vec<&ResourceType>, Vec<&ResourceType>) = namespaced
            .into_iter()
            .partition(|t| t.ar.group.is_empty() && t.ar.plural == "pods");
        let mut remaining = self.delete_content(name, &pods).await;
        if remaining.is_empty() {
            remaining = self.delete_content(name, &rest).await;
        }
        self.report(&ns, &remaining).await?;
        if !remaining.is_empty() {
            tracing::debug!(ns = %name, left = ?remaining.by_resource, "namespace content still going away");
            return Ok(Action::RequeueAfter(RECHECK));
        }
        self.finalize(&ns).await?;
        Ok(Action::Done)
    }
}

impl Reconcile {
    /// Deletes all objects of `types` in `ns` and reports what is still there.
    async fn delete_content(&self, ns: &str, types: &[&ResourceType]) -> Remaining {
        let mut left = Remaining::default();
        for t in types {
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &t.ar);
            let deleted = if t.supports(verbs::DELETE_COLLECTION) {
                api.delete_collection(&DeleteParams::background(), &ListParams::default())
                    .await
                    .map(|_| ())
            } else if t.supports(verbs::DELETE) {
                self.delete_each(&api).await
            } else {
                Ok(())
            };
            if let Err(e) = deleted {
                left.failures.push(format!("{}: {e}", group_resource(t)));
                continue;
            }
            match api.list_metadata(&ListParams::default()).await {
                Ok(list) if list.items.is_empty() => {}
                Ok(list) => {
                    left.by_resource.insert(group_resource(t), list.items.len());
                    for item in &list.items {
                        for f in item.metadata.finalizers.iter().flatten() {
                            *left.finalizers.entry(f.clone()).or_default() += 1;
                        }
                    }
                }
                Err(e) => left.failures.push(format!("{}: {e}", group_resource(t))),
            }
        }
        left
    }

    async fn delete_each(&self, api: &Api<DynamicObject>) -> Result<(), kube::Error> {
        for item in api.list_metadata(&ListParams::default()).await?.items {
            let name = item.metadata.name.unwrap_or_default();
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Writes the deletion conditions upstream shows in `kubectl describe namespace`.
    async fn report(&self, ns: &Namespace, left: &Remaining) -> Result<(), ControllerError> {
        let content = left
            .by_resource
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect::<Vec<_>>();
        let finalizers = left
            .finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect::<Vec<_>>();
        let wanted = [
            condition(
                "NamespaceDeletionDiscoveryFailure",
                None,
                (
                    "ResourcesDiscovered",
                    "All resources successfully discovered",
                ),
                "DiscoveryFailed",
            ),
            condition(
                "NamespaceDeletionGroupVersionParsingFailure",
                None,
                (
                    "ParsedGroupVersions",
                    "All legacy kube types successfully parsed",
                ),
                "GroupVersionParsingFailed",
            ),
            condition(
                "NamespaceDeletionContentFailure",
                (!left.failures.is_empty()).then(|| {
                    format!(
                        "Failed to delete all resource types, {} remaining: {}",
                        left.failures.len(),
                        left.failures.join(", ")
                    )
                }),
                (
                    "ContentDeleted",
                    "All content successfully deleted, may be waiting on finalization",
                ),
                "ContentDeletionFailed",
            ),
            condition(
                "NamespaceContentRemaining",
                (!content.is_empty())
                    .then(|| format!("Some resources are remaining: {}", content.join(", "))),
                ("ContentRemoved", "All content successfully removed"),
                "SomeResourcesRemain",
            ),
            condition(
                "NamespaceFinalizersRemaining",
                (!finalizers.is_empty()).then(|| {
                    format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        finalizers.join(", ")
                    )
                }),
                (
                    "ContentHasNoFinalizers",
                    "All content-preserving finalizers finished",
                ),
                "SomeFinalizersRemain",
            ),
        ];
        let current = ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let same = |c: &NamespaceCondition| {
            current.iter().any(|o| {
                o.type_ == c.type_
                    && o.status == c.status
                    && o.reason == c.reason
                    && o.message == c.message
            })
        };
        if wanted.iter().all(same) {
            return Ok(());
        }
        let mut updated = ns.clone();
        let status = updated.status.get_or_insert_with(Default::default);
        let mut conditions: Vec<NamespaceCondition> = current
            .into_iter()
            .filter(|c| !wanted.iter().any(|w| w.type_ == c.type_))
            .collect();
        conditions.extend(wanted);
        status.conditions = Some(conditions);
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = ns.metadata.name.clone().unwrap_or_default();
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            // Stale cache or already gone: the next change brings the key back.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes this controller's finalizer; the API server deletes the namespace when it was
    /// the last one.
    async fn finalize(&self, ns: &Namespace) -> Result<(), ControllerError> {
        let mut updated = ns.clone();
        if let Some(spec) = updated.spec.as_mut() {
            if let Some(f) = spec.finalizers.as_mut() {
                f.retain(|x| x != FINALIZER);
            }
        }
        // Unconditional (namespaces allow it): the cached copy may predate our own status
        // write, and only spec.finalizers is taken from this body anyway.
        updated.metadata.resource_version = None;
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = ns.metadata.name.clone().unwrap_or_default();
        match api
            .replace_subresource("finalize", &name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn group_resource(t: &ResourceType) -> String {
    if t.ar.group.is_empty() {
        t.ar.plural.clone()
    } else {
        format!("{}.{}", t.ar.plural, t.ar.group)
    }
}

/// A deletion condition: True with `reason`/message when `problem` is set, else False with
/// the ok reason and message.
fn condition(
    type_: &str,
    problem: Option<String>,
    ok: (&str, &str),
    reason: &str,
) -> NamespaceCondition {
    let (status, reason, message) = match problem {
        Some(m) => ("True", reason.to_owned(), m),
        None => ("False", ok.0.to_owned(), ok.1.to_owned()),
    };
    NamespaceCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason),
        message: Some(message),
        last_transition_time: Some(Time(k8s_openapi::jiff::Timestamp::now())),
    }
}

#[cfg(test)]
mod tests {
    use crate::controllers::testing::{eventually, Cluster};
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
    use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
    use serde_json::json;

    #[tokio::test]
    async fn deleting_a_namespace_deletes_its_content_then_the_namespace() {
        let c = Cluster::start().await;
        let nss: Api<Namespace> = Api::all(c.client.clone());
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "doomed");
        let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "doomed");
        for i in 0..20 {
            let cm: ConfigMap =
                serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}})).unwrap();
            cms.create(&PostParams::default(), &cm).await.unwrap();
        }
        let held: Secret = serde_json::from_value(
            json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
        )
        .unwrap();
        secrets.create(&PostParams::default(), &held).await.unwrap();

        nss.delete("doomed", &DeleteParams::default())
            .await
            .unwrap();
        eventually("the namespace reports the held secret", || async {
            let ns = nss.get("doomed").await.unwrap();
            let conds = ns.status.and_then(|s| s.conditions).unwrap_or_default();
            conds.iter().any(|c| {
                c.type_ == "NamespaceFinalizersRemaining"
                    && c.status == "True"
                    && c.message.as_deref()
                        == Some("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
            }) && conds.iter().any(|c| {
                c.type_ == "NamespaceContentRemaining"
                    && c.message.as_deref() == Some("Some resources are remaining: secrets has 1 resource instances")
            })
        })
        .await;
        assert!(cms
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty());
        // Creating in a Terminating namespace is refused.
        let late: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "late"}})).unwrap();
        match cms.create(&PostParams::default(), &late).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
            other => panic!("expected 403, got {other:?}"),
        }
        secrets
            .patch(
                "held",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await
            .unwrap();
        eventually("the namespace is gone", || async {
            nss.get_opt("doomed").await.unwrap().is_none()
        })
        .await;
        assert!(c.namespace.reconciles() > 0);
        c.stop().await;
    }

    #[tokio::test]
    async fn the_namespace_finalizer_changes_only_through_finalize() {
        let c = Cluster::start().await;
        let nss: Api<Namespace> = Api::all(c.client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "fin"}})).unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
        let mut ns = nss.get("fin").await.unwrap();
        assert_eq!(
            ns.spec.as_ref().and_then(|s| s.finalizers.clone()),
            Some(vec!["kubernetes".to_string()])
        );
        ns.spec.as_mut().unwrap().finalizers =
            Some(vec!["kubernetes".into(), "example.com/x".into()]);
        let after_put = nss
            .replace("fin", &PostParams::default(), &ns)
            .await
            .unwrap();
        assert_eq!(
            after_put.spec.unwrap().finalizers,
            Some(vec!["kubernetes".to_string()]),
            "a plain update keeps the finalizers"
        );
        let mut ns = nss.get("fin").await.unwrap();
        ns.spec.as_mut().unwrap().finalizers =
            Some(vec!["kubernetes".into(), "example.com/x".into()]);
        let after_finalize = nss
            .replace_subresource("finalize", "fin", &PostParams::default(), &ns)
            .await
            .unwrap();
        assert_eq!(
            after_finalize.spec.unwrap().finalizers,
            Some(vec!["kubernetes".to_string(), "example.com/x".to_string()])
        );
        c.stop().await;
    }
}
