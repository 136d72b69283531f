//! The patch-strategy table of the built-in kinds: which lists merge by key, which merge as
//! sets of primitives, which maps are atomic, and where `$retainKeys` applies.
//!
//! Learnt from the struct tags of the upstream Go types (`patchStrategy`, `patchMergeKey`)
//! and their `+listType`/`+listMapKey`/`+structType`/`+mapType` markers. Strategic merge
//! patch reads the `smp` half, server-side apply the `list` half and `Ty::Atomic`; the two
//! differ on purpose where upstream differs (Container.ports merges by `containerPort` in
//! SMP but is keyed by `containerPort`+`protocol` in apply; Job conditions merge in SMP but
//! are atomic for apply).
//!
//! Invariant: anything not in the table behaves like an unknown field: maps merge field by
//! field, lists are replaced whole. The table is a graph of named types so that a nested
//! type (PodTemplateSpec, PodSpec) is described once and reached from every kind embedding
//! it (Deployment .spec.template, CronJob .spec.jobTemplate.spec.template, ...).

/// A named type of the object model. `Any` is everything not described (custom resources,
/// untagged structs); `Atomic` is a struct or map that apply treats as one value
/// (`+structType=atomic`, `+mapType=atomic`): LabelSelector, nodeSelector, OwnerReference...
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    Any,
    Atomic,
    // Kinds (object roots).
    Plain,
    Pod,
    PodTemplate,
    Service,
    ServiceAccount,
    Node,
    Namespace,
    PersistentVolumeClaim,
    Workload,
    Deployment,
    Job,
    CronJob,
    StatusOnly,
    NetworkPolicy,
    RoleBinding,
    PodDisruptionBudget,
    WebhookConfiguration,
    CsiNode,
    // Nested types.
    ObjectMeta,
    PodTemplateSpec,
    PodSpec,
    Container,
    ResourceRequirements,
    TopologySpreadConstraint,
    PodStatus,
    ServiceSpec,
    NodeSpec,
    NodeStatus,
    ConditionsStatus,
    PvcSpec,
    WorkloadSpec,
    DeploymentSpec,
    JobStatus,
    CronJobSpec,
    JobTemplateSpec,
    NetworkPolicySpec,
    PdbSpec,
    Webhook,
    CsiNodeSpec,
}

/// How strategic merge patch treats a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Smp {
    /// Maps merge recursively, lists are replaced.
    Default,
    /// `patchStrategy:"merge" patchMergeKey:"<key>"`: a list of maps merged by that key.
    MergeKey(&'static str),
    /// `patchStrategy:"merge"` without key: a list of primitives merged as a set.
    MergePrimitives,
    /// `patchStrategy:"replace"`: the map is replaced, not merged.
    Replace,
}

/// How server-side apply treats a list (`x-kubernetes-list-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListType {
    /// Replaced and owned as one value (also every field that is not a list).
    Atomic,
    /// Items are identified by these key fields.
    Map(&'static [&'static str]),
    /// Items are primitives identified by their value.
    Set,
}

/// One field of a named type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub name: &'static str,
    /// The field's type; for a list, the type of its items.
    pub ty: Ty,
    pub smp: Smp,
    /// `patchStrategy` includes `retainKeys`: clients send `$retainKeys` for it.
    pub retain_keys: bool,
    pub list: ListType,
}

impl Field {
    /// The description of a field the table does not know.
    pub const UNKNOWN: Field = Field::of("", Ty::Any);

    const fn of(name: &'static str, ty: Ty) -> Field {
        Field {
            name,
            ty,
            smp: Smp::Default,
            retain_keys: false,
            list: ListType::Atomic,
        }
    }

    /// A list merged by `key` in SMP and keyed by `keys` in apply.
    const fn keyed(
        name: &'static str,
        ty: Ty,
        key: &'static str,
        keys: &'static [&'static str],
    ) -> Field {
        Field {
            smp: Smp::MergeKey(key),
            list: ListType::Map(keys),
            ..Field::of(name, ty)
        }
    }

    /// A list of primitives merged as a set in both SMP and apply.
    const fn set(name: &'static str) -> Field {
        Field {
            smp: Smp::MergePrimitives,
            list: ListType::Set,
            ..Field::of(name, Ty::Any)
        }
    }

    const fn retain_keys(self) -> Field {
        Field {
            retain_keys: true,
            ..self
        }
    }

    const fn smp(self, smp: Smp) -> Field {
        Field { smp, ..self }
    }

    const fn list(self, list: ListType) -> Field {
        Field { list, ..self }
    }
}

