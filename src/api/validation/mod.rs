//! Create-time validation of objects, with upstream's field paths and messages, and the
//! rendering of failures into the 422 `Invalid` Status message and causes.
//!
//! Each kind's strategy (`super::strategy`) names its checks here.
//!
//! Invariant: validation runs on a defaulted object (see `super::defaults`) and reports the
//! mistakes users commonly make, in upstream's order and wording; it never rejects an object
//! kube-apiserver would accept for the checks it implements. It is deliberately not
//! exhaustive: unchecked fields are accepted.
//!
//! Depends on `super::selector` to judge selectors against template labels.

pub(crate) mod core_v1;
pub(crate) mod crd;
mod cron;
pub(crate) mod events;
mod field;
mod json;
pub(crate) mod meta;
pub(crate) mod pod;
pub mod pod_update;
pub(crate) mod rbac;
pub mod strings;
pub(crate) mod workloads;

pub use self::core_v1::MAX_SECRET_SIZE;
pub use self::field::{causes_json, format_invalid_message, BadValue, FieldError, FieldErrorType};
pub use self::meta::TOTAL_ANNOTATION_SIZE_LIMIT_B;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod workload_tests;
