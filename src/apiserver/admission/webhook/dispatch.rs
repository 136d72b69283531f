//! Deciding and calling: which webhooks a request goes to (rules, then the namespace and
//! object selectors and matchConditions), one call with its failurePolicy, and the two
//! dispatch orders — mutating webhooks one after another with their patches applied and one
//! reinvocation round, validating webhooks all at once.
//!
//! Invariant: a webhook's failure to answer (`ErrCallingWebhook` upstream) refuses the request
//! only under failurePolicy Fail; a webhook's denial, a refused dry run and a failing
//! selector always refuse it.

use super::cache::ConfigCache;
use super::client::{post, post_url, service_host, Target};
use super::config::{Flavor, Hook};
use super::matching::{exempt, invocation_for, is_namespace_object, may_match, Invocation};
use super::review;
use super::service;
use crate::apiserver::admission::{Attributes, Operation};
use crate::apiserver::objects::parse_record;
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiState;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// The webhooks of one flavor: the configuration snapshot and how to run them.
pub struct Webhooks {
    flavor: Flavor,
    pub cache: ConfigCache,
}

/// Why a call gave no verdict or refused.
#[derive(Debug)]
pub enum Failure {
    /// The webhook could not be called or answered nonsense (`ErrCallingWebhook`): the
    /// reason text; the failurePolicy decides.
    Calling(String),
    /// A refusal that stands whatever the failurePolicy (a denial, an unsupported dry run).
    Refused(ApiError),
}

/// Upstream's `NewInternalError`: 500 with the error as message and single cause.
pub fn internal_error(err: impl std::fmt::Display) -> ApiError {
    let err = err.to_string();
    ApiError {
        details: Some(json!({"causes": [{"message": err}]})),
        ..ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {err}"),
        )
    }
}

/// Upstream's `ToStatusErr`: the webhook's Status, with a failure code and the
/// `admission webhook "x" denied the request` prefix.
pub fn denial(hook_name: &str, result: &Value) -> ApiError {
    let denied_by = format!("admission webhook {hook_name:?} denied the request");
    let code = result["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let reason = result["reason"].as_str().unwrap_or_default();
    let message = match result["message"].as_str().unwrap_or_default() {
        "" if !reason.is_empty() => format!("{denied_by}: {reason}"),
        "" => format!("{denied_by} without explanation"),
        m => format!("{denied_by}: {m}"),
    };
    ApiError {
        details: result.get("details").filter(|d| d.is_object()).cloned(),
        ..ApiError::new(code, known_reason(reason), message)
    }
}

/// The Status reasons a client acts on; any other reason a webhook gives is dropped (the
/// code and message still say what happened).
fn known_reason(reason: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    ];
    KNOWN.iter().find(|k| **k == reason).copied().unwrap_or("")
}

fn labels(obj: Option<&Value>) -> Option<&Map<String, Value>> {
    obj.and_then(|o| o["metadata"]["labels"].as_object())
}

/// The labels of the request's namespace, read once per request.
struct NamespaceLabels(Option<Option<Map<String, Value>>>);

impl NamespaceLabels {
    async fn get(
        &mut self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        obj: Option<&Value>,
    ) -> Result<Option<&Map<String, Value>>, ApiError> {
        if self.0.is_none() {
            // A Namespace being created or updated is selected by its new labels; deleted,
            // by its stored ones.
            let own = is_namespace_object(attrs)
                && attrs.subresource.is_none()
                && matches!(attrs.operation, Operation::Create | Operation::Update);
            let found = if own {
                labels(obj).cloned()
            } else {
                let name = if is_namespace_object(attrs) {
                    attrs.name
                } else {
                    attrs.namespace.unwrap_or_default()
                };
                let rt = state
                    .registry
                    .lookup("", "v1", "namespaces")
                    .ok_or_else(|| internal_error("namespaces are not served"))?;
                let rec = state
                    .store
                    .get(&rt.key(None, name))
                    .await?
                    .ok_or_else(|| ApiError::namespace_not_found(name))?;
                labels(Some(&parse_record(&rec)?)).cloned()
            };
            self.0 = Some(found);
        }
        Ok(self.0.as_ref().and_then(Option::as_ref))
    }
}

impl Webhooks {
    pub fn new(flavor: Flavor) -> Webhooks {
        Webhooks {
            flavor,
            cache: ConfigCache::new(flavor),
        }
    }

    /// Whether some webhook might want the request (or the snapshot must be reloaded to
    /// know). Synchronous and cheap.
    pub fn handles(&self, attrs: &Attributes<'_>) -> bool {
        if exempt(attrs) {
            return false;
        }
        self.cache
            .peek(|s| s.hooks.iter().any(|h| may_match(h, attrs)))
            .unwrap_or(true)
    }

