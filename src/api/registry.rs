//! The resource registry: every API resource skiff serves, with its upstream group,
//! versions, kind, scope, short names, categories, verbs and subresources.
//!
//! Invariant: a resource type's storage prefix depends only on (group, plural), so the
//! versions of one resource (autoscaling v1 and v2) share their objects, and custom resources
//! appear and disappear at runtime without touching built-in entries.

use crate::api::strategy::{self, Strategy};
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Standard verbs of a full REST resource, in upstream's (sorted) order.
pub const STANDARD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A subresource served under `<resource>/<name>/<subresource>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
    Log,
    /// `namespaces/{name}/finalize`: the only way to change a namespace's `spec.finalizers`.
    Finalize,
    /// `serviceaccounts/{name}/token`: the TokenRequest API (create only).
    Token,
    /// `certificatesigningrequests/{name}/approval`: writes only `status.conditions`.
    Approval,
    /// `pods/{name}/exec`, `attach`, `portforward`: connect subresources proxied to the
    /// pod's kubelet (`apiserver::kubelet_proxy`).
    Exec,
    Attach,
    PortForward,
    /// `nodes/{name}/proxy[/path]`: any request proxied to the node's kubelet;
    /// `pods/{name}/proxy[/path]`, `services/{name}/proxy[/path]`: to the pod (or a pod
    /// behind the service) (`apiserver::pod_proxy`).
    Proxy,
    /// `pods/{name}/eviction`: a deletion that honours PodDisruptionBudgets (create only).
    Eviction,
    /// `pods/{name}/ephemeralcontainers`: the whole Pod, of which a write may only add
    /// ephemeral containers.
    EphemeralContainers,
    /// `pods/{name}/resize`: the whole Pod, of which a write may only change container
    /// cpu and memory (in-place resize).
    Resize,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Finalize => "finalize",
            Subresource::Token => "token",
            Subresource::Approval => "approval",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Proxy => "proxy",
            Subresource::Eviction => "eviction",
            Subresource::EphemeralContainers => "ephemeralcontainers",
            Subresource::Resize => "resize",
        }
    }

    pub fn parse(s: &str) -> Option<Subresource> {
        Some(match s {
            "status" => Subresource::Status,
            "scale" => Subresource::Scale,
            "binding" => Subresource::Binding,
            "log" => Subresource::Log,
            "finalize" => Subresource::Finalize,
            "token" => Subresource::Token,
            "approval" => Subresource::Approval,
            "exec" => Subresource::Exec,
            "attach" => Subresource::Attach,
            "portforward" => Subresource::PortForward,
            "proxy" => Subresource::Proxy,
            "eviction" => Subresource::Eviction,
            "ephemeralcontainers" => Subresource::EphemeralContainers,
            "resize" => Subresource::Resize,
            _ => return None,
        })
    }

    /// Reads and writes the parent object itself (through the kind's rules for this
    /// subresource), like `status`.
    pub fn is_object_view(self) -> bool {
        matches!(
            self,
            Subresource::Status
                | Subresource::Approval
                | Subresource::EphemeralContainers
                | Subresource::Resize
        )
    }

    fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status
            | Subresource::Scale
            | Subresource::Approval
            | Subresource::EphemeralContainers
            | Subresource::Resize => &["get", "patch", "update"],
            Subresource::Binding | Subresource::Token | Subresource::Eviction => &["create"],
            Subresource::Log => &["get"],
            Subresource::Finalize => &["update"],
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => {
                &["create", "get"]
            }
            Subresource::Proxy => &["create", "delete", "get", "patch", "update"],
        }
    }

    /// (group, version, kind) of the object the subresource speaks, when not the parent's.
    fn response_kind(
        self,
        parent_kind: &str,
    ) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Subresource::Proxy => Some(match parent_kind {
                "Pod" => ("", "v1", "PodProxyOptions"),
                "Service" => ("", "v1", "ServiceProxyOptions"),
                _ => ("", "v1", "NodeProxyOptions"),
            }),
            Subresource::Scale => Some(("autoscaling", "v1", "Scale")),
            Subresource::Binding => Some(("", "v1", "Binding")),
            Subresource::Log => Some(("", "v1", "Pod")),
            Subresource::Token => Some(("authentication.k8s.io", "v1", "TokenRequest")),
            Subresource::Exec => Some(("", "v1", "PodExecOptions")),
            Subresource::Attach => Some(("", "v1", "PodAttachOptions")),
            Subresource::PortForward => Some(("", "v1", "PodPortForwardOptions")),
            Subresource::Eviction => Some(("policy", "v1", "Eviction")),
            Subresource::Status
            | Subresource::Finalize
            | Subresource::Approval
            | Subresource::EphemeralContainers
            | Subresource::Resize => None,
        }
    }
}

/// Where the scale subresource of a custom resource reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// One served resource at one version.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
    pub subresources: Vec<Subresource>,
    /// Custom resources: the CRD's printer columns and scale paths.
    pub custom: Option<CustomInfo>,
    /// Everything special about the kind, chosen once at registration.
    pub strategy: &'static Strategy,
}

#[derive(Debug, Clone)]
pub struct CustomInfo {
    pub crd_name: String,
    pub additional_printer_columns: Value,
    pub scale: Option<ScalePaths>,
    /// The CRD is being deleted: its objects may be read and deleted, not created.
    pub terminating: bool,
    /// This version's `schema.openAPIV3Schema` as written in the CRD (`Null` when absent);
    /// the OpenAPI documents publish it.
    pub schema: Value,
    /// This version's `openAPIV3Schema`, compiled once here for pruning and defaulting.
    pub structural: Option<Arc<crate::api::schema::structural::Structural>>,
    /// The same schema compiled for value validation (types, enum, required, bounds).
    pub values: Option<Arc<crate::api::schema::values::ValueSchema>>,
    /// This version's `selectableFields` as field labels (`spec.color` for `.spec.color`).
    pub selectable_fields: Vec<String>,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// (group, version, kind) of the object a request through `subresource` carries, as
    /// admission names it (`request.kind`): the subresource's own kind (`scale` carries an
    /// autoscaling/v1 Scale, `eviction` a policy/v1 Eviction), else this kind (the object
    /// itself, or a view of it such as `status`).
    pub fn object_kind(&self, subresource: Option<&str>) -> (&str, &str, &str) {
        subresource
            .and_then(Subresource::parse)
            .and_then(|s| s.response_kind(&self.kind))
            .unwrap_or((&self.group, &self.version, &self.kind))
    }

    /// `deployments.apps`, or `pods` for the core group: the name upstream uses in messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Deployment.apps`, or `Pod` for the core group: used in "is invalid" messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn has_subresource(&self, s: Subresource) -> bool {
        self.subresources.contains(&s)
    }

    pub fn has_verb(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// Storage key prefix shared by all versions: `apps/deployments/`.
    pub fn storage_prefix(&self) -> String {
        format!("{}/{}/", self.storage_group(), self.plural)
    }

    /// The group whose prefix holds this resource's objects: its own, but `core` for the
    /// core group and for events.k8s.io Events, which are the core Events seen in another
    /// shape (upstream serves both from one storage, each object in whichever version wrote
    /// it).
    pub fn storage_group(&self) -> &str {
        match (self.group.as_str(), self.plural.as_str()) {
            ("", _) | ("events.k8s.io", "events") => "core",
            (group, _) => group,
        }
    }

    /// Key prefix of one namespace's objects (or all objects of a cluster-scoped type).
    pub fn namespace_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/", self.storage_prefix()),
            _ => self.storage_prefix(),
        }
    }

    /// Storage key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.namespace_prefix(namespace))
    }

    /// Aggregated discovery (apidiscovery.k8s.io/v2) entry.
    pub fn discovery_v2(&self) -> Value {
        let subresources: Vec<Value> = self
            .subresources
            .iter()
            .map(|s| {
                let (g, v, k) =
                    s.response_kind(&self.kind)
                        .unwrap_or((&self.group, &self.version, &self.kind));
                json!({
                    "subresource": s.name(),
                    "responseKind": {"group": g, "version": v, "kind": k},
                    "verbs": s.verbs(),
                })
            })
            .collect();
        let mut entry = json!({
            "resource": self.plural,
            "responseKind": {"group": self.group, "version": self.version, "kind": self.kind},
            "scope": if self.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": self.singular,
            "verbs": self.verbs,
        });
        if !self.short_names.is_empty() {
            entry["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            entry["categories"] = json!(self.categories);
        }
        if !subresources.is_empty() {
            entry["subresources"] = Value::Array(subresources);
        }
        entry
    }

    /// Legacy discovery (APIResourceList) entries: the resource and its subresources.
    pub fn discovery_v1(&self) -> Vec<Value> {
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut out = vec![main];
        for s in &self.subresources {
            let mut e = json!({
                "name": format!("{}/{}", self.plural, s.name()),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": s.response_kind(&self.kind).map(|(_, _, k)| k).unwrap_or(&self.kind),
                "verbs": s.verbs(),
            });
            if let Some((g, v, _)) = s.response_kind(&self.kind) {
                if g != self.group || v != self.version {
                    e["group"] = json!(g);
                    e["version"] = json!(v);
                }
            }
            out.push(e);
        }
        out
    }
}

