//! Static pods: Pod manifests in `<agent-dir>/pod-manifests/` run by this kubelet without
//! the API server, and their mirror pods (read-only copies in the API, annotated
//! `kubernetes.io/config.mirror`, owned by the Node) that make them visible to kubectl.
//!
//! Invariant: a static pod's identity is derived from its file (UID = hash of node, path
//! and content), so an unchanged manifest keeps its containers across agent restarts and
//! an edited one is a new pod; the mirror carries that hash so a stale mirror is replaced.

use super::api::{PodApi, Token};
use super::env::{EnvError, Objects};
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, PodStatus, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

pub const SOURCE: &str = "kubernetes.io/config.source";
pub const HASH: &str = "kubernetes.io/config.hash";
pub const SEEN: &str = "kubernetes.io/config.seen";
pub const MIRROR: &str = "kubernetes.io/config.mirror";

pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR))
}

/// Every manifest in `dir` (`.yaml`, `.yml`, `.json`; hidden files skipped), as static pods
/// by UID. A file that does not parse is logged and skipped.
pub fn read_dir(dir: &Path, node: &str) -> BTreeMap<String, Pod> {
    let mut out = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        let ext_ok = [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x));
        if name.starts_with('.') || !ext_ok {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        match parse(&text, &path, node) {
            Ok(p) => {
                if let Some(uid) = p.metadata.uid.clone() {
                    out.insert(uid, p);
                }
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "skipping a static pod manifest")
            }
        }
    }
    out
}

/// The static pod of one manifest: named `<name>-<node>`, in `default` unless it says
/// otherwise, bound to this node, with upstream's config annotations.
pub fn parse(text: &str, path: &Path, node: &str) -> Result<Pod, String> {
    let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if value["kind"] != "Pod" {
        return Err(format!("kind {} is not Pod", value["kind"]));
    }
    // Through bytes, not `from_value`: a Pod deserializer over `Value` would be a second
    // copy of all of the Pod's decoding code in the binary (the API client's reads bytes).
    let bytes = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    let mut pod: Pod = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    let base = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is required")?;
    let digest = Sha256::digest(format!("{node}\n{}\n{text}", path.display()).as_bytes());
    let uid = hex::encode(&digest[..16]);
    pod.metadata.name = Some(format!("{base}-{node}"));
    pod.metadata.namespace = Some(
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
    );
    pod.metadata.uid = Some(uid.clone());
    let ann = pod
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    ann.insert(SOURCE.into(), "file".into());
    ann.insert(HASH.into(), uid);
    ann.insert(
        SEEN.into(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    );
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.into());
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.enable_service_links.get_or_insert(true);
    pod.status = None;
    Ok(pod)
}

