//! One strategy per kind: everything that is special about a kind, in one value, as
//! kube-apiserver keeps it in `pkg/registry/<group>/<kind>/strategy.go`: defaulting, the
//! name rule and validation, what a create, an update and a status write prepare, which
//! fields an update may not change, the table printer, what a delete does and which
//! server-side bookkeeping (service IPs, CRD types) a write needs.
//!
//! Each registry entry ([`crate::api::registry::ResourceType`]) carries a
//! `&'static Strategy` chosen once when the type is registered, so the write path reads a
//! few function pointers and never compares group/kind strings or allocates a strategy.
//! Kinds with nothing special use [`Strategy::GENERIC`]; custom resources use
//! [`crd::CUSTOM`].
//!
//! Invariant: nothing outside this module decides per kind. The apiserver runs the generic
//! rules (server-set metadata, resourceVersion preconditions, spec/status separation,
//! finalizers) and calls the strategy where upstream calls its RESTCreateStrategy,
//! RESTUpdateStrategy, status strategy, RESTDeleteStrategy and TableConvertor.
//!
//! # Adding a kind
//! One file (or an entry in its family's file) with its strategy, plus its registry line in
//! `registry.rs`. A kind that only needs defaults, validation and a printer:
//!
//! ```ignore
//! // src/api/strategy/networking.rs
//! pub static INGRESS_CLASS: Strategy = Strategy {
//!     kind: "IngressClass",
//!     defaults: defaults::groups::ingress_class,
//!     printer: Printing::Builtin(&printers::INGRESS_CLASS),
//!     ..Strategy::GENERIC
//! };
//! // src/api/registry.rs, in BUILTIN:
//! Def { group: "networking.k8s.io", versions: &["v1"], plural: "ingressclasses",
//!       kind: "IngressClass", ..., strategy: &networking::INGRESS_CLASS },
//! ```
//!
//! Then add its row to `tests/fixtures/gen_api_resources.py` only if a default v1.35
//! kube-apiserver serves it too (the fixture is upstream's table, not skiff's). Kinds that
//! are not stored say so with [`Storage`]: reviews ([`Strategy::REVIEW`], answered in
//! `apiserver::handlers::review`) and ComponentStatus (computed live). A kind that records
//! who created it sets `prepare_for_create_by` (CSRs).

pub mod admission;
pub mod apiregistration;
pub mod apps;
pub mod batch;
pub mod certificates;
pub mod cluster;
pub mod config;
pub mod core;
pub mod crd;
pub mod flowcontrol;
pub mod metrics;
pub mod namespace;
pub mod networking;
pub mod pod;
pub mod rbac;
pub mod resource;
pub mod scheduling;
pub mod service;
pub mod storage;

use crate::api::registry::{ResourceType, Subresource};
use crate::api::requester::Requester;
use crate::api::table::{Printer, Spec};
use crate::api::validation::strings::{name_is_dns_subdomain, NameFn};
use crate::api::validation::{meta::validate_object_meta, FieldError};
use serde_json::{Map, Value};

/// How dependents of a deleted object are treated (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// Which table a kind prints.
#[derive(Debug, Clone, Copy)]
pub enum Printing {
    /// Upstream's default convertor (Name, Created At).
    Default,
    /// A built-in printer from [`crate::api::table::printers`].
    Builtin(&'static Spec),
    /// The CRD's `additionalPrinterColumns` of the served version.
    CrdColumns,
}

/// Graceful deletion (pods): the object stays, with a deletion timestamp in the future,
/// until whoever runs it confirms with a grace period of 0.
#[derive(Debug, Clone, Copy)]
pub struct Graceful {
    /// The node that must confirm; `None` when nothing runs the object (deleted at once).
    pub node: fn(&Value) -> Option<&str>,
    /// The fields `node` reads (dotted paths), so a check needs to parse only those.
    pub node_fields: &'static [&'static str],
    /// The grace period, from the object and the one the request asked for.
    pub period: fn(&Value, Option<i64>) -> i64,
}

/// What a delete does beyond the generic rules (finalizers, preconditions, propagation).
#[derive(Debug, Clone, Copy)]
pub struct Delete {
    pub graceful: Option<Graceful>,
    /// `spec.finalizers` hold the deletion as well (namespaces).
    pub spec_finalizers: bool,
    /// How an object entering deletion shows it (Namespace: phase Terminating).
    pub mark_deleting: fn(&mut Value),
    /// A finalizer every deletion adds, for a controller that cleans up first (CRDs: their
    /// custom objects go before the definition).
    pub finalizer: Option<&'static str>,
    /// The propagation policy when the request names none, per served API version.
    pub default_propagation: fn(&str) -> Propagation,
}

