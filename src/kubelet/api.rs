//! What the kubelet asks of the API server besides watching pods: the status subresource,
//! the final delete, ConfigMaps/Secrets ([`super::env::Objects`]) and service-account
//! tokens. Behind a trait so the pod worker is unit-tested without a server.
//!
//! Invariant: every write names the pod by namespace, name and uid (a pod recreated with
//! the same name is never touched by the old pod's worker).

use super::env::{EnvError, Objects};
use super::object_cache::ObjectCache;
use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, Pod, PodStatus, ServiceAccount,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};

/// A service-account token and when it expires.
#[derive(Debug, Clone)]
pub struct Token {
    pub token: String,
    pub expires: chrono::DateTime<chrono::Utc>,
}

pub trait PodApi: Objects {
    fn patch_status<'a>(
        &'a self,
        pod: &'a Pod,
        status: &'a PodStatus,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Deletes the pod with grace 0 (the kubelet's last act for a pod it terminated).
    fn delete_pod<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), String>>;
    fn request_token<'a>(
        &'a self,
        pod: &'a Pod,
        service_account: &'a str,
        audience: Option<String>,
        seconds: i64,
    ) -> BoxFuture<'a, Result<Token, String>>;
    /// The claim a `persistentVolumeClaim` volume names (`None`: not found).
    fn claim<'a>(
        &'a self,
        _ns: &'a str,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolumeClaim>, String>> {
        Box::pin(async { Ok(None) })
    }
    fn volume<'a>(
        &'a self,
        _name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolume>, String>> {
        Box::pin(async { Ok(None) })
    }
    /// Puts the node's directory finalizer on a local-path volume it made the directory of.
    fn hold_volume<'a>(&'a self, _pv: &'a PersistentVolume) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

fn names(pod: &Pod) -> (String, String) {
    (
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

impl PodApi for kube::Client {
    fn claim<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolumeClaim>, String>> {
        Box::pin(async move {
            Api::<PersistentVolumeClaim>::namespaced(self.clone(), ns)
                .get_opt(name)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn volume<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolume>, String>> {
        Box::pin(async move {
            Api::<PersistentVolume>::all(self.clone())
                .get_opt(name)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn hold_volume<'a>(&'a self, pv: &'a PersistentVolume) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut finalizers = pv.metadata.finalizers.clone().unwrap_or_default();
            finalizers.push(super::local_path::DIRECTORY_FINALIZER.into());
            let patch = serde_json::json!({"metadata": {
                "resourceVersion": pv.metadata.resource_version, "finalizers": finalizers}});
            let name = pv.metadata.name.clone().unwrap_or_default();
            Api::<PersistentVolume>::all(self.clone())
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(|e| format!("holding volume {name}: {e}"))
        })
    }

    fn patch_status<'a>(
        &'a self,
        pod: &'a Pod,
        status: &'a PodStatus,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (ns, name) = names(pod);
            let patch = serde_json::json!({
                "metadata": {"uid": pod.metadata.uid},
                "status": status,
            });
            // The patched pod that comes back is not read (see `send_unread`).
            let request =
                kube::core::Request::new(<Pod as kube::Resource>::url_path(&(), Some(&ns)))
                    .patch_subresource(
                        "status",
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    );
            crate::events::send_unread(self, request)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn delete_pod<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let (ns, name) = names(pod);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match Api::<Pod>::namespaced(self.clone(), &ns)
                .delete(&name, &dp)
                .await
            {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn request_token<'a>(
        &'a self,
        pod: &'a Pod,
        sa: &'a str,
        audience: Option<String>,
        seconds: i64,
    ) -> BoxFuture<'a, Result<Token, String>> {
        Box::pin(async move {
            let (ns, name) = names(pod);
            let tr = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: audience.into_iter().collect(),
                    expiration_seconds: Some(seconds),
                    bound_object_ref: Some(BoundObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: Some(name),
                        uid: pod.metadata.uid.clone(),
                    }),
                },
                ..Default::default()
            };
            let api: Api<ServiceAccount> = Api::namespaced(self.clone(), &ns);
            let out: TokenRequest = api
                .create_subresource("token", sa, &PostParams::default(), &tr)
                .await
                .map_err(|e| e.to_string())?;
            let status = out.status.ok_or("the token request returned no status")?;
            Ok(Token {
                token: status.token,
                expires: chrono::DateTime::from_timestamp(
                    status.expiration_timestamp.0.as_second(),
                    0,
                )
                .unwrap_or_else(chrono::Utc::now),
            })
        })
    }
}

/// The kubelet's API: writes and token requests go to the server, ConfigMaps and Secrets
/// come from the node's watched copies ([`ObjectCache`]).
pub struct NodeApi {
    client: kube::Client,
    objects: ObjectCache,
}

impl NodeApi {
    pub fn new(client: kube::Client) -> NodeApi {
        NodeApi {
            objects: ObjectCache::new(client.clone()),
            client,
        }
    }
}

impl Objects for NodeApi {
    fn config_map<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<k8s_openapi::api::core::v1::ConfigMap>, EnvError>> {
        self.objects.config_map(ns, name)
    }

    fn secret<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<k8s_openapi::api::core::v1::Secret>, EnvError>> {
        self.objects.secret(ns, name)
    }
}

impl PodApi for NodeApi {
    fn patch_status<'a>(
        &'a self,
        pod: &'a Pod,
        status: &'a PodStatus,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.client.patch_status(pod, status)
    }

    fn delete_pod<'a>(&'a self, pod: &'a Pod) -> BoxFuture<'a, Result<(), String>> {
        self.client.delete_pod(pod)
    }

    fn request_token<'a>(
        &'a self,
        pod: &'a Pod,
        service_account: &'a str,
        audience: Option<String>,
        seconds: i64,
    ) -> BoxFuture<'a, Result<Token, String>> {
        self.client
            .request_token(pod, service_account, audience, seconds)
    }

    fn claim<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolumeClaim>, String>> {
        self.client.claim(ns, name)
    }

    fn volume<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PersistentVolume>, String>> {
        self.client.volume(name)
    }

    fn hold_volume<'a>(&'a self, pv: &'a PersistentVolume) -> BoxFuture<'a, Result<(), String>> {
        self.client.hold_volume(pv)
    }
}
