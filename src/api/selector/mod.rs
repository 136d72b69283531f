//! Label and field selectors, as `labelSelector=` / `fieldSelector=` query strings and as
//! `metav1.LabelSelector` objects, with the per-resource field labels the API server supports.
//!
//! Invariant: parsing accepts exactly what k8s.io/apimachinery accepts, rejects the rest with
//! upstream's message text, and `to_string()` yields upstream's canonical form (requirements
//! sorted by key, set values sorted), so strings we emit (Scale `status.selector`, Table
//! selector columns) are byte-for-byte what kube-apiserver would emit.
//!
//! Depends on `super::validation::strings` for label key/value syntax.

mod field;
mod field_labels;
mod label;
mod lexer;

pub use field::{FieldOp, FieldSelector, FieldTerm};
pub use field_labels::{check_field_label, field_value, path_value};
pub use label::{LabelSelector, Operator, Requirement};

/// Why a selector string or object was rejected. The API server answers all of them with
/// 400 BadRequest carrying `to_string()` as the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string or `metav1.LabelSelector` that does not parse or validate.
    #[error("{0}")]
    Label(String),
    /// A field selector string that does not parse (bad term, bad escape).
    #[error("{0}")]
    Field(String),
    /// A field label the resource does not support (upstream wording per resource).
    #[error("{0}")]
    UnsupportedField(String),
}