    /// Upstream's `ShouldCallHook`: the invocation if the webhook is to be called.
    async fn should_call(
        &self,
        state: &ApiState,
        hook: &Hook,
        attrs: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
        ns_labels: &mut NamespaceLabels,
    ) -> Result<Option<Invocation>, ApiError> {
        let Some(inv) = invocation_for(hook, attrs, &state.registry) else {
            return Ok(None);
        };
        let namespaced = attrs.namespace.is_some_and(|n| !n.is_empty());
        if namespaced || is_namespace_object(attrs) {
            let sel = hook.namespace_selector.as_ref().map_err(internal_error)?;
            if !sel.is_empty() && !sel.matches(ns_labels.get(state, attrs, obj).await?) {
                return Ok(None);
            }
        }
        let sel = hook.object_selector.as_ref().map_err(internal_error)?;
        // Selected if the new or the old object (whichever exists) carries the labels.
        let selected = |o: Option<&Value>| o.is_some() && sel.matches(labels(o));
        if !sel.is_empty() && !selected(obj) && !selected(old) {
            return Ok(None);
        }
        if !hook.match_conditions.is_empty() {
            // CEL is not evaluated yet: treated as upstream treats an evaluation error.
            if hook.fail_open {
                tracing::warn!(webhook = %hook.name, "matchConditions are not evaluated; the webhook is skipped (failurePolicy Ignore)");
                return Ok(None);
            }
            let gr = if attrs.rt.group.is_empty() {
                attrs.rt.plural.clone()
            } else {
                format!("{}.{}", attrs.rt.plural, attrs.rt.group)
            };
            return Err(ApiError::forbidden(format!(
                "{gr} {:?} is forbidden: webhook {:?}: matchConditions {:?} cannot be evaluated: CEL expressions are not supported by this server",
                attrs.name, hook.name, hook.match_conditions
            )));
        }
        Ok(Some(inv))
    }

