//! The ResourceQuota admission plugin (upstream's `plugin/resourcequota`): a create (or an
//! update that grows usage) in a namespace with ResourceQuotas is charged to every quota that
//! matches it, and refused with 403 `exceeded quota: ...` when a charge would pass
//! `status.hard`. Charges are recorded in the quota's `status.used`; the quota controller
//! (`controllers::resource_quota`) sets `status.hard` and recounts `status.used` from the
//! objects, so usage goes down when objects go.
//!
//! Invariants:
//! - A quota is never over-committed: each charge is a read-check-write of the quota under
//!   the store's lock, so concurrent creates see each other's charges. A request charged to
//!   several quotas that fails on a later one gives back the earlier charges.
//! - A namespace without quotas costs `handles()` one lookup in an in-memory set. The set
//!   is filled from the store on the first request, gains a namespace whenever a quota is
//!   admitted there (before it is stored, so no quota is ever missed), and loses it lazily:
//!   a request that finds no quota removes the namespace unless a quota was admitted there
//!   in the last minute (a create still between admission and storage).
//! - Dry-run requests are checked but charge nothing; subresources are never charged.

#[cfg(test)]
mod tests;
pub mod usage;

use super::{Admit, Attributes, Operation, Plugin};
use crate::api::quantity::Quantity;
use crate::api::registry::ResourceType;
use crate::apiserver::objects::{self, parse_record, Decision};
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiState;
use parking_lot::RwLock;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use usage::{kind_of, resource_list, usage, Kind, ResourceList};

/// How long a namespace stays in the set after a quota was admitted there, whatever a list
/// says (the quota may still be on its way to the store).
const ADMITTED_QUOTA_GRACE: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct ResourceQuota {
    /// Namespaces that (may) hold quotas → when a quota was last admitted there.
    namespaces: RwLock<HashMap<String, Instant>>,
    /// Whether `namespaces` holds every namespace with a stored quota.
    loaded: AtomicBool,
    load: tokio::sync::OnceCell<()>,
}

impl Plugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    fn handles(&self, attrs: &Attributes<'_>) -> bool {
        let Some(ns) = attrs.namespace else {
            return false;
        };
        let Some(kind) = kind_of(&attrs.rt.group, &attrs.rt.plural) else {
            return false;
        };
        match (attrs.operation, attrs.subresource) {
            (Operation::Create, None) => {}
            (Operation::Update, None) if usage::charges_updates(kind) => {}
            // An in-place resize changes a pod's requests and limits.
            (Operation::Update, Some("resize")) if kind == Kind::Pods => {}
            _ => return false,
        }
        if attrs.is("", "resourcequotas") || !self.loaded.load(Ordering::Acquire) {
            return true;
        }
        self.namespaces.read().contains_key(ns)
    }

    fn validate<'a>(
        &'a self,
        state: &'a Arc<ApiState>,
        attrs: &'a Attributes<'a>,
        obj: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> Admit<'a> {
        Box::pin(async move {
            let (Some(obj), Some(ns)) = (obj, attrs.namespace) else {
                return Ok(());
            };
            let Some(kind) = kind_of(&attrs.rt.group, &attrs.rt.plural) else {
                return Ok(());
            };
            if attrs.is("", "resourcequotas") {
                self.namespaces
                    .write()
                    .insert(ns.to_owned(), Instant::now());
            }
            let rq = quota_type(state)?;
            self.ensure_loaded(state, &rq).await?;
            let quotas = list_quotas(state, &rq, ns).await?;
            if quotas.is_empty() {
                self.forget_if_stale(ns);
                return Ok(());
            }
            let old = old.filter(|_| attrs.operation == Operation::Update);
            // Upstream's pod evaluator looks at an update of the pod itself only when it
            // moves the pod between the Terminating and NotTerminating scopes.
            if let (Kind::Pods, None, Some(old)) = (kind, attrs.subresource, old) {
                if usage::is_terminating(old) == usage::is_terminating(obj) {
                    return Ok(());
                }
            }
            let charges = check_request(attrs, kind, &quotas, obj, old)?;
            if attrs.dry_run || charges.is_empty() {
                return Ok(());
            }
            commit(state, attrs, &rq, ns, &charges).await
        })
    }
}

