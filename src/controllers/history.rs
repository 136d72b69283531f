//! ControllerRevision history shared by the StatefulSet and DaemonSet controllers
//! (upstream's `pkg/controller/history` and each controller's `getPatch`).
//!
//! A revision snapshots a parent's pod template as the data kubectl expects: the
//! strategic-merge patch `{"spec":{"template":{...,"$patch":"replace"}}}`, which
//! `kubectl rollout history` applies to the parent to show a revision and
//! `kubectl rollout undo` sends as a patch to roll back. Its name is
//! `<parent>-<hash>`, where the hash covers the data and the parent's collision count.
//!
//! Invariants:
//! - Two revisions of one parent are equal iff their data are equal; a template seen before
//!   reuses its revision (renumbered to the next number), never a second copy.
//! - A name clash with a different revision bumps the parent's collision count, so the
//!   next attempt hashes to another name.
//! - History cleanup deletes only revisions no live pod and neither the current nor the
//!   update revision use, oldest first, down to `revisionHistoryLimit`.

use super::controller_utils::{
    adopt_patch, claim, new_controller_ref, release_patch, Claim, Selector,
};
use super::deployment::util::{fnv32a, safe_encode, FNV32_OFFSET};
use super::ControllerError;
use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::Arc;

/// The label naming a pod's (StatefulSet: revision name; DaemonSet: hash) and a revision's
/// hash (upstream's `ControllerRevisionHashLabel`).
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";

/// Longest parent-name prefix of a revision name (upstream keeps names under 253).
const MAX_PREFIX: usize = 223;

/// The revision data of `template`: a patch that replaces the parent's whole template.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut t {
        m.insert("$patch".into(), "replace".into());
    }
    json!({"spec": {"template": t}})
}