/// One API group with its versions, preferred first.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub name: String,
    pub versions: Vec<String>,
}

/// All served resource types; custom resources are added and removed at runtime.
#[derive(Default)]
pub struct Registry {
    builtin: Vec<Arc<ResourceType>>,
    custom: RwLock<Vec<Arc<ResourceType>>>,
    /// Bumped on every change of the custom types, so derived documents (OpenAPI) know when
    /// to rebuild.
    generation: AtomicU64,
    /// The store revision each CRD's types were last set from (deletions included), so a
    /// writer that reaches [`Registry::set_custom_at`] late cannot undo a newer write.
    custom_revisions: Mutex<HashMap<String, u64>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry {
            builtin: builtin_types().into_iter().map(Arc::new).collect(),
            custom: RwLock::new(Vec::new()),
            generation: AtomicU64::new(0),
            custom_revisions: Default::default(),
        }
    }

    /// Changes whenever the set of served types changes. Read it before reading the types:
    /// a document built from what follows is then never newer than the generation it is
    /// filed under.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Every served type, built-in first.
    pub fn all(&self) -> Vec<Arc<ResourceType>> {
        let mut v = self.builtin.clone();
        v.extend(self.custom.read().iter().cloned());
        v
    }

    /// Looks up by group, version and plural.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        let find = |list: &[Arc<ResourceType>]| {
            list.iter()
                .find(|r| r.group == group && r.version == version && r.plural == plural)
                .cloned()
        };
        find(&self.builtin).or_else(|| find(&self.custom.read()))
    }

    /// Looks up by group, version and kind (apiVersion + kind of a body).
    pub fn lookup_kind(&self, group: &str, version: &str, kind: &str) -> Option<Arc<ResourceType>> {
        self.all()
            .into_iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
    }

    /// How many served resource types share `rt`'s stored objects: its versions (and, for
    /// Events, the other group's). More than one means stored objects may carry another
    /// apiVersion.
    pub fn version_count(&self, rt: &ResourceType) -> usize {
        let same = |r: &&Arc<ResourceType>| {
            r.plural == rt.plural && r.storage_group() == rt.storage_group()
        };
        self.builtin.iter().filter(same).count() + self.custom.read().iter().filter(same).count()
    }

    /// Whether some version of this group is served.
    pub fn group_version_exists(&self, group: &str, version: &str) -> bool {
        self.groups()
            .iter()
            .any(|g| g.name == group && g.versions.iter().any(|v| v == version))
    }

    /// Groups in discovery order (core first, then built-in groups, then custom), each with
    /// its versions in preference order.
    pub fn groups(&self) -> Vec<GroupInfo> {
        let mut groups: Vec<GroupInfo> = Vec::new();
        for r in self.all() {
            match groups.iter_mut().find(|g| g.name == r.group) {
                Some(g) => {
                    if !g.versions.contains(&r.version) {
                        g.versions.push(r.version.clone());
                    }
                }
                None => groups.push(GroupInfo {
                    name: r.group.clone(),
                    versions: vec![r.version.clone()],
                }),
            }
        }
        for g in &mut groups {
            g.versions
                .sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        groups
    }

    /// Resource types of one group-version.
    pub fn resources_of(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.all()
            .into_iter()
            .filter(|r| r.group == group && r.version == version)
            .collect()
    }

    /// Replaces the custom types defined by one CRD (empty `types` removes them).
    pub fn set_custom(&self, crd_name: &str, types: Vec<ResourceType>) {
        let mut custom = self.custom.write();
        custom.retain(|r| r.custom.as_ref().map(|c| c.crd_name.as_str()) != Some(crd_name));
        custom.extend(types.into_iter().map(Arc::new));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// [`Registry::set_custom`] from the CRD as stored at `revision`, unless types from a
    /// later revision of that CRD (or its deletion) are already set. Requests that write a
    /// CRD update the registry after their commit, in whatever order their tasks run: a
    /// delete that marks it Terminating can get here after the finalizer removal that
    /// deleted it, and must not bring its types back. Returns whether it applied.
    pub fn set_custom_at(&self, crd_name: &str, revision: u64, types: Vec<ResourceType>) -> bool {
        let mut revisions = self.custom_revisions.lock();
        let last = revisions.entry(crd_name.to_owned()).or_insert(0);
        if revision < *last {
            return false;
        }
        *last = revision;
        self.set_custom(crd_name, types);
        true
    }
}

/// Kubernetes version priority: GA > beta > alpha, higher numbers first (v2 > v1 > v1beta1).
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let Some(rest) = v.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major: u32 = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (level, minor_str) = if tail.is_empty() {
        (3, "")
    } else if let Some(m) = tail.strip_prefix("beta") {
        (2, m)
    } else if let Some(m) = tail.strip_prefix("alpha") {
        (1, m)
    } else {
        return (0, 0, 0);
    };
    (level, major, minor_str.parse().unwrap_or(0))
}