const METADATA: Field = Field::of("metadata", Ty::ObjectMeta);
const CONDITIONS: Field = Field::keyed("conditions", Ty::Any, "type", &["type"]);
const SELECTOR: Field = Field::of("selector", Ty::Atomic);
const TEMPLATE: Field = Field::of("template", Ty::PodTemplateSpec);

/// A `&'static [Field]`: const fn calls are not promoted to statics, a const item is.
macro_rules! table {
    ($($field:expr),* $(,)?) => {{
        const FIELDS: &[Field] = &[$($field),*];
        FIELDS
    }};
}

/// The fields of a named type that differ from the defaults.
fn fields(ty: Ty) -> &'static [Field] {
    match ty {
        Ty::Any | Ty::Atomic => table![],
        Ty::Plain => table![METADATA],
        Ty::Pod => table![
            METADATA,
            Field::of("spec", Ty::PodSpec),
            Field::of("status", Ty::PodStatus),
        ],
        Ty::PodTemplate => table![METADATA, TEMPLATE],
        Ty::Service => table![
            METADATA,
            Field::of("spec", Ty::ServiceSpec),
            Field::of("status", Ty::ConditionsStatus),
        ],
        Ty::ServiceAccount => table![
            METADATA,
            Field::keyed("secrets", Ty::Atomic, "name", &["name"]),
        ],
        Ty::Node => table![
            METADATA,
            Field::of("spec", Ty::NodeSpec),
            Field::of("status", Ty::NodeStatus),
        ],
        Ty::Namespace | Ty::StatusOnly => {
            table![METADATA, Field::of("status", Ty::ConditionsStatus)]
        }
        Ty::PersistentVolumeClaim => table![
            METADATA,
            Field::of("spec", Ty::PvcSpec),
            Field::of("status", Ty::ConditionsStatus),
        ],
        Ty::Workload => table![
            METADATA,
            Field::of("spec", Ty::WorkloadSpec),
            Field::of("status", Ty::ConditionsStatus),
        ],
        Ty::Deployment => table![
            METADATA,
            Field::of("spec", Ty::DeploymentSpec),
            Field::of("status", Ty::ConditionsStatus),
        ],
        Ty::Job => table![
            METADATA,
            Field::of("spec", Ty::WorkloadSpec),
            Field::of("status", Ty::JobStatus),
        ],
        Ty::CronJob => table![METADATA, Field::of("spec", Ty::CronJobSpec)],
        Ty::NetworkPolicy => table![METADATA, Field::of("spec", Ty::NetworkPolicySpec)],
        Ty::RoleBinding => table![METADATA, Field::of("roleRef", Ty::Atomic)],
        Ty::PodDisruptionBudget => table![
            METADATA,
            Field::of("spec", Ty::PdbSpec),
            Field::of("status", Ty::ConditionsStatus),
        ],
        Ty::WebhookConfiguration => table![
            METADATA,
            Field::keyed("webhooks", Ty::Webhook, "name", &["name"]),
        ],
        Ty::CsiNode => table![METADATA, Field::of("spec", Ty::CsiNodeSpec)],
        Ty::ObjectMeta => table![
            Field::keyed("ownerReferences", Ty::Atomic, "uid", &["uid"]),
            Field::set("finalizers"),
        ],
        Ty::PodTemplateSpec => table![METADATA, Field::of("spec", Ty::PodSpec)],
        Ty::JobTemplateSpec => table![METADATA, Field::of("spec", Ty::WorkloadSpec)],
        Ty::PodSpec => table![
            Field::keyed("volumes", Ty::Any, "name", &["name"]).retain_keys(),
            Field::keyed("initContainers", Ty::Container, "name", &["name"]),
            Field::keyed("containers", Ty::Container, "name", &["name"]),
            Field::keyed("ephemeralContainers", Ty::Container, "name", &["name"]),
            Field::keyed("imagePullSecrets", Ty::Atomic, "name", &["name"]),
            Field::keyed("hostAliases", Ty::Any, "ip", &["ip"]),
            Field::keyed(
                "topologySpreadConstraints",
                Ty::TopologySpreadConstraint,
                "topologyKey",
                &["topologyKey", "whenUnsatisfiable"],
            ),
            Field::keyed("schedulingGates", Ty::Any, "name", &["name"]),
            Field::keyed("resourceClaims", Ty::Any, "name", &["name"]).retain_keys(),
            Field::of("nodeSelector", Ty::Atomic),
        ],
        Ty::Container => table![
            Field::keyed(
                "ports",
                Ty::Any,
                "containerPort",
                &["containerPort", "protocol"],
            ),
            Field::keyed("env", Ty::Any, "name", &["name"]),
            Field::keyed("volumeMounts", Ty::Any, "mountPath", &["mountPath"]),
            Field::keyed("volumeDevices", Ty::Any, "devicePath", &["devicePath"]),
            Field::of("resources", Ty::ResourceRequirements),
        ],
        Ty::ResourceRequirements => {
            table![Field::of("claims", Ty::Any).list(ListType::Map(&["name"]))]
        }
        Ty::TopologySpreadConstraint => table![Field::of("labelSelector", Ty::Atomic)],
        Ty::PodStatus => table![
            CONDITIONS,
            Field::keyed("podIPs", Ty::Any, "ip", &["ip"]),
            Field::keyed("hostIPs", Ty::Any, "ip", &["ip"]).list(ListType::Atomic),
            Field::keyed("resourceClaimStatuses", Ty::Any, "name", &["name"]).retain_keys(),
        ],
        Ty::ServiceSpec => table![
            Field::keyed("ports", Ty::Any, "port", &["port", "protocol"]),
            Field::of("selector", Ty::Atomic),
        ],
        Ty::NodeSpec => table![Field::set("podCIDRs")],
        Ty::NodeStatus => table![
            CONDITIONS,
            Field::keyed("addresses", Ty::Any, "type", &["type"]),
        ],
        Ty::ConditionsStatus => table![CONDITIONS],
        Ty::PvcSpec => table![SELECTOR],
        Ty::WorkloadSpec => table![SELECTOR, TEMPLATE],
        Ty::DeploymentSpec => table![
            SELECTOR,
            TEMPLATE,
            Field::of("strategy", Ty::Any).retain_keys(),
        ],
        Ty::JobStatus => table![CONDITIONS.list(ListType::Atomic)],
        Ty::CronJobSpec => table![Field::of("jobTemplate", Ty::JobTemplateSpec)],
        Ty::NetworkPolicySpec => table![Field::of("podSelector", Ty::Atomic)],
        Ty::PdbSpec => table![SELECTOR.smp(Smp::Replace)],
        Ty::Webhook => table![
            Field::keyed("matchConditions", Ty::Any, "name", &["name"]),
            Field::of("namespaceSelector", Ty::Atomic),
            Field::of("objectSelector", Ty::Atomic),
        ],
        Ty::CsiNodeSpec => table![Field::keyed("drivers", Ty::Any, "name", &["name"])],
    }
}