    /// One call: the AdmissionReview out, the verified answer back. Warnings go to the
    /// client; a denial is [`Failure::Refused`].
    async fn call(
        &self,
        state: &ApiState,
        hook: &Hook,
        inv: &Invocation,
        attrs: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<review::Answer, Failure> {
        if attrs.dry_run {
            match hook.side_effects.as_deref() {
                None => return Err(Failure::Calling("Webhook SideEffects is nil".into())),
                Some("None" | "NoneOnDryRun") => {}
                Some(_) => {
                    return Err(Failure::Refused(ApiError::bad_request(format!(
                        "admission webhook {:?} does not support dry run",
                        hook.name
                    ))))
                }
            }
        }
        let version = review::choose_version(&hook.review_versions)
            .map_err(|e| Failure::Calling(format!("could not create admission objects: {e}")))?;
        let uid = uuid::Uuid::new_v4().to_string();
        let body = review::request(version, &uid, inv, attrs, obj, old);
        let bytes = |body: &Value| {
            serde_json::to_vec(body)
                .map_err(|e| Failure::Calling(format!("could not create admission objects: {e}")))
        };
        let no_client = |e: &String| Failure::Calling(format!("could not get REST client: {e}"));
        let answer = match &hook.target {
            Target::Url { url, client } => {
                let client = client.as_ref().map_err(no_client)?;
                let url = post_url(url, hook.timeout);
                post(client, &url, &url, bytes(&body)?, hook.timeout)
                    .await
                    .map_err(|e| Failure::Calling(e.reason))?
            }
            Target::Service {
                namespace,
                name,
                path,
                port,
                client,
            } => {
                let host = service_host(namespace, name);
                let url = post_url(&service::url(&host, *port, path), hook.timeout);
                let client = client.as_ref().map_err(no_client)?;
                let (ip, target_port) = service::resolve(state, namespace, name, *port)
                    .await
                    .map_err(|e| {
                        Failure::Calling(format!("failed to call webhook: Post {url:?}: {e}"))
                    })?;
                let address = post_url(&service::url(&ip, target_port, path), hook.timeout);
                post(client, &address, &url, bytes(&body)?, hook.timeout)
                    .await
                    .map_err(|e| Failure::Calling(e.reason))?
            }
            Target::Missing => {
                return Err(Failure::Calling(
                    "could not get REST client: webhook has neither clientConfig.url nor clientConfig.service".into(),
                ))
            }
        };
        let answer = review::verify(version, &uid, self.flavor == Flavor::Mutating, &answer)
            .map_err(Failure::Calling)?;
        for w in &answer.warnings {
            attrs.warn(w.clone());
        }
        if !answer.allowed {
            return Err(Failure::Refused(denial(&hook.name, &answer.result)));
        }
        Ok(answer)
    }

    /// Mutating dispatch: matching webhooks in order, each seeing the previous ones'
    /// patches; webhooks with `reinvocationPolicy: IfNeeded` run once more if a later one
    /// changed the object. `obj` is `None` for deletes (a patch is then an error).
    pub async fn mutate(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        mut obj: Option<&mut Value>,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let snap = self.cache.current(state).await?;
        let mut ns_labels = NamespaceLabels(None);
        let mut invoked_reinvocable: HashSet<&str> = HashSet::new();
        let mut reinvoke: HashSet<&str> = HashSet::new();
        for round in 0..2 {
            if round == 1 && reinvoke.is_empty() {
                break;
            }
            for hook in &snap.hooks {
                if round == 1 && !reinvoke.contains(hook.uid.as_str()) {
                    continue;
                }
                let cur = obj.as_deref();
                let Some(inv) = self
                    .should_call(state, hook, attrs, cur, old, &mut ns_labels)
                    .await?
                else {
                    continue;
                };
                let outcome = self.call(state, hook, &inv, attrs, cur, old).await;
                if hook.reinvoke_if_needed && round == 0 {
                    invoked_reinvocable.insert(hook.uid.as_str());
                }
                let answer = match outcome {
                    Ok(a) => a,
                    Err(f) => {
                        settle(hook, f)?;
                        continue;
                    }
                };
                let Some(ops) = answer
                    .patch
                    .filter(|p| p.as_array().is_some_and(|a| !a.is_empty()))
                else {
                    continue;
                };
                let Some(target) = obj.as_deref_mut() else {
                    return Err(internal_error(format!(
                        "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
                        hook.name
                    )));
                };
                if apply_patch(attrs, target, &ops)? && round == 0 {
                    // Everything invoked before that may want to see the change.
                    reinvoke.extend(
                        invoked_reinvocable
                            .iter()
                            .copied()
                            .filter(|u| *u != hook.uid),
                    );
                }
            }
        }
        Ok(())
    }

    /// Validating dispatch: every matching webhook is called at once; the first refusal to
    /// arrive is the answer, as upstream.
    pub async fn validate(
        &self,
        state: &ApiState,
        attrs: &Attributes<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let snap = self.cache.current(state).await?;
        let mut ns_labels = NamespaceLabels(None);
        let mut relevant = Vec::new();
        for hook in &snap.hooks {
            if let Some(inv) = self
                .should_call(state, hook, attrs, obj, old, &mut ns_labels)
                .await?
            {
                relevant.push((hook, inv));
            }
        }
        let mut calls: FuturesUnordered<_> = relevant
            .iter()
            .map(|(hook, inv)| async move {
                match self.call(state, hook, inv, attrs, obj, old).await {
                    Ok(_) => Ok(()),
                    Err(f) => settle(hook, f),
                }
            })
            .collect();
        let mut first_error = None;
        while let Some(r) = calls.next().await {
            if let (Err(e), None) = (r, &first_error) {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The failurePolicy applied to a failed call: `Ok` to go on without this webhook.
pub(super) fn settle(hook: &Hook, failure: Failure) -> Result<(), ApiError> {
    match failure {
        Failure::Calling(reason) => {
            let err = format!("failed calling webhook {:?}: {reason}", hook.name);
            if hook.fail_open {
                tracing::warn!(webhook = %hook.name, error = %err, "failed calling webhook, failing open");
                Ok(())
            } else {
                tracing::warn!(webhook = %hook.name, error = %err, "failed calling webhook, failing closed");
                Err(internal_error(err))
            }
        }
        Failure::Refused(e) => Err(e),
    }
}

/// Applies a webhook's JSONPatch, then drops the fields the kind does not have and applies
/// its defaults, as upstream's decoding of the patched object into the kind does (a
/// custom resource is pruned by its structural schema). A subresource's own kind (a Scale,
/// a PodExecOptions) is taken as patched. Returns whether the object changed.
pub(super) fn apply_patch(
    attrs: &Attributes<'_>,
    obj: &mut Value,
    ops: &Value,
) -> Result<bool, ApiError> {
    let mut patched = crate::api::patch::json_patch(obj, ops).map_err(internal_error)?;
    if attrs.carries_resource_kind() {
        crate::api::schema::prune(attrs.rt, &mut patched, &mut Vec::new());
        attrs.rt.strategy.apply_defaults(&mut patched);
        crate::api::schema::apply_defaults(attrs.rt, &mut patched);
    }
    let changed = patched != *obj;
    *obj = patched;
    Ok(changed)
}
