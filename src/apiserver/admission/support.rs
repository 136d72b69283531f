//! What the built-in plugins share: upstream's `admission.NewForbidden` wording and reads
//! of other objects straight from the store (the API server owns it, so a plugin sees the
//! latest committed state, as upstream's live lookups do).

use super::Attributes;
use crate::apiserver::objects::parse_record_fields;
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiState;
use serde_json::{json, Value};

impl Attributes<'_> {
    /// Upstream's `admission.NewForbidden(a, err)`: `pods "x" is forbidden: <why>`, with the
    /// request's resource and name in the details.
    pub fn forbidden(&self, why: impl std::fmt::Display) -> ApiError {
        let resource = self.rt.qualified_plural();
        let message = if self.name.is_empty() {
            format!("{resource} is forbidden: {why}")
        } else {
            format!("{resource} \"{}\" is forbidden: {why}", self.name)
        };
        let mut details = json!({"name": self.name, "kind": self.rt.plural});
        if !self.rt.group.is_empty() {
            details["group"] = json!(self.rt.group);
        }
        ApiError {
            details: Some(details),
            ..ApiError::forbidden(message)
        }
    }

    /// Whether the request is for the resource itself (no subresource).
    pub fn is_main(&self) -> bool {
        self.subresource.is_none()
    }
}

fn prefix(group: &str, plural: &str) -> String {
    let group = if group.is_empty() { "core" } else { group };
    format!("{group}/{plural}/")
}

/// One stored object (`ns` is `None` for cluster-scoped kinds).
pub async fn get(
    state: &ApiState,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    get_fields(state, group, plural, ns, name, &[]).await
}

/// [`get`], reading only the fields `keep` names ([`crate::api::pruned`]; all for none).
pub async fn get_fields(
    state: &ApiState,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    name: &str,
    keep: &[&str],
) -> Result<Option<Value>, ApiError> {
    let key = match ns {
        Some(ns) => format!("{}{ns}/{name}", prefix(group, plural)),
        None => format!("{}{name}", prefix(group, plural)),
    };
    state
        .store
        .get(&key)
        .await?
        .map(|r| parse_record_fields(&r, keep))
        .transpose()
}

/// Every stored object of a kind (in one namespace, or of a cluster-scoped kind), by name.
pub async fn list(
    state: &ApiState,
    group: &str,
    plural: &str,
    ns: Option<&str>,
) -> Result<Vec<Value>, ApiError> {
    list_fields(state, group, plural, ns, &[]).await
}

/// [`list`], reading only the fields `keep` names ([`crate::api::pruned`]; all for none).
pub async fn list_fields(
    state: &ApiState,
    group: &str,
    plural: &str,
    ns: Option<&str>,
    keep: &[&str],
) -> Result<Vec<Value>, ApiError> {
    let p = match ns {
        Some(ns) => format!("{}{ns}/", prefix(group, plural)),
        None => prefix(group, plural),
    };
    let (records, _) = state.store.list(&p).await?;
    records
        .iter()
        .map(|r| parse_record_fields(r, keep))
        .collect()
}

/// A string map field (labels, annotations, nodeSelector) as pairs.
pub fn str_map(v: &Value) -> std::collections::BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Upstream's `utilerrors.NewAggregate(errs).Error()`: one message alone, several
/// (deduplicated) in brackets.
pub fn aggregate(errs: &[String]) -> Option<String> {
    let mut seen: Vec<&str> = Vec::new();
    for e in errs {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    match seen.len() {
        0 => None,
        1 => Some(seen[0].to_owned()),
        _ => Some(format!("[{}]", seen.join(", "))),
    }
}