/// The mirror of a static pod, owned by its node.
pub fn mirror_of(pod: &Pod, node: &Node) -> Pod {
    let mut m = pod.clone();
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    let hash = pod.metadata.uid.clone().unwrap_or_default();
    m.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(MIRROR.into(), hash);
    m.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.metadata.name.clone().unwrap_or_default(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    m
}

/// Makes the API's mirror pods match `pods` (creates missing or stale ones, deletes those
/// whose manifest is gone).
pub async fn sync_mirrors(
    client: &kube::Client,
    node: &str,
    pods: &BTreeMap<String, Pod>,
    known: &BTreeMap<String, Pod>,
) {
    let node_obj = match Api::<Node>::all(client.clone()).get_opt(node).await {
        Ok(Some(n)) => n,
        // No Node yet (registration is the node slice's): mirrors wait for it.
        _ => return,
    };
    for (uid, p) in pods {
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        let existing = api.get_opt(&name).await.ok().flatten();
        let current = existing
            .as_ref()
            .and_then(|e| e.metadata.annotations.as_ref())
            .and_then(|a| a.get(MIRROR))
            .is_some_and(|h| h == uid);
        if current {
            continue;
        }
        if existing.is_some() {
            let _ = api
                .delete(
                    &name,
                    &DeleteParams {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    },
                )
                .await;
        }
        if let Err(e) = api
            .create(&PostParams::default(), &mirror_of(p, &node_obj))
            .await
        {
            tracing::warn!(pod = %name, error = %e, "creating a mirror pod failed");
        }
    }
    for (uid, p) in known {
        if pods.contains_key(uid) {
            continue;
        }
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let name = p.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        if let Ok(Some(e)) = api.get_opt(&name).await {
            if e.metadata.annotations.as_ref().and_then(|a| a.get(MIRROR)) == Some(uid) {
                let _ = api
                    .delete(
                        &name,
                        &DeleteParams {
                            grace_period_seconds: Some(0),
                            ..Default::default()
                        },
                    )
                    .await;
            }
        }
    }
}

/// The API as a static pod's worker sees it: status goes to the mirror pod; the pod itself
/// is never deleted through the API (removing the file does that).
pub struct MirrorApi {
    pub client: kube::Client,
}

impl Objects for MirrorApi {
    fn config_map<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, EnvError>> {
        self.client.config_map(ns, name)
    }
    fn secret<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, EnvError>> {
        self.client.secret(ns, name)
    }
}

impl PodApi for MirrorApi {
    fn patch_status<'a>(
        &'a self,
        pod: &'a Pod,
        status: &'a PodStatus,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
            let mirror = api
                .get_opt(&name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no mirror pod yet")?;
            if mirror
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(MIRROR))
                != pod.metadata.uid.as_ref()
            {
                return Err("the mirror pod is stale".into());
            }
            let patch =
                serde_json::json!({"metadata": {"uid": mirror.metadata.uid}, "status": status});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
    fn delete_pod<'a>(&'a self, _pod: &'a Pod) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    fn request_token<'a>(
        &'a self,
        pod: &'a Pod,
        sa: &'a str,
        audience: Option<String>,
        seconds: i64,
    ) -> BoxFuture<'a, Result<Token, String>> {
        self.client.request_token(pod, sa, audience, seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\nspec:\n  containers:\n  - name: etcd\n    image: busybox\n";

    #[test]
    fn a_manifest_becomes_a_static_pod_with_a_stable_uid_and_config_annotations() {
        let p = parse(MANIFEST, Path::new("/m/etcd.yaml"), "n1").unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("etcd-n1"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        let ann = p.metadata.annotations.clone().unwrap();
        assert_eq!(ann[SOURCE], "file");
        assert_eq!(Some(&ann[HASH]), p.metadata.uid.as_ref());
        assert_eq!(p.spec.as_ref().unwrap().node_name.as_deref(), Some("n1"));
        let again = parse(MANIFEST, Path::new("/m/etcd.yaml"), "n1").unwrap();
        assert_eq!(again.metadata.uid, p.metadata.uid, "same file, same pod");
        let edited = parse(
            &MANIFEST.replace("busybox", "busybox:2"),
            Path::new("/m/etcd.yaml"),
            "n1",
        )
        .unwrap();
        assert_ne!(edited.metadata.uid, p.metadata.uid, "an edit is a new pod");
        assert!(parse("kind: Service\n", Path::new("/m/x.yaml"), "n1").is_err());
    }

    #[test]
    fn the_mirror_is_owned_by_the_node_and_carries_the_hash() {
        let p = parse(MANIFEST, Path::new("/m/etcd.yaml"), "n1").unwrap();
        let mut node = Node::default();
        node.metadata.name = Some("n1".into());
        node.metadata.uid = Some("node-uid".into());
        let m = mirror_of(&p, &node);
        assert!(is_mirror(&m) && m.metadata.uid.is_none());
        assert_eq!(
            m.metadata.annotations.unwrap()[MIRROR],
            p.metadata.uid.unwrap()
        );
        let o = &m.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.uid.as_str(), o.controller),
            ("Node", "node-uid", Some(true))
        );
    }
}