impl Delete {
    pub const IMMEDIATE: Delete = Delete {
        graceful: None,
        spec_finalizers: false,
        mark_deleting: no_change,
        finalizer: None,
        default_propagation: background,
    };
}

/// Server-side state a kind's writes keep in step (outside the object itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bookkeeping {
    None,
    /// Services: a cluster IP is allocated on create and released when the object goes.
    ClusterIp,
    /// CRDs: the custom types they define are (un)registered with the registry.
    CustomTypes,
}

/// How the API server answers for a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// Objects are stored and served by the generic REST handlers.
    Stored,
    /// A review (TokenReview, SubjectAccessReview, ...): each create is answered from the
    /// request and never stored.
    Review,
    /// ComponentStatus: computed at each read from the server's own components, never
    /// stored.
    Live,
}

/// Everything special about one kind. Build one with struct update syntax from
/// [`Strategy::GENERIC`], naming only what differs.
pub struct Strategy {
    /// The kind, for diagnostics.
    pub kind: &'static str,
    /// Fills unset fields; never overwrites a value (idempotent).
    pub defaults: fn(&mut Map<String, Value>),
    /// The rule `metadata.name` follows.
    pub name_rule: NameFn,
    /// Kind-specific validation of a defaulted object (metadata is checked generically).
    pub validate: fn(&Value, &mut Vec<FieldError>),
    /// Fields an update may not change: `(old, new)`.
    pub validate_update: fn(&Value, &Value, &mut Vec<FieldError>),
    /// Server-set fields of a new object, before defaulting (uid and name are set).
    pub prepare_for_create: fn(&mut Value),
    /// Server-set fields taken from the requesting user, right after `prepare_for_create`
    /// (CSRs record their requester). `None` for kinds that do not care, so their creates
    /// never build a [`Requester`].
    pub prepare_for_create_by: Option<fn(&mut Value, &Requester)>,
    /// The status a new object starts with, for kinds with a status subresource (after
    /// defaulting); the generic rule drops whatever status the client sent.
    pub initial_status: fn(&mut Value),
    /// Server-set fields of an update of the main resource, after defaulting: `(old, new)`.
    pub prepare_for_update: fn(&Value, &mut Value),
    /// What a status write may change: takes `new` as sent and resets from `old` all the
    /// client may not change there (upstream's status strategy `PrepareForUpdate`).
    pub prepare_for_status_update: fn(&Value, &mut Value),
    /// What a write of one of the kind's other object subresources may change (CSRs'
    /// `approval`, pods' `ephemeralcontainers` and `resize`): takes `new` as sent and resets
    /// from `old` all the rest. `(subresource, old, new)`.
    pub prepare_for_subresource_update: fn(Subresource, &Value, &mut Value),
    /// Checks only a create runs (fields a new object may not set), before `validate`.
    pub validate_create_only: fn(&Value, &mut Vec<FieldError>),
    /// Extra checks of a subresource write (`None` is the main resource): `(subresource,
    /// old, new)`; runs after `validate_update`.
    pub validate_subresource_update: fn(Option<Subresource>, &Value, &Value, &mut Vec<FieldError>),
    /// Objects carry `metadata.generation` even without a `spec` (custom resources).
    pub generation_always: bool,
    pub printer: Printing,
    pub delete: Delete,
    pub bookkeeping: Bookkeeping,
    pub storage: Storage,
}

impl std::fmt::Debug for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Strategy({})", self.kind)
    }
}

impl Strategy {
    /// The strategy of a kind with no rules of its own.
    pub const GENERIC: Strategy = Strategy {
        kind: "",
        defaults: no_defaults,
        name_rule: name_is_dns_subdomain,
        validate: no_validation,
        validate_update: no_validation_update,
        prepare_for_create: no_change,
        prepare_for_create_by: None,
        initial_status: drop_status,
        prepare_for_update: no_update_change,
        prepare_for_status_update: status_only,
        prepare_for_subresource_update: keep_old,
        validate_create_only: no_validation,
        validate_subresource_update: no_subresource_validation,
        generation_always: false,
        printer: Printing::Default,
        delete: Delete::IMMEDIATE,
        bookkeeping: Bookkeeping::None,
        storage: Storage::Stored,
    };

    /// The strategy of a review kind: create-only, answered and never stored.
    pub const REVIEW: Strategy = Strategy {
        kind: "",
        storage: Storage::Review,
        ..Strategy::GENERIC
    };