/// Builds the custom resource types a CRD defines (one per served version).
pub fn types_from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let group = spec["group"].as_str().unwrap_or_default();
    let names = &spec["names"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let plural = names["plural"].as_str().unwrap_or_default().to_owned();
    let kind = names["kind"].as_str().unwrap_or_default().to_owned();
    let singular = names["singular"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = Vec::new();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let mut subresources = Vec::new();
        if v["subresources"]["status"].is_object() {
            subresources.push(Subresource::Status);
        }
        let scale = v["subresources"]["scale"].as_object().map(|s| ScalePaths {
            spec_replicas: s
                .get("specReplicasPath")
                .and_then(Value::as_str)
                .unwrap_or(".spec.replicas")
                .to_owned(),
            status_replicas: s
                .get("statusReplicasPath")
                .and_then(Value::as_str)
                .unwrap_or(".status.replicas")
                .to_owned(),
            label_selector: s
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
        if scale.is_some() {
            subresources.push(Subresource::Scale);
        }
        out.push(ResourceType {
            group: group.to_owned(),
            version: v["name"].as_str().unwrap_or_default().to_owned(),
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            namespaced,
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            verbs: STANDARD_VERBS.iter().map(|s| s.to_string()).collect(),
            subresources,
            custom: Some(CustomInfo {
                crd_name: name.to_owned(),
                additional_printer_columns: v["additionalPrinterColumns"].clone(),
                scale,
                terminating: !crd["metadata"]["deletionTimestamp"].is_null(),
                schema: v["schema"]["openAPIV3Schema"].clone(),
                structural: v["schema"]["openAPIV3Schema"].is_object().then(|| {
                    Arc::new(crate::api::schema::structural::Structural::compile(
                        &v["schema"]["openAPIV3Schema"],
                    ))
                }),
                selectable_fields: v["selectableFields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["jsonPath"].as_str())
                    .map(|p| p.trim_start_matches('.').to_owned())
                    .collect(),
                values: v["schema"]["openAPIV3Schema"].is_object().then(|| {
                    Arc::new(crate::api::schema::values::ValueSchema::compile(
                        &v["schema"]["openAPIV3Schema"],
                    ))
                }),
            }),
            strategy: &strategy::crd::CUSTOM,
        });
    }
    out
}

struct Def {
    group: &'static str,
    versions: &'static [&'static str],
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    subresources: &'static [Subresource],
    verbs: &'static [&'static str],
    strategy: &'static Strategy,
}

const NS: bool = true;
const CLUSTER: bool = false;
const ALL: &[&str] = &["all"];
const EXT: &[&str] = &["api-extensions"];
const NONE: &[&str] = &[];
const CREATE: &[&str] = &["create"];
use strategy::{
    admission, apiregistration, apps, batch, certificates, cluster, config, core, crd, flowcontrol,
    metrics, namespace, networking, pod, rbac, resource, scheduling, service, storage,
};
use Subresource::{
    Approval, Attach, Binding, EphemeralContainers, Eviction, Exec, Finalize, Log, PortForward,
    Proxy, Resize, Scale, Status, Token,
};
const GENERIC: &Strategy = &Strategy::GENERIC;
const REVIEW: &Strategy = &Strategy::REVIEW;

// Groups in upstream's discovery order: the core group, then apiregistration.k8s.io (the
// aggregator lists its own group first), then by APIService groupPriorityMinimum (highest
// first, ties by name; `apiregistration::priority`). Every resource a default v1.35
// kube-apiserver serves; `tests/fixtures/api-resources-v1.35.txt` is the expected
// `kubectl api-resources`.
#[rustfmt::skip]
static BUILTIN: &[Def] = &[
    // core/v1
    Def { group: "", versions: &["v1"], plural: "bindings", kind: "Binding", namespaced: NS, short: NONE, categories: NONE, subresources: &[], verbs: CREATE, strategy: GENERIC },
    Def { group: "metrics.k8s.io", versions: &["v1beta1"], plural: "nodes", kind: "NodeMetrics", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: &["get", "list"], strategy: &metrics::NODE_METRICS },
    Def { group: "metrics.k8s.io", versions: &["v1beta1"], plural: "pods", kind: "PodMetrics", namespaced: NS, short: NONE, categories: NONE, subresources: &[], verbs: &["get", "list"], strategy: &metrics::POD_METRICS },
    Def { group: "", versions: &["v1"], plural: "componentstatuses", kind: "ComponentStatus", namespaced: CLUSTER, short: &["cs"], categories: NONE, subresources: &[], verbs: &["get", "list"], strategy: &core::COMPONENT_STATUS },
    Def { group: "", versions: &["v1"], plural: "configmaps", kind: "ConfigMap", namespaced: NS, short: &["cm"], categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &config::CONFIG_MAP },
    Def { group: "", versions: &["v1"], plural: "endpoints", kind: "Endpoints", namespaced: NS, short: &["ep"], categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &service::ENDPOINTS },
    Def { group: "", versions: &["v1"], plural: "events", kind: "Event", namespaced: NS, short: &["ev"], categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &core::EVENT },
    Def { group: "", versions: &["v1"], plural: "limitranges", kind: "LimitRange", namespaced: NS, short: &["limits"], categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: GENERIC },
    Def { group: "", versions: &["v1"], plural: "namespaces", kind: "Namespace", namespaced: CLUSTER, short: &["ns"], categories: NONE, subresources: &[Finalize, Status], verbs: &["create", "delete", "get", "list", "patch", "update", "watch"], strategy: &namespace::NAMESPACE },
    Def { group: "", versions: &["v1"], plural: "nodes", kind: "Node", namespaced: CLUSTER, short: &["no"], categories: NONE, subresources: &[Proxy, Status], verbs: STANDARD_VERBS, strategy: &core::NODE },
    Def { group: "", versions: &["v1"], plural: "persistentvolumeclaims", kind: "PersistentVolumeClaim", namespaced: NS, short: &["pvc"], categories: NONE, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &core::PERSISTENT_VOLUME_CLAIM },
    Def { group: "", versions: &["v1"], plural: "persistentvolumes", kind: "PersistentVolume", namespaced: CLUSTER, short: &["pv"], categories: NONE, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &core::PERSISTENT_VOLUME },
    Def { group: "", versions: &["v1"], plural: "pods", kind: "Pod", namespaced: NS, short: &["po"], categories: ALL, subresources: &[Attach, Binding, EphemeralContainers, Eviction, Exec, Log, PortForward, Proxy, Resize, Status], verbs: STANDARD_VERBS, strategy: &pod::POD },
    Def { group: "", versions: &["v1"], plural: "podtemplates", kind: "PodTemplate", namespaced: NS, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &pod::POD_TEMPLATE },
    Def { group: "", versions: &["v1"], plural: "replicationcontrollers", kind: "ReplicationController", namespaced: NS, short: &["rc"], categories: ALL, subresources: &[Scale, Status], verbs: STANDARD_VERBS, strategy: &apps::REPLICATION_CONTROLLER },
    Def { group: "", versions: &["v1"], plural: "resourcequotas", kind: "ResourceQuota", namespaced: NS, short: &["quota"], categories: NONE, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &core::RESOURCE_QUOTA },
    Def { group: "", versions: &["v1"], plural: "secrets", kind: "Secret", namespaced: NS, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &config::SECRET },
    Def { group: "", versions: &["v1"], plural: "serviceaccounts", kind: "ServiceAccount", namespaced: NS, short: &["sa"], categories: NONE, subresources: &[Token], verbs: STANDARD_VERBS, strategy: &core::SERVICE_ACCOUNT },
    Def { group: "", versions: &["v1"], plural: "services", kind: "Service", namespaced: NS, short: &["svc"], categories: ALL, subresources: &[Proxy, Status], verbs: STANDARD_VERBS, strategy: &service::SERVICE },
    // apiregistration.k8s.io/v1
    Def { group: "apiregistration.k8s.io", versions: &["v1"], plural: "apiservices", kind: "APIService", namespaced: CLUSTER, short: NONE, categories: EXT, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &apiregistration::API_SERVICE },
    // apps/v1
    Def { group: "apps", versions: &["v1"], plural: "controllerrevisions", kind: "ControllerRevision", namespaced: NS, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &apps::CONTROLLER_REVISION },
    Def { group: "apps", versions: &["v1"], plural: "daemonsets", kind: "DaemonSet", namespaced: NS, short: &["ds"], categories: ALL, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &apps::DAEMON_SET },
    Def { group: "apps", versions: &["v1"], plural: "deployments", kind: "Deployment", namespaced: NS, short: &["deploy"], categories: ALL, subresources: &[Scale, Status], verbs: STANDARD_VERBS, strategy: &apps::DEPLOYMENT },
    Def { group: "apps", versions: &["v1"], plural: "replicasets", kind: "ReplicaSet", namespaced: NS, short: &["rs"], categories: ALL, subresources: &[Scale, Status], verbs: STANDARD_VERBS, strategy: &apps::REPLICA_SET },
    Def { group: "apps", versions: &["v1"], plural: "statefulsets", kind: "StatefulSet", namespaced: NS, short: &["sts"], categories: ALL, subresources: &[Scale, Status], verbs: STANDARD_VERBS, strategy: &apps::STATEFUL_SET },
    // events.k8s.io/v1
    Def { group: "events.k8s.io", versions: &["v1"], plural: "events", kind: "Event", namespaced: NS, short: &["ev"], categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &core::EVENT },
    // authentication.k8s.io/v1, authorization.k8s.io/v1: reviews are answered, never stored
    Def { group: "authentication.k8s.io", versions: &["v1"], plural: "selfsubjectreviews", kind: "SelfSubjectReview", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: CREATE, strategy: REVIEW },
    Def { group: "authentication.k8s.io", versions: &["v1"], plural: "tokenreviews", kind: "TokenReview", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: CREATE, strategy: REVIEW },
    Def { group: "authorization.k8s.io", versions: &["v1"], plural: "localsubjectaccessreviews", kind: "LocalSubjectAccessReview", namespaced: NS, short: NONE, categories: NONE, subresources: &[], verbs: CREATE, strategy: REVIEW },
    Def { group: "authorization.k8s.io", versions: &["v1"], plural: "selfsubjectaccessreviews", kind: "SelfSubjectAccessReview", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: CREATE, strategy: REVIEW },
    Def { group: "authorization.k8s.io", versions: &["v1"], plural: "selfsubjectrulesreviews", kind: "SelfSubjectRulesReview", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: CREATE, strategy: REVIEW },
    Def { group: "authorization.k8s.io", versions: &["v1"], plural: "subjectaccessreviews", kind: "SubjectAccessReview", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: CREATE, strategy: REVIEW },
    // autoscaling: v2 preferred; both versions share storage.
    Def { group: "autoscaling", versions: &["v2", "v1"], plural: "horizontalpodautoscalers", kind: "HorizontalPodAutoscaler", namespaced: NS, short: &["hpa"], categories: ALL, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &cluster::HORIZONTAL_POD_AUTOSCALER },
    // batch/v1
    Def { group: "batch", versions: &["v1"], plural: "cronjobs", kind: "CronJob", namespaced: NS, short: &["cj"], categories: ALL, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &batch::CRON_JOB },
    Def { group: "batch", versions: &["v1"], plural: "jobs", kind: "Job", namespaced: NS, short: NONE, categories: ALL, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &batch::JOB },
    // certificates.k8s.io/v1
    Def { group: "certificates.k8s.io", versions: &["v1"], plural: "certificatesigningrequests", kind: "CertificateSigningRequest", namespaced: CLUSTER, short: &["csr"], categories: NONE, subresources: &[Approval, Status], verbs: STANDARD_VERBS, strategy: &certificates::CERTIFICATE_SIGNING_REQUEST },
    // networking.k8s.io/v1
    Def { group: "networking.k8s.io", versions: &["v1"], plural: "ingressclasses", kind: "IngressClass", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &networking::INGRESS_CLASS },
    Def { group: "networking.k8s.io", versions: &["v1"], plural: "ingresses", kind: "Ingress", namespaced: NS, short: &["ing"], categories: NONE, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &networking::INGRESS },
    Def { group: "networking.k8s.io", versions: &["v1"], plural: "ipaddresses", kind: "IPAddress", namespaced: CLUSTER, short: &["ip"], categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &networking::IP_ADDRESS },
    Def { group: "networking.k8s.io", versions: &["v1"], plural: "networkpolicies", kind: "NetworkPolicy", namespaced: NS, short: &["netpol"], categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &networking::NETWORK_POLICY },
    Def { group: "networking.k8s.io", versions: &["v1"], plural: "servicecidrs", kind: "ServiceCIDR", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &networking::SERVICE_CIDR },
    // policy/v1
    Def { group: "policy", versions: &["v1"], plural: "poddisruptionbudgets", kind: "PodDisruptionBudget", namespaced: NS, short: &["pdb"], categories: NONE, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &cluster::POD_DISRUPTION_BUDGET },
    // rbac.authorization.k8s.io/v1
    Def { group: "rbac.authorization.k8s.io", versions: &["v1"], plural: "clusterrolebindings", kind: "ClusterRoleBinding", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &rbac::CLUSTER_ROLE_BINDING },
    Def { group: "rbac.authorization.k8s.io", versions: &["v1"], plural: "clusterroles", kind: "ClusterRole", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &rbac::CLUSTER_ROLE },
    Def { group: "rbac.authorization.k8s.io", versions: &["v1"], plural: "rolebindings", kind: "RoleBinding", namespaced: NS, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &rbac::ROLE_BINDING },
    Def { group: "rbac.authorization.k8s.io", versions: &["v1"], plural: "roles", kind: "Role", namespaced: NS, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &rbac::ROLE },
    // storage.k8s.io/v1
    Def { group: "storage.k8s.io", versions: &["v1"], plural: "csidrivers", kind: "CSIDriver", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &storage::CSI_DRIVER },
    Def { group: "storage.k8s.io", versions: &["v1"], plural: "csinodes", kind: "CSINode", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &storage::CSI_NODE },
    Def { group: "storage.k8s.io", versions: &["v1"], plural: "csistoragecapacities", kind: "CSIStorageCapacity", namespaced: NS, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &storage::CSI_STORAGE_CAPACITY },
    Def { group: "storage.k8s.io", versions: &["v1"], plural: "storageclasses", kind: "StorageClass", namespaced: CLUSTER, short: &["sc"], categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &cluster::STORAGE_CLASS },
    Def { group: "storage.k8s.io", versions: &["v1"], plural: "volumeattachments", kind: "VolumeAttachment", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &storage::VOLUME_ATTACHMENT },
    Def { group: "storage.k8s.io", versions: &["v1"], plural: "volumeattributesclasses", kind: "VolumeAttributesClass", namespaced: CLUSTER, short: &["vac"], categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &storage::VOLUME_ATTRIBUTES_CLASS },
    // admissionregistration.k8s.io/v1
    Def { group: "admissionregistration.k8s.io", versions: &["v1"], plural: "mutatingwebhookconfigurations", kind: "MutatingWebhookConfiguration", namespaced: CLUSTER, short: NONE, categories: EXT, subresources: &[], verbs: STANDARD_VERBS, strategy: &admission::MUTATING_WEBHOOK_CONFIGURATION },
    Def { group: "admissionregistration.k8s.io", versions: &["v1"], plural: "validatingadmissionpolicies", kind: "ValidatingAdmissionPolicy", namespaced: CLUSTER, short: NONE, categories: EXT, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &admission::VALIDATING_ADMISSION_POLICY },
    Def { group: "admissionregistration.k8s.io", versions: &["v1"], plural: "validatingadmissionpolicybindings", kind: "ValidatingAdmissionPolicyBinding", namespaced: CLUSTER, short: NONE, categories: EXT, subresources: &[], verbs: STANDARD_VERBS, strategy: &admission::VALIDATING_ADMISSION_POLICY_BINDING },
    Def { group: "admissionregistration.k8s.io", versions: &["v1"], plural: "validatingwebhookconfigurations", kind: "ValidatingWebhookConfiguration", namespaced: CLUSTER, short: NONE, categories: EXT, subresources: &[], verbs: STANDARD_VERBS, strategy: &admission::VALIDATING_WEBHOOK_CONFIGURATION },
    // apiextensions.k8s.io/v1
    Def { group: "apiextensions.k8s.io", versions: &["v1"], plural: "customresourcedefinitions", kind: "CustomResourceDefinition", namespaced: CLUSTER, short: &["crd", "crds"], categories: EXT, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &crd::CUSTOM_RESOURCE_DEFINITION },
    // scheduling.k8s.io/v1
    Def { group: "scheduling.k8s.io", versions: &["v1"], plural: "priorityclasses", kind: "PriorityClass", namespaced: CLUSTER, short: &["pc"], categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &scheduling::PRIORITY_CLASS },
    // coordination.k8s.io/v1
    Def { group: "coordination.k8s.io", versions: &["v1"], plural: "leases", kind: "Lease", namespaced: NS, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &cluster::LEASE },
    // node.k8s.io/v1
    Def { group: "node.k8s.io", versions: &["v1"], plural: "runtimeclasses", kind: "RuntimeClass", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &scheduling::RUNTIME_CLASS },
    // discovery.k8s.io/v1
    Def { group: "discovery.k8s.io", versions: &["v1"], plural: "endpointslices", kind: "EndpointSlice", namespaced: NS, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &networking::ENDPOINT_SLICE },
    // resource.k8s.io/v1 (GA and on by default since 1.34)
    Def { group: "resource.k8s.io", versions: &["v1"], plural: "deviceclasses", kind: "DeviceClass", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &resource::DEVICE_CLASS },
    Def { group: "resource.k8s.io", versions: &["v1"], plural: "resourceclaims", kind: "ResourceClaim", namespaced: NS, short: NONE, categories: NONE, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &resource::RESOURCE_CLAIM },
    Def { group: "resource.k8s.io", versions: &["v1"], plural: "resourceclaimtemplates", kind: "ResourceClaimTemplate", namespaced: NS, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &resource::RESOURCE_CLAIM_TEMPLATE },
    Def { group: "resource.k8s.io", versions: &["v1"], plural: "resourceslices", kind: "ResourceSlice", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[], verbs: STANDARD_VERBS, strategy: &resource::RESOURCE_SLICE },
    // flowcontrol.apiserver.k8s.io/v1 (served; requests are not classified by them)
    Def { group: "flowcontrol.apiserver.k8s.io", versions: &["v1"], plural: "flowschemas", kind: "FlowSchema", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &flowcontrol::FLOW_SCHEMA },
    Def { group: "flowcontrol.apiserver.k8s.io", versions: &["v1"], plural: "prioritylevelconfigurations", kind: "PriorityLevelConfiguration", namespaced: CLUSTER, short: NONE, categories: NONE, subresources: &[Status], verbs: STANDARD_VERBS, strategy: &flowcontrol::PRIORITY_LEVEL_CONFIGURATION },
];

/// The strategy of a built-in served kind.
pub fn builtin_strategy(group: &str, kind: &str) -> Option<&'static Strategy> {
    BUILTIN
        .iter()
        .find(|d| d.group == group && d.kind == kind)
        .map(|d| d.strategy)
}

