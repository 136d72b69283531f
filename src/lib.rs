//! skiff: one binary that turns a few Linux hosts into a Kubernetes-compatible cluster.
//!
//! Map of the components (arrows are allowed dependencies):
//! - [`store`]: sled-backed revisioned key-value store with an event log and watch hub.
//!   Bytes only.
//! - [`api`]: the Kubernetes object model: resource registry, defaulting, validation,
//!   selectors, patch, protobuf decoding, Table printers. Pure, no I/O.
//! - [`apiserver`]: HTTPS server, handlers, watch, authn/authz, Status errors
//!   → api, store, pki.
//! - [`pki`]: CA, certificates, join tokens, kubeconfig files.
//! - [`runtime`]: images (pull, import), snapshots (overlay rootfs), containers (one
//!   shim process each). Knows no Kubernetes types.
//! - [`server`]: `skiff server` wiring. [`cli`], [`config`]: flags and config file.

pub mod agent;
pub mod api;
pub mod apiserver;
pub mod cli;
pub mod config;
pub mod controllers;
pub mod informers;
pub mod pki;
pub mod runtime;
pub mod server;
pub mod store;

/// `skiff --version` text: the skiff version and the Kubernetes version it serves.
pub const VERSION_STRING: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (Kubernetes ", "v1.35.0", ")");
