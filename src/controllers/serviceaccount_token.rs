//! Legacy service-account token Secrets (upstream's tokens controller): a Secret of type
//! `kubernetes.io/service-account-token` naming a service account in the
//! `kubernetes.io/service-account.name` annotation gets `data.token` (a legacy JWT),
//! `data.ca.crt` and `data.namespace`, and the `kubernetes.io/service-account.uid`
//! annotation; it is deleted when its service account is gone (or was recreated with
//! another UID).
//!
//! Invariant: a filled Secret's token names exactly that Secret and service account UID,
//! so the authenticator accepts it only while both exist.

use super::{run_workers, Action, Context, ControllerError, Reconciler, Signing, Stats, WorkQueue};
use crate::apiserver::authn::service_account::{legacy_claims, ObjRef};
use crate::informers::Change;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub const SECRET_TYPE: &str = "kubernetes.io/service-account-token";
pub const NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
pub const UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
const WORKERS: usize = 2;

/// `namespace/name` of a Secret.
type Key = String;

pub struct TokensController {
    ctx: Context,
    signing: Arc<Signing>,
    queue: WorkQueue<Key>,
}

fn sa_name(s: &Secret) -> Option<&str> {
    if s.type_.as_deref() != Some(SECRET_TYPE) {
        return None;
    }
    s.metadata
        .annotations
        .as_ref()?
        .get(NAME_ANNOTATION)
        .map(String::as_str)
}

fn key(s: &Secret) -> Option<Key> {
    Some(format!(
        "{}/{}",
        s.metadata.namespace.as_deref()?,
        s.metadata.name.as_deref()?
    ))
}

impl TokensController {
    pub fn new(ctx: Context, signing: Arc<Signing>) -> TokensController {
        TokensController {
            ctx,
            signing,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let secrets = self.ctx.informers.typed::<Secret>();
        let accounts = self.ctx.informers.typed::<ServiceAccount>();
        secrets.synced().await?;
        accounts.synced().await?;
        let reconciler = Arc::new(Reconcile {
            // Upstream's tokens controller acts with the controller manager's own (root)
            // credentials, not a service account: it writes every token Secret.
            client: self.ctx.loopback.clone(),
            secrets: secrets.store(),
            accounts: accounts.store(),
            signing: self.signing,
        });
        let mut secret_changes = secrets.subscribe();
        let mut account_changes = accounts.subscribe();
        let secret_store = secrets.store();
        let feed = self.queue.clone();
        let feeder = async move {
            loop {
                tokio::select! {
                    Some(c) = secret_changes.next() => {
                        if let Change::Applied(s) = c {
                            if sa_name(&s).is_some() {
                                if let Some(k) = key(&s) {
                                    feed.add(k);
                                }
                            }
                        }
                    }
                    Some(c) = account_changes.next() => {
                        // A service account that changes or goes away: look at its Secrets.
                        let sa = match &c { Change::Applied(s) | Change::Deleted(s) => s.clone() };
                        let (Some(ns), Some(name)) = (sa.metadata.namespace.as_deref(), sa.metadata.name.as_deref()) else { continue };
                        for s in secret_store.state() {
                            if s.metadata.namespace.as_deref() == Some(ns) && sa_name(&s) == Some(name) {
                                if let Some(k) = key(&s) {
                                    feed.add(k);
                                }
                            }
                        }
                    }
                    else => break,
                }
            }
        };
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid("tokens: an informer's change feed ended".into())),
            _ = run_workers(reconciler, self.queue, WORKERS, shutdown) => Ok(()),
        }
    }
}

struct Reconcile {
    client: kube::Client,
    secrets: Store<Secret>,
    accounts: Store<ServiceAccount>,
    signing: Arc<Signing>,
}

impl Reconcile {
    /// The service account, from the cache or (when the cache has not seen it yet) live.
    async fn account(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<ServiceAccount>, ControllerError> {
        if let Some(sa) = self.accounts.get(&ObjectRef::new(name).within(ns)) {
            return Ok(Some((*sa).clone()));
        }
        Ok(Api::<ServiceAccount>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await?)
    }
}

impl Reconciler for Reconcile {
    type Key = Key;
    const NAME: &'static str = "serviceaccount-tokens";

    async fn reconcile(&self, key: &Key) -> Result<Action, ControllerError> {
        let Some((ns, name)) = key.split_once('/') else {
            return Ok(Action::Done);
        };
        let Some(secret) = self.secrets.get(&ObjectRef::new(name).within(ns)) else {
            return Ok(Action::Done);
        };
        let Some(sa_name) = sa_name(&secret) else {
            return Ok(Action::Done);
        };
        let secrets = Api::<Secret>::namespaced(self.client.clone(), ns);
        let sa = self.account(ns, sa_name).await?;
        let annotated_uid = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(UID_ANNOTATION))
            .filter(|u| !u.is_empty());
        let sa = match sa {
            Some(sa) if annotated_uid.is_none_or(|u| Some(u) == sa.metadata.uid.as_ref()) => sa,
            _ => {
                // The service account is gone (or is another one now): so is its token.
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: secret.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match secrets.delete(name, &dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
                return Ok(Action::Done);
            }
        };
        let data = secret.data.clone().unwrap_or_default();
        let filled = |k: &str| data.get(k).is_some_and(|v| !v.0.is_empty());
        if filled("token") && filled("ca.crt") && filled("namespace") && annotated_uid.is_some() {
            return Ok(Action::Done);
        }
        let sa_ref = ObjRef {
            name: sa_name.to_owned(),
            uid: sa.metadata.uid.clone().unwrap_or_default(),
        };
        let mut updated = (*secret).clone();
        let data = updated.data.get_or_insert_with(Default::default);
        if !filled("token") {
            let token = self
                .signing
                .service_account_key
                .sign(&legacy_claims(ns, &sa_ref, name))
                .map_err(|e| ControllerError::Invalid(format!("generating token: {e}")))?;
            data.insert("token".into(), ByteString(token.into_bytes()));
        }
        data.insert(
            "ca.crt".into(),
            ByteString(self.signing.ca.cert_pem.clone().into_bytes()),
        );
        data.insert("namespace".into(), ByteString(ns.as_bytes().to_vec()));
        updated
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(UID_ANNOTATION.into(), sa_ref.uid);
        match secrets
            .replace(name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Action::Done),
            // Changed meanwhile: the change queues it again.
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(Action::Done),
            Err(e) => Err(e.into()),
        }
    }
}