/// The template a revision snapshots, if its data carries one.
pub fn revision_template(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    if let Value::Object(m) = &mut t {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// The hash of revision data and a collision count: FNV over the data's JSON (keys
/// sorted) and the count in decimal, printed in decimal and safe-encoded (upstream's
/// `HashControllerRevision`).
pub fn hash_revision(data: &Value, collision_count: Option<i32>) -> String {
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    let mut h = fnv32a(&bytes, FNV32_OFFSET);
    if let Some(c) = collision_count {
        h = fnv32a(c.to_string().as_bytes(), h);
    }
    safe_encode(&h.to_string())
}

/// `<parent>-<hash>`, the parent's name cut so the whole stays a valid name.
pub fn revision_name(parent: &str, hash: &str) -> String {
    let prefix: String = parent.chars().take(MAX_PREFIX).collect();
    format!("{prefix}-{hash}")
}

/// A new revision of the parent `owner` (its apiVersion and kind given) holding `template`,
/// numbered `revision`; labels are the template's plus the hash, annotations the parent's.
pub fn new_revision(
    api_version: &str,
    kind: &str,
    owner: &ObjectMeta,
    template: &PodTemplateSpec,
    revision: i64,
    collision_count: Option<i32>,
) -> ControllerRevision {
    let data = template_patch(template);
    let hash = hash_revision(&data, collision_count);
    let mut labels: BTreeMap<String, String> = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH.into(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(
                owner.name.as_deref().unwrap_or_default(),
                &hash,
            )),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            // The parent's annotations, as upstream: `kubectl rollout history` shows the
            // revision's `kubernetes.io/change-cause`.
            annotations: owner.annotations.clone(),
            owner_references: Some(vec![new_controller_ref(api_version, kind, owner)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// Whether two revisions hold the same data (upstream's `EqualRevision`).
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    strip_replace(a.data.as_ref()) == strip_replace(b.data.as_ref())
}

/// The data with the `$patch` directive gone, so revisions written by other clients
/// (without it) compare equal to ours.
fn strip_replace(data: Option<&RawExtension>) -> Option<Value> {
    let mut v = data?.0.clone();
    if let Some(Value::Object(t)) = v.get_mut("spec").and_then(|s| s.get_mut("template")) {
        t.remove("$patch");
    }
    Some(v)
}

/// One more than the highest revision number (1 for none).
pub fn next_revision(revisions: &[Arc<ControllerRevision>]) -> i64 {
    revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// Sorts revisions oldest first: by number, then creation time, then name.
pub fn sort_revisions(revisions: &mut [Arc<ControllerRevision>]) {
    revisions.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let t =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The names of the revisions history cleanup deletes: of `revisions` (oldest first), those
/// not in `live`, oldest first, as many as exceed `limit`.
pub fn revisions_to_delete(
    revisions: &[Arc<ControllerRevision>],
    live: &HashSet<String>,
    limit: i32,
) -> Vec<String> {
    let unused: Vec<&Arc<ControllerRevision>> = revisions
        .iter()
        .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or_default()))
        .collect();
    let excess = unused.len().saturating_sub(limit.max(0) as usize);
    unused
        .into_iter()
        .take(excess)
        .filter_map(|r| r.metadata.name.clone())
        .collect()
}

/// Reads and writes one namespace's revisions for one parent kind.
pub struct History {
    pub client: kube::Client,
    pub revisions: Store<ControllerRevision>,
    pub api_version: &'static str,
    pub kind: &'static str,
}

impl History {
    fn api(&self, ns: &str) -> Api<ControllerRevision> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// The parent's revisions, oldest first, after adopting the orphans its selector matches
    /// and releasing owned ones it no longer matches (upstream's `ClaimControllerRevisions`).
    pub async fn owned(
        &self,
        owner: &ObjectMeta,
        selector: Option<&LabelSelector>,
    ) -> Result<Vec<Arc<ControllerRevision>>, ControllerError> {
        let ns = owner.namespace.as_deref();
        let owner_ref = new_controller_ref(self.api_version, self.kind, owner);
        let candidates = self
            .revisions
            .state()
            .into_iter()
            .filter(|r| r.metadata.namespace.as_deref() == ns);
        let mut out = claim_all(
            &self.client,
            &owner_ref,
            owner,
            &Selector::new(selector),
            candidates,
            None,
        )
        .await?;
        sort_revisions(&mut out);
        Ok(out)
    }

    /// Creates `rev`, or finds the equal revision already under its name; a different one
    /// under the name bumps `collision_count` and rehashes (upstream's `CreateControllerRevision`).
    pub async fn create(
        &self,
        rev: &ControllerRevision,
        collision_count: &mut i32,
    ) -> Result<ControllerRevision, ControllerError> {
        let ns = rev.metadata.namespace.clone().unwrap_or_default();
        let api = self.api(&ns);
        let data = rev
            .data
            .as_ref()
            .map(|d| d.0.clone())
            .unwrap_or(Value::Null);
        let parent = rev
            .metadata
            .owner_references
            .iter()
            .flatten()
            .next()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        loop {
            let hash = hash_revision(&data, Some(*collision_count));
            let mut attempt = rev.clone();
            attempt.metadata.name = Some(revision_name(&parent, &hash));
            attempt
                .metadata
                .labels
                .get_or_insert_with(Default::default)
                .insert(CONTROLLER_REVISION_HASH.into(), hash);
            match api.create(&PostParams::default(), &attempt).await {
                Ok(created) => return Ok(created),
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    let name = attempt.metadata.name.clone().unwrap_or_default();
                    let existing = api.get(&name).await?;
                    if equal_revision(&existing, &attempt) {
                        return Ok(existing);
                    }
                    *collision_count += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Gives `rev` the number `revision` (a template rolled back to gets the newest number).
    pub async fn renumber(
        &self,
        rev: &ControllerRevision,
        revision: i64,
    ) -> Result<ControllerRevision, ControllerError> {
        if rev.revision == revision {
            return Ok(rev.clone());
        }
        let ns = rev.metadata.namespace.as_deref().unwrap_or_default();
        let name = rev.metadata.name.as_deref().unwrap_or_default();
        let patch = json!({"revision": revision});
        Ok(self
            .api(ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?)
    }

    /// Deletes the revisions named, ignoring ones already gone.
    pub async fn delete(&self, ns: &str, names: &[String]) -> Result<(), ControllerError> {
        for name in names {
            tracing::debug!(ns, revision = %name, "deleting revision beyond the history limit");
            match self.api(ns).delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// The candidates `owner` keeps after adopting the orphans `selector` matches and releasing
/// owned ones it no longer matches (upstream's `ClaimObject` over a list); objects gone or
/// changed meanwhile are skipped. A `finalizer` (the Job's tracking one) is added with the
/// adoption and removed with the release.
pub async fn claim_all<K>(
    client: &kube::Client,
    owner_ref: &OwnerReference,
    owner: &ObjectMeta,
    selector: &Selector,
    candidates: impl IntoIterator<Item = Arc<K>>,
    finalizer: Option<&str>,
) -> Result<Vec<Arc<K>>, ControllerError>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let ns = owner.namespace.as_deref().unwrap_or_default();
    let uid = owner.uid.as_deref().unwrap_or_default();
    let deleting = owner.deletion_timestamp.is_some();
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    for obj in candidates {
        let meta = obj.meta();
        let selected = selector.matches(meta.labels.as_ref());
        let obj_uid = meta.uid.as_deref().unwrap_or_default();
        let name = meta.name.as_deref().unwrap_or_default();
        let (mut patch, adopting) = match claim(uid, deleting, meta, selected) {
            Claim::Keep => {
                out.push(obj.clone());
                continue;
            }
            Claim::Ignore => continue,
            Claim::Adopt => (adopt_patch(owner_ref, obj_uid), true),
            Claim::Release => (release_patch(uid, obj_uid), false),
        };
        if let Some(f) = finalizer {
            let key = if adopting {
                "finalizers"
            } else {
                "$deleteFromPrimitiveList/finalizers"
            };
            patch["metadata"][key] = serde_json::json!([f]);
        }
        match api
            .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(o) if adopting => out.push(Arc::new(o)),
            Ok(_) => {}
            // Gone, or its uid precondition failed (recreated under the name).
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 || s.code == 422 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// The update revision of a parent whose current template is `template`: the newest revision
/// if it is equal, an older equal one renumbered to be newest, or a new one created.
/// `revisions` is oldest first; returns the revision and whether `revisions` changed.
pub async fn ensure_update_revision(
    history: &History,
    owner: &ObjectMeta,
    template: &PodTemplateSpec,
    revisions: &[Arc<ControllerRevision>],
    collision_count: &mut i32,
) -> Result<ControllerRevision, ControllerError> {
    let next = next_revision(revisions);
    let candidate = new_revision(
        history.api_version,
        history.kind,
        owner,
        template,
        next,
        Some(*collision_count),
    );
    let equal: Vec<&Arc<ControllerRevision>> = revisions
        .iter()
        .filter(|r| equal_revision(r, &candidate))
        .collect();
    match equal.last() {
        Some(latest) if revisions.last().is_some_and(|l| Arc::ptr_eq(l, latest)) => {
            Ok((***latest).clone())
        }
        Some(older) => history.renumber(older, next).await,
        None => history.create(&candidate, collision_count).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    fn owner() -> ObjectMeta {
        ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..Default::default()
        }
    }

    fn rev(name: &str, n: i64) -> Arc<ControllerRevision> {
        Arc::new(ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: None,
            revision: n,
        })
    }

    #[test]
    fn revision_data_is_a_template_replacing_patch_kubectl_can_apply() {
        let r = new_revision(
            "apps/v1",
            "StatefulSet",
            &owner(),
            &template("a:1"),
            3,
            None,
        );
        let data = &r.data.as_ref().expect("data").0;
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            data["spec"]["template"]["spec"]["containers"][0]["image"],
            "a:1"
        );
        assert_eq!(revision_template(&r), Some(template("a:1")));
        let hash = &r.metadata.labels.as_ref().expect("labels")[CONTROLLER_REVISION_HASH];
        assert_eq!(
            r.metadata.name.as_deref(),
            Some(format!("web-{hash}").as_str())
        );
        assert_eq!(r.metadata.labels.as_ref().expect("labels")["app"], "web");
        assert_eq!(r.revision, 3);
    }

    #[test]
    fn hashes_depend_on_template_and_collision_count_only() {
        let a = template_patch(&template("a:1"));
        let b = template_patch(&template("a:2"));
        assert_eq!(hash_revision(&a, None), hash_revision(&a, None));
        assert_ne!(hash_revision(&a, None), hash_revision(&b, None));
        assert_ne!(hash_revision(&a, Some(0)), hash_revision(&a, Some(1)));
        let r1 = new_revision(
            "apps/v1",
            "StatefulSet",
            &owner(),
            &template("a:1"),
            1,
            None,
        );
        let r2 = new_revision(
            "apps/v1",
            "StatefulSet",
            &owner(),
            &template("a:1"),
            7,
            None,
        );
        assert!(equal_revision(&r1, &r2));
        let r3 = new_revision(
            "apps/v1",
            "StatefulSet",
            &owner(),
            &template("a:2"),
            1,
            None,
        );
        assert!(!equal_revision(&r1, &r3));
    }

    #[test]
    fn long_parent_names_are_cut_to_keep_revision_names_valid() {
        let long = "x".repeat(300);
        assert_eq!(revision_name(&long, "abc").len(), MAX_PREFIX + 4);
    }

    #[test]
    fn cleanup_deletes_the_oldest_unused_revisions_beyond_the_limit() {
        let mut revs = vec![rev("r3", 3), rev("r1", 1), rev("r4", 4), rev("r2", 2)];
        sort_revisions(&mut revs);
        assert_eq!(next_revision(&revs), 5);
        let live: HashSet<String> = ["r1".to_string(), "r4".to_string()].into();
        // Unused: r2, r3; keep one of them.
        assert_eq!(revisions_to_delete(&revs, &live, 1), vec!["r2".to_string()]);
        assert_eq!(
            revisions_to_delete(&revs, &live, 0),
            vec!["r2".to_string(), "r3".to_string()]
        );
        assert!(revisions_to_delete(&revs, &live, 10).is_empty());
    }
}
