//! Dynamic admission webhooks (admissionregistration.k8s.io/v1): the machinery shared by
//! the `MutatingAdmissionWebhook` and `ValidatingAdmissionWebhook` plugins, as upstream's
//! `staging/src/k8s.io/apiserver/pkg/admission/plugin/webhook/`.
//!
//! Map: [`config`] one webhook parsed with upstream's defaults, [`cache`] the snapshot of a
//! flavor's configurations, [`matching`] rules, matchPolicy and exemptions, [`review`] the
//! AdmissionReview out and the checks on the answer, [`client`] the HTTPS call and its error
//! texts, [`dispatch`] selectors, failurePolicy and the two dispatch orders.
//!
//! # Why a generation counter, not a watch
//! The API server owns the store, and every write of a configuration passes
//! `objects::write`, which tells the chain (`Chain::observe_write`) once the write is
//! durable and before its client is answered. The cache bumps a counter there, and the next
//! request that might need webhooks rebuilds the snapshot from the store. So a
//! configuration is in force as soon as `kubectl apply` returns (upstream's informer takes a
//! moment; nothing relies on that lag), no task runs in the background, and a server with
//! no configurations pays one read lock and one atomic load per write in `handles()`.
//!
//! # Decisions where skiff differs or has less
//! - `clientConfig.service` webhooks are called at one ready endpoint of the Service
//!   (upstream's `--enable-aggregator-routing` resolver), not at its cluster IP: the
//!   server's host has no service proxy ([`service`]).
//! - `matchConditions` (CEL) are not evaluated: a webhook that has them is treated as upstream
//!   treats an evaluation error — skipped under failurePolicy Ignore, the request refused
//!   (403) under Fail. They are never silently ignored.
//! - matchPolicy Equivalent finds the same group and resource at another served version;
//!   the object is sent as requested (skiff has no conversion between built-in versions).
//! - `auditAnnotations` are dropped (no audit log). A webhook's custom Status `reason`
//!   outside upstream's well-known reasons is dropped; code and message are kept.
//! - Empty `caBundle`: the system trust roots, as upstream.
//! - Writes of the admission configuration kinds are never sent to webhooks (upstream's
//!   exemption). Review kinds (TokenReview, SubjectAccessReview, ...) are not exempt
//!   upstream either.

pub mod cache;
pub mod client;
pub mod config;
pub mod dispatch;
pub mod matching;
pub mod review;
pub mod service;

pub use config::Flavor;
pub use dispatch::Webhooks;

#[cfg(test)]
mod tests;
