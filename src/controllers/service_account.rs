//! The ServiceAccount controller (upstream's `serviceaccount-controller`): every active
//! namespace has a `default` ServiceAccount; one deleted is created again.
//!
//! Keys are namespace names, queued when a namespace is seen active and when a `default`
//! ServiceAccount is deleted.

use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::informers::Change;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The account every namespace gets.
pub const DEFAULT: &str = "default";
const WORKERS: usize = 2;

pub struct ServiceAccountController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl ServiceAccountController {
    pub fn new(ctx: Context) -> ServiceAccountController {
        ServiceAccountController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let namespaces = self.ctx.informers.typed::<Namespace>();
        let accounts = self.ctx.informers.typed::<ServiceAccount>();
        namespaces.synced().await?;
        accounts.synced().await?;
        let reconciler = Arc::new(Reconcile {
            client: self.ctx.client_for("service-account-controller"),
            namespaces: namespaces.store(),
            accounts: accounts.store(),
        });
        let mut ns_changes = namespaces.subscribe();
        let mut sa_changes = accounts.subscribe();
        let feed = self.queue.clone();
        let feeder = async move {
            loop {
                let key = tokio::select! {
                    Some(c) = ns_changes.next() => match c {
                        Change::Applied(ns) if is_active(&ns) => ns.metadata.name.clone(),
                        _ => None,
                    },
                    Some(c) = sa_changes.next() => match c {
                        Change::Deleted(sa) if sa.metadata.name.as_deref() == Some(DEFAULT) => {
                            sa.metadata.namespace.clone()
                        }
                        _ => None,
                    },
                    else => return,
                };
                if let Some(key) = key {
                    feed.add(key);
                }
            }
        };
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid(format!("{}: the informers' change feeds ended", Reconcile::NAME))),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

pub(super) fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Active")
}

/// Whether an API error says the namespace is going away (upstream's
/// `HasStatusCause(err, NamespaceTerminating)`) or is gone.
pub(super) fn namespace_closed(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 404
                || s.details
                    .as_ref()
                    .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
        }
        _ => false,
    }
}

struct Reconcile {
    client: kube::Client,
    namespaces: Store<Namespace>,
    accounts: Store<ServiceAccount>,
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "serviceaccount";

    async fn reconcile(&self, ns: &String) -> Result<Action, ControllerError> {
        let Some(namespace) = self.namespaces.get(&ObjectRef::new(ns)) else {
            return Ok(Action::Done);
        };
        if !is_active(&namespace) {
            return Ok(Action::Done);
        }
        if self
            .accounts
            .get(&ObjectRef::new(DEFAULT).within(ns))
            .is_some()
        {
            return Ok(Action::Done);
        }
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), ns);
        let sa = ServiceAccount {
            metadata: kube::api::ObjectMeta {
                name: Some(DEFAULT.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => Ok(Action::Done),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::Done),
            Err(e) if namespace_closed(&e) => Ok(Action::Done),
            Err(e) => Err(e.into()),
        }
    }
}
