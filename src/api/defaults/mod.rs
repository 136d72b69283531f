//! Defaulting of objects as kube-apiserver applies it when decoding a request or a stored
//! object: the fields users see filled in (`restartPolicy: Always`, port `protocol: TCP`,
//! Deployment strategy, Secret `type: Opaque`, ...).
//!
//! Each kind's strategy (`super::strategy`) names its defaulting function here.
//!
//! Invariant: defaulting only fills unset fields, so it never overwrites a user's value
//! and is idempotent (applying it twice equals applying it once). Server-side allocation
//! (cluster IPs, names, uids) is not done here; the Job selector, which needs the new uid,
//! is the separate [`job_selector_defaults`].

pub(crate) mod core_v1;
pub(crate) mod groups;
pub(crate) mod json;
pub(crate) mod pod;
pub(crate) mod workloads;

pub use self::pod::default_pull_policy;
pub use self::workloads::job_selector_defaults;

#[cfg(test)]
mod tests;