    /// Fills the defaults of an object in place (non-objects are left alone).
    pub fn apply_defaults(&self, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            (self.defaults)(o);
        }
    }

    /// Create-time validation: metadata (with the kind's name rule), then the kind's own
    /// checks; `namespaced` is the resource's scope.
    pub fn validate_create(&self, obj: &Value, namespaced: bool) -> Vec<FieldError> {
        let mut errs = Vec::new();
        validate_object_meta(obj.get("metadata"), namespaced, self.name_rule, &mut errs);
        (self.validate)(obj, &mut errs);
        errs
    }

    /// Errors for fields an update (of the main resource, or of `subresource`) may not
    /// change.
    pub fn validate_update(
        &self,
        subresource: Option<Subresource>,
        old: &Value,
        new: &Value,
    ) -> Vec<FieldError> {
        let mut errs = Vec::new();
        (self.validate_update)(old, new, &mut errs);
        (self.validate_subresource_update)(subresource, old, new, &mut errs);
        errs
    }

    /// Whether objects of this kind carry `metadata.generation`.
    pub fn tracks_generation(&self, obj: &Value) -> bool {
        self.generation_always || obj.get("spec").is_some()
    }

    /// The table printer of a resource type of this kind.
    pub fn printer(&self, rt: &ResourceType) -> Printer {
        match self.printer {
            Printing::Default => Printer::Default,
            Printing::Builtin(spec) => Printer::Builtin(spec),
            Printing::CrdColumns => match &rt.custom {
                Some(c) => Printer::for_crd(&c.additional_printer_columns),
                None => Printer::Default,
            },
        }
    }
}

fn no_defaults(_: &mut Map<String, Value>) {}
fn no_validation(_: &Value, _: &mut Vec<FieldError>) {}
fn no_validation_update(_: &Value, _: &Value, _: &mut Vec<FieldError>) {}
fn no_update_change(_: &Value, _: &mut Value) {}
fn no_subresource_validation(
    _: Option<Subresource>,
    _: &Value,
    _: &Value,
    _: &mut Vec<FieldError>,
) {
}

/// For hooks with nothing to do.
pub fn no_change(_: &mut Value) {}

/// The default propagation policy of nearly every kind.
pub fn background(_: &str) -> Propagation {
    Propagation::Background
}

/// A new object of a kind with a status subresource starts without status.
pub fn drop_status(obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        o.remove("status");
    }
}

/// Initial status for kinds that keep what the client sent (a kubelet registering its Node).
pub fn keep_status(_: &mut Value) {}

/// Sets `status` to `status` (used by the initial-status hooks).
pub(crate) fn set_status(obj: &mut Value, status: Value) {
    obj["status"] = status;
}

/// Upstream's usual status strategy: a status write changes status and metadata, never the
/// spec (nor any other top-level field).
pub fn status_only(old: &Value, new: &mut Value) {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object_mut()) else {
        return;
    };
    let is_body = |k: &str| !matches!(k, "metadata" | "status" | "apiVersion" | "kind");
    new.retain(|k, _| !is_body(k) || old.contains_key(k));
    for (k, v) in old {
        if is_body(k) {
            new.insert(k.clone(), v.clone());
        }
    }
    if new.get("status").is_some_and(Value::is_null) {
        new.remove("status");
    }
}

/// A write that may change nothing: `new` becomes `old`.
fn keep_old(_: Subresource, old: &Value, new: &mut Value) {
    *new = old.clone();
}

/// Copies `fields` of `metadata` from `old` into `new` (or removes them when `old` has none).
pub(crate) fn keep_metadata(old: &Value, new: &mut Value, fields: &[&str]) {
    let old_meta = old.get("metadata").and_then(Value::as_object);
    if !new["metadata"].is_object() {
        new["metadata"] = Value::Object(Map::new());
    }
    let Some(m) = new["metadata"].as_object_mut() else {
        return;
    };
    for f in fields {
        match old_meta.and_then(|o| o.get(*f)) {
            Some(v) => {
                m.insert((*f).to_owned(), v.clone());
            }
            None => {
                m.remove(*f);
            }
        }
    }
}

/// A field error for an immutable field that changed.
pub(crate) fn immutable(field: &str, new: &Value, detail: &str) -> FieldError {
    FieldError::invalid(field, new, detail)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Strategy;

    /// The strategy of a built-in kind.
    pub fn of(group: &str, kind: &str) -> &'static Strategy {
        crate::api::registry::builtin_strategy(group, kind).unwrap_or(&Strategy::GENERIC)
    }
}

#[cfg(test)]
mod tests;