/// The built-in kinds by `(group, kind)`, with the named type of their root.
const KINDS: &[(&str, &str, Ty)] = &[
    ("", "Pod", Ty::Pod),
    ("", "PodTemplate", Ty::PodTemplate),
    ("", "ReplicationController", Ty::Workload),
    ("", "Service", Ty::Service),
    ("", "Endpoints", Ty::Plain),
    ("", "ConfigMap", Ty::Plain),
    ("", "Secret", Ty::Plain),
    ("", "ServiceAccount", Ty::ServiceAccount),
    ("", "Node", Ty::Node),
    ("", "Namespace", Ty::Namespace),
    ("", "Event", Ty::Plain),
    ("", "PersistentVolume", Ty::Plain),
    ("", "PersistentVolumeClaim", Ty::PersistentVolumeClaim),
    ("", "LimitRange", Ty::Plain),
    ("", "ResourceQuota", Ty::Plain),
    ("apps", "Deployment", Ty::Deployment),
    ("apps", "ReplicaSet", Ty::Workload),
    ("apps", "StatefulSet", Ty::Workload),
    ("apps", "DaemonSet", Ty::Workload),
    ("apps", "ControllerRevision", Ty::Plain),
    ("batch", "Job", Ty::Job),
    ("batch", "CronJob", Ty::CronJob),
    ("autoscaling", "HorizontalPodAutoscaler", Ty::StatusOnly),
    ("networking.k8s.io", "Ingress", Ty::Plain),
    ("networking.k8s.io", "IngressClass", Ty::Plain),
    ("networking.k8s.io", "NetworkPolicy", Ty::NetworkPolicy),
    ("rbac.authorization.k8s.io", "Role", Ty::Plain),
    ("rbac.authorization.k8s.io", "ClusterRole", Ty::Plain),
    ("rbac.authorization.k8s.io", "RoleBinding", Ty::RoleBinding),
    (
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        Ty::RoleBinding,
    ),
    ("policy", "PodDisruptionBudget", Ty::PodDisruptionBudget),
    ("storage.k8s.io", "StorageClass", Ty::Plain),
    ("coordination.k8s.io", "Lease", Ty::Plain),
    ("discovery.k8s.io", "EndpointSlice", Ty::Plain),
    ("events.k8s.io", "Event", Ty::Plain),
    ("networking.k8s.io", "IPAddress", Ty::Plain),
    ("networking.k8s.io", "ServiceCIDR", Ty::StatusOnly),
    ("storage.k8s.io", "CSIDriver", Ty::Plain),
    ("storage.k8s.io", "CSINode", Ty::CsiNode),
    ("storage.k8s.io", "VolumeAttachment", Ty::Plain),
    ("scheduling.k8s.io", "PriorityClass", Ty::Plain),
    ("node.k8s.io", "RuntimeClass", Ty::Plain),
    (
        "certificates.k8s.io",
        "CertificateSigningRequest",
        Ty::Plain,
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
        Ty::WebhookConfiguration,
    ),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
        Ty::WebhookConfiguration,
    ),
    (
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        Ty::Plain,
    ),
    ("apiregistration.k8s.io", "APIService", Ty::StatusOnly),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema", Ty::StatusOnly),
    (
        "flowcontrol.apiserver.k8s.io",
        "PriorityLevelConfiguration",
        Ty::StatusOnly,
    ),
];