fn builtin_types() -> Vec<ResourceType> {
    let mut out = Vec::new();
    for d in BUILTIN {
        for v in d.versions {
            out.push(ResourceType {
                group: d.group.into(),
                version: (*v).into(),
                plural: d.plural.into(),
                singular: d.kind.to_lowercase(),
                kind: d.kind.into(),
                namespaced: d.namespaced,
                short_names: d.short.iter().map(|s| s.to_string()).collect(),
                categories: d.categories.iter().map(|s| s.to_string()).collect(),
                verbs: d.verbs.iter().map(|s| s.to_string()).collect(),
                subresources: d.subresources.to_vec(),
                custom: None,
                strategy: d.strategy,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_a_group_are_ordered_by_preference() {
        let reg = Registry::new();
        let autoscaling = reg
            .groups()
            .into_iter()
            .find(|g| g.name == "autoscaling")
            .unwrap();
        assert_eq!(autoscaling.versions, vec!["v2", "v1"]);
        assert!(version_priority("v1") > version_priority("v1beta1"));
        assert!(version_priority("v2beta1") > version_priority("v1alpha1"));
    }

    #[test]
    fn versions_of_a_resource_share_storage() {
        let reg = Registry::new();
        let v1 = reg
            .lookup("autoscaling", "v1", "horizontalpodautoscalers")
            .unwrap();
        let v2 = reg
            .lookup("autoscaling", "v2", "horizontalpodautoscalers")
            .unwrap();
        assert_eq!(v1.key(Some("a"), "b"), v2.key(Some("a"), "b"));
        assert_eq!(
            v1.key(Some("a"), "b"),
            "autoscaling/horizontalpodautoscalers/a/b"
        );
    }

    #[test]
    fn crd_types_are_added_and_removed() {
        let reg = Registry::new();
        let crd = json!({"metadata":{"name":"widgets.example.com"},"spec":{"group":"example.com","scope":"Namespaced",
            "names":{"plural":"widgets","kind":"Widget","shortNames":["wd"]},
            "versions":[{"name":"v1","served":true,"storage":true,"subresources":{"status":{}}}]}});
        reg.set_custom("widgets.example.com", types_from_crd(&crd));
        let w = reg.lookup("example.com", "v1", "widgets").unwrap();
        assert!(w.has_subresource(Subresource::Status));
        assert_eq!(w.short_names, vec!["wd"]);
        reg.set_custom("widgets.example.com", Vec::new());
        assert!(reg.lookup("example.com", "v1", "widgets").is_none());
    }

    #[test]
    fn a_late_write_of_a_crd_cannot_bring_back_types_a_later_deletion_removed() {
        let reg = Registry::new();
        let crd = json!({"metadata":{"name":"widgets.example.com"},"spec":{"group":"example.com","scope":"Namespaced",
            "names":{"plural":"widgets","kind":"Widget"},
            "versions":[{"name":"v1","served":true,"storage":true}]}});
        let name = "widgets.example.com";
        assert!(reg.set_custom_at(name, 5, types_from_crd(&crd)));
        // Marked Terminating at 7, deleted at 8; the Terminating write's bookkeeping runs last.
        assert!(reg.set_custom_at(name, 8, Vec::new()));
        assert!(!reg.set_custom_at(name, 7, types_from_crd(&crd)));
        assert!(reg.lookup("example.com", "v1", "widgets").is_none());
        // Created again later: served again.
        assert!(reg.set_custom_at(name, 9, types_from_crd(&crd)));
        assert!(reg.lookup("example.com", "v1", "widgets").is_some());
    }
}
