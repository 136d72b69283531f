//! The admission chain: one ordered list of plugins that see every write after
//! authentication, authorization and decoding, and before storage — mutating plugins first
//! (they may change the object), then the kind's validation, then validating plugins (they may
//! only refuse), as kube-apiserver runs its `--enable-admission-plugins`.
//!
//! Invariants:
//! - A request no plugin [`Plugin::handles`] costs one synchronous pass over the plugin list
//!   and nothing else: the write runs under the store lock as it always did.
//! - A request some plugin handles is computed outside the store lock (plugins may do I/O:
//!   read other objects, call webhooks) and written only if the stored object is still the
//!   one it was computed from; otherwise the whole update (patch, defaults, admission) is
//!   retried, as upstream's `GuaranteedUpdate` does.
//! - Plugins never write the object being admitted themselves; they change the `obj` they
//!   are handed (mutating) or return an error (both phases). Errors are Kubernetes Statuses.
//!
//! # Adding a plugin
//! Implement [`Plugin`] in a file of this module (one plugin per file), say in `handles`
//! (cheaply) which requests it wants, and add it in [`Chain::standard`] at upstream's
//! position. Warnings for the client (`Warning: 299` headers) go through
//! [`Attributes::warn`].

mod mutating_webhook;
pub mod rbac_escalation;
mod validating_webhook;
pub mod webhook;

pub use mutating_webhook::MutatingAdmissionWebhook;
pub use validating_webhook::ValidatingAdmissionWebhook;

use super::auth::UserInfo;
use super::status::ApiError;
use super::ApiState;
use crate::api::registry::ResourceType;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::Arc;

pub mod default_storage_class;
pub mod default_toleration_seconds;
pub mod limit_ranger;
pub mod namespace_lifecycle;
pub mod node_password;
pub mod node_restriction;
pub mod priority;
pub mod pvc_resize;
pub mod runtime_class;
pub mod service_account;
pub mod storage_object_in_use_protection;
pub(crate) mod support;

/// What a request does to its object (upstream's `admission.Operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    /// exec, attach, port-forward, proxy.
    Connect,
}

impl Operation {
    /// Upstream's spelling (`CREATE`, ...), as in AdmissionReview and webhook rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// Everything a plugin may know about a request besides the objects.
pub struct Attributes<'a> {
    pub operation: Operation,
    /// The resource as requested (group, version, kind, plural, scope).
    pub rt: &'a ResourceType,
    /// `status`, `scale`, `binding`, ... or `None` for the resource itself.
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    /// The object's name; empty for a create with `generateName` before it is chosen.
    pub name: &'a str,
    pub user: &'a UserInfo,
    pub dry_run: bool,
    /// The request's options object (`CreateOptions`, `UpdateOptions`, `DeleteOptions`),
    /// as upstream passes it to webhooks; `Null` when there were none.
    pub options: Value,
    warnings: Mutex<Vec<String>>,
}

impl<'a> Attributes<'a> {
    pub fn new(
        operation: Operation,
        rt: &'a ResourceType,
        subresource: Option<&'a str>,
        namespace: Option<&'a str>,
        name: &'a str,
        user: &'a UserInfo,
        dry_run: bool,
    ) -> Attributes<'a> {
        Attributes {
            operation,
            rt,
            subresource,
            namespace,
            name,
            user,
            dry_run,
            options: Value::Null,
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Adds a warning for the client (an HTTP `Warning: 299` header on the answer).
    pub fn warn(&self, text: impl Into<String>) {
        self.warnings.lock().push(text.into());
    }

    /// The warnings plugins gave, in order.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock())
    }

    /// (group, version, kind) of the object the request carries: a subresource's own kind
    /// (a Scale for `deployments/scale`) or the resource's.
    pub fn object_kind(&self) -> (&str, &str, &str) {
        self.rt.object_kind(self.subresource)
    }

    /// Whether the request's object is of the resource's own kind (the object itself or a
    /// view of it such as `status`), so the kind's defaults and rules apply to it.
    pub fn carries_resource_kind(&self) -> bool {
        self.object_kind() == (&self.rt.group, &self.rt.version, &self.rt.kind)
    }

    /// `group/resource` of the request (`apps/deployments`, `/pods` for core).
    pub fn is(&self, group: &str, resource: &str) -> bool {
        self.rt.group == group && self.rt.plural == resource
    }
}

/// The future a plugin returns.
pub type Admit<'a> = BoxFuture<'a, Result<(), ApiError>>;

/// One admission plugin. Both phases default to "nothing to do".
pub trait Plugin: Send + Sync {
    /// Upstream's plugin name (`NamespaceLifecycle`, `PodSecurity`, ...), for logs.
    fn name(&self) -> &'static str;