/// The root type of a built-in kind; `None` for kinds without compiled-in strategies.
pub(crate) fn root(group: &str, kind: &str) -> Option<Ty> {
    KINDS
        .iter()
        .find(|(g, k, _)| *g == group && *k == kind)
        .map(|(_, _, ty)| *ty)
        // Every other built-in kind takes strategic merge patches too (upstream compiles
        // them all in): maps merge, lists are replaced, as for its atomic lists.
        .or_else(|| crate::api::registry::builtin_strategy(group, kind).map(|_| Ty::Plain))
}

/// How field `name` of type `ty` is patched; unknown fields get the defaults.
pub(crate) fn lookup(ty: Ty, name: &str) -> Field {
    fields(ty)
        .iter()
        .find(|f| f.name == name)
        .copied()
        .unwrap_or(Field::UNKNOWN)
}

/// The default a list-map key field takes when an item omits it. Upstream fills key fields
/// from the schema default; `protocol` (container and service ports) is the only defaulted
/// key among the built-in kinds here.
pub(crate) fn key_default(key: &str) -> Option<serde_json::Value> {
    (key == "protocol").then(|| serde_json::Value::from("TCP"))
}

/// The patch strategy of one field, spelled like the OpenAPI extensions
/// (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type`,
/// `x-kubernetes-list-map-keys`), e.g. for publishing them in OpenAPI documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldStrategy {
    /// `"merge"`, `"merge,retainKeys"`, `"retainKeys"`, `"replace"`, or `None`.
    pub patch_strategy: Option<&'static str>,
    /// The SMP merge key of a list of maps.
    pub patch_merge_key: Option<&'static str>,
    /// `"map"` or `"set"`; `None` for atomic lists and for non-list fields.
    pub list_type: Option<&'static str>,
    /// The apply keys of a `"map"` list.
    pub list_map_keys: &'static [&'static str],
}

/// Describes the field at `path` (field names from the object root; a list is stepped
/// through to its items, so `["spec","template","spec","containers","ports"]` names
/// Container.ports). `None` when the kind has no compiled-in strategies.
pub fn field_strategy(group: &str, kind: &str, path: &[&str]) -> Option<FieldStrategy> {
    let mut ty = root(group, kind)?;
    let mut field = Field::UNKNOWN;
    for name in path {
        field = lookup(ty, name);
        ty = field.ty;
    }
    let patch_strategy = match (field.smp, field.retain_keys) {
        (Smp::MergeKey(_) | Smp::MergePrimitives, true) => Some("merge,retainKeys"),
        (Smp::MergeKey(_) | Smp::MergePrimitives, false) => Some("merge"),
        (Smp::Replace, _) => Some("replace"),
        (Smp::Default, true) => Some("retainKeys"),
        (Smp::Default, false) => None,
    };
    let patch_merge_key = match field.smp {
        Smp::MergeKey(key) => Some(key),
        _ => None,
    };
    let (list_type, list_map_keys): (Option<&'static str>, &'static [&'static str]) =
        match field.list {
            ListType::Map(keys) => (Some("map"), keys),
            ListType::Set => (Some("set"), &[]),
            ListType::Atomic => (None, &[]),
        };
    Some(FieldStrategy {
        patch_strategy,
        patch_merge_key,
        list_type,
        list_map_keys,
    })
}

#[cfg(test)]
#[path = "merge_keys_tests.rs"]
mod tests;
