//! The root-CA publisher (upstream's `root-ca-cert-publisher`): every namespace has a
//! ConfigMap `kube-root-ca.crt` whose `ca.crt` is the cluster CA bundle, annotated with
//! upstream's `kubernetes.io/description`; one changed or deleted is restored. Pods read it
//! through the projected `kube-api-access-*` volume the ServiceAccount admission adds.
//!
//! Keys are namespace names, queued when a namespace is seen active and when a
//! `kube-root-ca.crt` ConfigMap changes or goes away. ConfigMaps are watched through the
//! shared metadata informer (the garbage collector's): the data is read only for the one
//! ConfigMap a key names, so the many other ConfigMaps cost nothing but a name test.

use super::service_account::{is_active, namespace_closed};
use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::informers::Change;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ApiResource, PostParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub const NAME: &str = "kube-root-ca.crt";
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
const WORKERS: usize = 2;

pub struct RootCaPublisher {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl RootCaPublisher {
    pub fn new(ctx: Context) -> RootCaPublisher {
        RootCaPublisher {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let namespaces = self.ctx.informers.typed::<Namespace>();
        let config_maps = self
            .ctx
            .informers
            .metadata(&ApiResource::erase::<ConfigMap>(&()));
        namespaces.synced().await?;
        config_maps.synced().await?;
        let reconciler = Arc::new(Reconcile {
            client: self.ctx.client_for("root-ca-cert-publisher"),
            // Upstream reads the ConfigMap from the controller manager's informer, which
            // lists with the manager's own credentials; its role only creates and updates.
            reader: self.ctx.loopback.clone(),
            ca: self.ctx.root_ca.to_string(),
        });
        let mut ns_changes = namespaces.subscribe();
        let mut cm_changes = config_maps.subscribe();
        let feed = self.queue.clone();
        let feeder = async move {
            loop {
                let key = tokio::select! {
                    Some(c) = ns_changes.next() => match c {
                        Change::Applied(ns) if is_active(&ns) => ns.metadata.name.clone(),
                        _ => None,
                    },
                    Some(c) = cm_changes.next() => {
                        let m = &c.object().metadata;
                        if m.name.as_deref() == Some(NAME) { m.namespace.clone() } else { None }
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

struct Reconcile {
    client: kube::Client,
    reader: kube::Client,
    ca: String,
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "root-ca-cert-publisher";

    async fn reconcile(&self, ns: &String) -> Result<Action, ControllerError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        let data = BTreeMap::from([("ca.crt".to_owned(), self.ca.clone())]);
        let reader: Api<ConfigMap> = Api::namespaced(self.reader.clone(), ns);
        let result = match reader.get_opt(NAME).await? {
            None => {
                let cm = ConfigMap {
                    metadata: kube::api::ObjectMeta {
                        name: Some(NAME.into()),
                        annotations: Some(BTreeMap::from([(
                            DESCRIPTION_ANNOTATION.to_owned(),
                            DESCRIPTION.to_owned(),
                        )])),
                        ..Default::default()
                    },
                    data: Some(data),
                    ..Default::default()
                };
                api.create(&PostParams::default(), &cm).await
            }
            Some(cm) => {
                let described = cm
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
                    .is_some_and(|d| !d.is_empty());
                if cm.data.as_ref() == Some(&data) && described {
                    return Ok(Action::Done);
                }
                let mut cm = cm;
                cm.data = Some(data);
                cm.metadata
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert(DESCRIPTION_ANNOTATION.to_owned(), DESCRIPTION.to_owned());
                api.replace(NAME, &PostParams::default(), &cm).await
            }
        };
        match result {
            Ok(_) => Ok(Action::Done),
            // Created meanwhile, or changed meanwhile: the informer brings it back here.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::Done),
            Err(e) if namespace_closed(&e) => Ok(Action::Done),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::testing::TestServer;
    use crate::controllers::service_account::{ServiceAccountController, DEFAULT};
    use crate::controllers::testing::eventually;
    use crate::informers::Informers;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::{DeleteParams, Patch, PatchParams};
    use serde_json::json;

    const CA: &str = "-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n";

    /// Both controllers of this slice against a real API server.
    async fn start() -> (TestServer, CancellationToken) {
        let srv = TestServer::start().await;
        let stop = CancellationToken::new();
        let kcm = srv.client_as(crate::apiserver::CONTROLLER_MANAGER_USER, &[]);
        let informers = Informers::new(kcm.clone(), stop.clone());
        let as_kcm = kcm.clone();
        let ctx = Context {
            client: kcm.clone(),
            informers: informers.clone(),
            clients: std::sync::Arc::new(move |_| as_kcm.clone()),
            loopback: kcm,
            root_ca: CA.into(),
            signing: None,
        };
        tokio::spawn(informers.run());
        tokio::spawn(ServiceAccountController::new(ctx.clone()).run(stop.clone()));
        tokio::spawn(RootCaPublisher::new(ctx).run(stop.clone()));
        (srv, stop)
    }

    async fn has_ca(api: &Api<ConfigMap>) -> bool {
        api.get_opt(NAME).await.unwrap().is_some_and(|cm| {
            cm.data
                .unwrap_or_default()
                .get("ca.crt")
                .map(String::as_str)
                == Some(CA)
                && cm
                    .metadata
                    .annotations
                    .unwrap_or_default()
                    .get(DESCRIPTION_ANNOTATION)
                    .map(String::as_str)
                    == Some(DESCRIPTION)
        })
    }

    #[tokio::test]
    async fn every_namespace_gets_the_default_account_and_the_ca_bundle_back_when_lost() {
        let (srv, stop) = start().await;
        let admin = srv.admin();
        let nss: Api<Namespace> = Api::all(admin.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap();
        nss.create(&PostParams::default(), &ns).await.unwrap();
        for name in ["default", "kube-system", "team"] {
            let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), name);
            let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), name);
            eventually("the default account exists", || async {
                sas.get_opt(DEFAULT).await.unwrap().is_some()
            })
            .await;
            eventually("the CA bundle is published", || async {
                has_ca(&cms).await
            })
            .await;
        }
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "team");
        let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "team");
        let old_uid = sas.get(DEFAULT).await.unwrap().metadata.uid;
        sas.delete(DEFAULT, &DeleteParams::default()).await.unwrap();
        eventually("the default account is created again", || async {
            sas.get_opt(DEFAULT)
                .await
                .unwrap()
                .is_some_and(|sa| sa.metadata.uid != old_uid)
        })
        .await;
        cms.patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"ca.crt": "forged"}})),
        )
        .await
        .unwrap();
        eventually("a changed bundle is restored", || async {
            has_ca(&cms).await
        })
        .await;
        cms.delete(NAME, &DeleteParams::default()).await.unwrap();
        eventually("a deleted bundle is restored", || async {
            has_ca(&cms).await
        })
        .await;
        stop.cancel();
    }
}