    /// Whether this plugin wants to see the request at all. Synchronous and cheap: it runs
    /// for every write.
    fn handles(&self, attrs: &Attributes<'_>) -> bool;

    /// Mutating phase: may change `obj` (the new object; for Connect, the request's
    /// options such as a `PodExecOptions`; for Delete there is none and the plugin is not
    /// called). `old` is the stored object for updates.
    fn admit<'a>(
        &'a self,
        _state: &'a Arc<ApiState>,
        _attrs: &'a Attributes<'a>,
        _obj: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async { Ok(()) })
    }

    /// Told after every stored (not dry-run) write of an object of type `rt`, before the
    /// write is answered. Plugins that keep objects in memory (webhook configurations)
    /// note the change here; it runs on every write, so it must be trivial.
    fn observe_write(&self, _rt: &ResourceType) {}

    /// Validating phase: may refuse. `obj` is `None` for Delete (then `old` is the object
    /// being deleted); for Connect it is the request's options.
    fn validate<'a>(
        &'a self,
        _state: &'a Arc<ApiState>,
        _attrs: &'a Attributes<'a>,
        _obj: Option<&'a Value>,
        _old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// The ordered plugin list of one API server.
#[derive(Default)]
pub struct Chain {
    plugins: Vec<Box<dyn Plugin>>,
}

impl Chain {
    /// The chain `skiff server` runs, in upstream's order.
    pub fn standard() -> Chain {
        Chain {
            plugins: vec![
                Box::new(namespace_lifecycle::NamespaceLifecycle),
                Box::new(limit_ranger::LimitRanger),
                Box::new(service_account::ServiceAccount),
                Box::new(node_restriction::NodeRestriction),
                Box::new(node_password::NodePassword),
                Box::new(priority::Priority),
                Box::new(default_toleration_seconds::DefaultTolerationSeconds::default()),
                Box::new(default_storage_class::DefaultStorageClass),
                Box::new(storage_object_in_use_protection::StorageObjectInUseProtection),
                Box::new(pvc_resize::PersistentVolumeClaimResize),
                Box::new(runtime_class::RuntimeClass),
                Box::new(pod_security::PodSecurity),
                Box::new(MutatingAdmissionWebhook::default()),
                Box::new(ValidatingAdmissionWebhook::default()),
                // Not an admission plugin upstream (its RBAC storage does this check); it
                // runs after every other validating plugin here.
                Box::new(rbac_escalation::RbacEscalation),
                Box::new(resource_quota::ResourceQuota::default()),
            ],
        }
    }

    /// Sets the tolerations DefaultTolerationSeconds gives pods (kube-apiserver's
    /// `--default-not-ready-toleration-seconds`, `--default-unreachable-toleration-seconds`).
    pub fn set_default_toleration_seconds(&mut self, not_ready: i64, unreachable: i64) {
        let plugin = default_toleration_seconds::DefaultTolerationSeconds {
            not_ready_seconds: not_ready,
            unreachable_seconds: unreachable,
        };
        if let Some(p) = self.plugins.iter_mut().find(|p| p.name() == plugin.name()) {
            *p = Box::new(plugin);
        }
    }

    /// A chain of exactly these plugins (tests).
    pub fn of(plugins: Vec<Box<dyn Plugin>>) -> Chain {
        Chain { plugins }
    }

    /// Whether any plugin wants this request.
    pub fn interested(&self, attrs: &Attributes<'_>) -> bool {
        self.plugins.iter().any(|p| p.handles(attrs))
    }

    /// Tells every plugin about a stored write ([`Plugin::observe_write`]).
    pub fn observe_write(&self, rt: &ResourceType) {
        for p in &self.plugins {
            p.observe_write(rt);
        }
    }

    /// Runs the mutating phase of every interested plugin, in order.
    pub async fn admit(
        &self,
        state: &Arc<ApiState>,
        attrs: &Attributes<'_>,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        for p in self.plugins.iter().filter(|p| p.handles(attrs)) {
            p.admit(state, attrs, obj, old).await?;
        }
        Ok(())
    }

    /// Both phases for a request object that stands alone (nothing stored is replaced: an
    /// Eviction, a TokenRequest, a connect's options), skipped when no plugin wants it.
    /// `obj` ends as the mutating plugins left it.
    pub async fn admit_request_object(
        &self,
        state: &Arc<ApiState>,
        attrs: &Attributes<'_>,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        if !self.interested(attrs) {
            return Ok(());
        }
        self.admit(state, attrs, obj, None).await?;
        self.validate(state, attrs, Some(obj), None).await
    }

    /// Runs the validating phase of every interested plugin, in order.
    pub async fn validate(
        &self,
        state: &Arc<ApiState>,
        attrs: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        for p in self.plugins.iter().filter(|p| p.handles(attrs)) {
            p.validate(state, attrs, obj, old).await?;
        }
        Ok(())
    }
}

pub mod pod_security;
pub mod resource_quota;
#[cfg(test)]
mod tests;
