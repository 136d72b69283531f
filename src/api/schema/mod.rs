//! Field validation of request bodies (`?fieldValidation=Ignore|Warn|Strict`): which fields
//! of an object its type does not declare, which keys a body repeats, and the pruning that
//! drops unknown fields from every stored object whatever the mode.
//!
//! Known fields come from the generated protobuf table for built-in kinds
//! (`protobuf::known`, see there why) and from the CRD's compiled structural schema for
//! custom resources (`structural`, compiled once per registered type and kept in the
//! registry entry). Nothing is compiled or allocated per request unless a field is unknown.

pub mod duplicates;
pub mod structural;
pub mod values;

use crate::api::protobuf::known::prune_kind;
use crate::api::registry::ResourceType;
use serde_json::Value;

/// The `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown fields are dropped silently; duplicates are not looked for.
    Ignore,
    /// Dropped, and each problem answered as a `Warning` header (upstream's default).
    #[default]
    Warn,
    /// Any problem fails the request with 400.
    Strict,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("fieldValidation parameter unsupported: {0:?}, must be one of Ignore, Warn or Strict")]
    UnsupportedMode(String),
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> Result<FieldValidation, SchemaError> {
        match value {
            None | Some("") => Ok(FieldValidation::default()),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(SchemaError::UnsupportedMode(other.to_owned())),
        }
    }

    /// Whether problems are looked for at all (pruning happens anyway).
    pub fn reports(self) -> bool {
        self != FieldValidation::Ignore
    }
}

/// What field validation found in one body.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Problems {
    pub unknown: Vec<String>,
    pub duplicates: Vec<String>,
    /// Repeated YAML keys, already worded (`line 11: key "foo" already set in map`).
    pub yaml: Vec<String>,
}

impl Problems {
    pub fn is_empty(&self) -> bool {
        self.unknown.is_empty() && self.duplicates.is_empty() && self.yaml.is_empty()
    }

    /// One line per problem, as upstream words them in warnings and strict errors.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        let unknown = self.unknown.iter().map(|p| format!("unknown field {p:?}"));
        let dup = self
            .duplicates
            .iter()
            .map(|p| format!("duplicate field {p:?}"));
        unknown.chain(dup).chain(self.yaml.iter().cloned())
    }

    /// Upstream's strict-decoding Status message (unknown fields first, then duplicates).
    pub fn strict_message(&self) -> String {
        format!(
            "strict decoding error: {}",
            self.lines().collect::<Vec<_>>().join(", ")
        )
    }
}

/// Drops the fields `rt`'s objects do not have, naming each in `unknown`. Kinds without a
/// known shape (aggregated or unlisted built-ins, CRDs without a schema) are left alone.
pub fn prune(rt: &ResourceType, obj: &mut Value, unknown: &mut Vec<String>) {
    match &rt.custom {
        Some(custom) => {
            if let Some(schema) = &custom.structural {
                schema.prune(obj, unknown);
            }
        }
        None => {
            prune_kind(&rt.api_version(), &rt.kind, obj, unknown);
        }
    }
}

/// Fills in a custom resource's schema defaults (on write and on read).
pub fn apply_defaults(rt: &ResourceType, obj: &mut Value) {
    if let Some(schema) = rt.custom.as_ref().and_then(|c| c.structural.as_ref()) {
        schema.apply_defaults(obj);
    }
}

/// Whether objects of `rt` change when defaulted (so reads must parse them).
pub fn defaults_on_read(rt: &ResourceType) -> bool {
    rt.custom
        .as_ref()
        .and_then(|c| c.structural.as_ref())
        .is_some_and(|s| s.has_defaults())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_message_lists_unknown_then_duplicate_fields() {
        let p = Problems {
            unknown: vec!["spec.unknownField".into()],
            duplicates: vec!["spec.replicas".into()],
            yaml: Vec::new(),
        };
        assert_eq!(
            p.strict_message(),
            r#"strict decoding error: unknown field "spec.unknownField", duplicate field "spec.replicas""#
        );
        assert_eq!(FieldValidation::parse(None), Ok(FieldValidation::Warn));
        assert_eq!(
            FieldValidation::parse(Some("Strict")),
            Ok(FieldValidation::Strict)
        );
        assert!(FieldValidation::parse(Some("strict")).is_err());
    }
}