impl ResourceQuota {
    /// Fills the namespace set from the store, once.
    async fn ensure_loaded(&self, state: &ApiState, rq: &ResourceType) -> Result<(), ApiError> {
        self.load
            .get_or_try_init(|| async {
                let (records, _) = state.store.list(&rq.storage_prefix()).await?;
                let mut set = self.namespaces.write();
                for r in &records {
                    let q = parse_record(r)?;
                    if let Some(ns) = q["metadata"]["namespace"].as_str() {
                        set.entry(ns.to_owned()).or_insert_with(Instant::now);
                    }
                }
                Ok::<(), ApiError>(())
            })
            .await?;
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    fn forget_if_stale(&self, ns: &str) {
        let mut set = self.namespaces.write();
        if set
            .get(ns)
            .is_some_and(|t| t.elapsed() > ADMITTED_QUOTA_GRACE)
        {
            set.remove(ns);
        }
    }

    /// Whether requests in `ns` are looked at (tests of the fast path).
    #[cfg(test)]
    pub(crate) fn watches(&self, ns: &str) -> bool {
        self.namespaces.read().contains_key(ns)
    }
}

fn quota_type(state: &ApiState) -> Result<Arc<ResourceType>, ApiError> {
    state
        .registry
        .lookup("", "v1", "resourcequotas")
        .ok_or_else(|| ApiError::internal("resourcequotas are not served"))
}

async fn list_quotas(
    state: &ApiState,
    rq: &ResourceType,
    ns: &str,
) -> Result<Vec<Value>, ApiError> {
    let (records, _) = state.store.list(&rq.namespace_prefix(Some(ns))).await?;
    records.iter().map(parse_record).collect()
}

/// One charge: the quota's name and what to add to its `status.used`.
pub type Charge = (String, ResourceList);

/// Upstream's `CheckRequest`: the charges a request makes, or why it is refused.
pub fn check_request(
    attrs: &Attributes<'_>,
    kind: Kind,
    quotas: &[Value],
    obj: &Value,
    old: Option<&Value>,
) -> Result<Vec<Charge>, ApiError> {
    let (group, plural) = (attrs.rt.group.as_str(), attrs.rt.plural.as_str());
    let mut interesting = Vec::new();
    for q in quotas {
        if !usage::quota_matches(group, plural, kind, q, obj) {
            continue;
        }
        let name = q["metadata"]["name"].as_str().unwrap_or_default();
        let hard = resource_list(&q["status"]["hard"]);
        let restricted = usage::matching_resources(group, plural, kind, hard.keys());
        if kind == Kind::Pods {
            usage::pod_constraints(&restricted, obj)
                .map_err(|e| attrs.forbidden(format!("failed quota: {name}: {e}")))?;
        }
        let used = q["status"]["used"].as_object();
        if restricted
            .iter()
            .any(|r| !used.is_some_and(|u| u.contains_key(r)))
        {
            let mut names = restricted.clone();
            names.sort();
            return Err(attrs.forbidden(format!(
                "status unknown for quota: {name}, resources: {}",
                names.join(",")
            )));
        }
        interesting.push(q);
    }
    let input = usage(group, plural, kind, obj);
    let negative: Vec<&str> = input
        .iter()
        .filter(|(_, q)| q.is_negative())
        .map(|(k, _)| k.as_str())
        .collect();
    if !negative.is_empty() {
        return Err(attrs.forbidden(format!(
            "quota usage is negative for resource(s): {}",
            negative.join(",")
        )));
    }
    let mut charges = Vec::new();
    for q in interesting {
        let delta = match old {
            Some(old) if usage::quota_matches(group, plural, kind, q, old) => {
                subtract_non_negative(&input, &usage(group, plural, kind, old))
            }
            _ => input.clone(),
        };
        let hard = resource_list(&q["status"]["hard"]);
        let requested: ResourceList = delta
            .into_iter()
            .filter(|(k, v)| !v.is_zero() && hard.contains_key(k))
            .collect();
        if requested.is_empty() {
            continue;
        }
        let name = q["metadata"]["name"].as_str().unwrap_or_default();
        let used = resource_list(&q["status"]["used"]);
        exceeded(attrs, name, &requested, &used, &hard)?;
        charges.push((name.to_owned(), requested));
    }
    Ok(charges)
}

fn subtract_non_negative(a: &ResourceList, b: &ResourceList) -> ResourceList {
    a.iter()
        .map(|(k, v)| {
            let d = v.minus(b.get(k).copied().unwrap_or(Quantity::ZERO));
            (k.clone(), if d.is_negative() { Quantity::ZERO } else { d })
        })
        .collect()
}

/// Refuses when `used + requested` passes `hard` for any requested resource, with upstream's
/// message naming only the resources that would be exceeded.
fn exceeded(
    attrs: &Attributes<'_>,
    name: &str,
    requested: &ResourceList,
    used: &ResourceList,
    hard: &ResourceList,
) -> Result<(), ApiError> {
    let over: Vec<&String> = requested
        .iter()
        .filter(|(k, v)| {
            let new = used.get(*k).copied().unwrap_or(Quantity::ZERO).plus(**v);
            hard.get(*k).is_some_and(|h| new > *h)
        })
        .map(|(k, _)| k)
        .collect();
    if over.is_empty() {
        return Ok(());
    }
    let print = |list: &ResourceList| {
        over.iter()
            .filter_map(|k| list.get(*k).map(|v| format!("{k}={v}")))
            .collect::<Vec<_>>()
            .join(",")
    };
    Err(attrs.forbidden(format!(
        "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
        print(requested),
        print(used),
        print(hard)
    )))
}

/// Records the charges in the quotas' `status.used`, each checked again against the stored
/// quota under the store's lock; on a refusal the charges already made are given back.
async fn commit(
    state: &ApiState,
    attrs: &Attributes<'_>,
    rq: &Arc<ResourceType>,
    ns: &str,
    charges: &[Charge],
) -> Result<(), ApiError> {
    for (i, (name, requested)) in charges.iter().enumerate() {
        let charged = charge(state, attrs, rq, ns, name, requested, true).await;
        if let Err(e) = charged {
            for (name, requested) in &charges[..i] {
                if let Err(undo) = charge(state, attrs, rq, ns, name, requested, false).await {
                    tracing::warn!(quota = %name, %ns, error = %undo, "giving back a quota charge failed; the quota controller will recount");
                }
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Adds (`add`) or gives back `requested` to one quota's `status.used`.
async fn charge(
    state: &ApiState,
    attrs: &Attributes<'_>,
    rq: &Arc<ResourceType>,
    ns: &str,
    name: &str,
    requested: &ResourceList,
    add: bool,
) -> Result<(), ApiError> {
    objects::write_locked(state, rq, Some(ns), name, false, |cur| {
        // A quota deleted meanwhile constrains nothing any more.
        let Some(mut q) = cur else {
            return Ok(Decision::Keep(Value::Null));
        };
        let used = resource_list(&q["status"]["used"]);
        if add {
            let hard = resource_list(&q["status"]["hard"]);
            exceeded(attrs, name, requested, &used, &hard)?;
        }
        if !q["status"]["used"].is_object() {
            q["status"]["used"] = json!({});
        }
        for (k, v) in requested {
            let cur = used.get(k).copied().unwrap_or(Quantity::ZERO);
            let new = if add {
                cur.plus(*v)
            } else {
                let d = cur.minus(*v);
                if d.is_negative() {
                    Quantity::ZERO
                } else {
                    d
                }
            };
            q["status"]["used"][k] = json!(new.to_string());
        }
        Ok(Decision::Put {
            obj: q,
            created: false,
        })
    })
    .await
    .map(|_| ())
}
