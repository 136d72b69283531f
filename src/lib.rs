//! skiff: one binary that turns a few Linux hosts into a Kubernetes-compatible cluster.
//!
//! Map of the components (arrows are allowed dependencies):
//! - `store` (crate-private): sled-backed revisioned key-value store with a WAL, an event
//!   log and a watch hub. Bytes only; only `apiserver` uses it.
//! - [`api`]: the Kubernetes object model: resource registry, defaulting, validation,
//!   selectors, patch, protobuf decoding, Table printers. Pure, no I/O.
//! - [`apiserver`]: HTTPS server, handlers, watch, authentication (`apiserver::authn`),
//!   the authorizer seam, the admission chain (`apiserver::admission`), Status errors
//!   → api, store, pki.
//! - [`pki`]: CA, certificates, join tokens, kubeconfig files.
//! - [`runtime`]: images (pull, import), snapshots (overlay rootfs), containers (one
//!   shim process each). Knows no Kubernetes types.
//! - [`informers`]: one shared reflector per resource type over the in-process client.
//! - [`authz`]: the Node and RBAC authorizers (decisions from informer caches), the
//!   bootstrap RBAC policy → informers, kube client, `apiserver`'s `Authorizer` trait.
//! - [`controllers`]: namespace deletion, garbage collection, CRD cleanup, service accounts,
//!   root CA, token Secrets, quota usage, ClusterRole aggregation, CSR signing and approval,
//!   expired bootstrap tokens
//!   → informers, kube client (never the store).
//! - [`events`]: the Event recorder every component writes through → kube client.
//! - [`leader_election`]: Lease-based leader election of the scheduler and controllers.
//! - [`scheduler`]: kube-scheduler's default profile: binds pending pods to nodes → informers, kube client, events.
//! - [`kubelet`]: pod workers, volumes, probes, node status and the kubelet API → runtime,
//!   network, kube client.
//! - [`network`]: pod network namespaces, bridge, veths, IPAM, NAT, hostPorts. No
//!   Kubernetes types.
//! - [`agent`]: the node agent entry point, shared by `skiff agent` and `skiff server`:
//!   the join (token, pinned CA, node certificates by CSR and their renewal) and the node's
//!   identity the kubelet runs with.
//! - [`simnodes`]: `skiff sim-nodes`, simulated (hollow) nodes: the agent's join, the
//!   kubelet's heartbeat, Lease and pod workers on an in-memory runtime and pod network
//!   → agent, kubelet, network.
//! - [`server`]: `skiff server` wiring. [`cli`], [`config`]: flags and config file.
//!
//! `docs/architecture.md` has the longer version: the process model, the in-process client
//! and how a request flows.

pub mod agent;
pub mod api;
pub mod apiserver;
pub mod authz;
pub mod cli;
pub mod config;
pub mod controllers;
pub mod events;
pub mod informers;
pub mod kubelet;
pub mod leader_election;
pub mod network;
pub mod pki;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod simnodes;
// Crate-private: only `apiserver` may use the store (every other component goes through the
// API). The store's API is fuller than the API server needs (its own tests use the rest).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod store;

/// `skiff --version` text: the skiff version and the Kubernetes version it serves.
pub const VERSION_STRING: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (Kubernetes ", "v1.35.0", ")");
