//! The in-memory snapshot of one flavor's webhook configurations.
//!
//! Invariant: a request that starts after a configuration write has been answered sees that
//! write. Every stored write of the configurations bumps `generation` (through
//! `Plugin::observe_write`, called by the write path after the store acknowledged it and
//! before the client gets its answer); a snapshot is current only if it was built at the
//! present generation, and a stale one is rebuilt from the store by the next request that
//! needs it. `handles()` reads the snapshot without waiting: with no configurations stored
//! it costs one uncontended read lock and an atomic load.

use super::client::{new_client, HttpsClient};
use super::config::{hooks_of, Flavor, Hook};
use crate::api::registry::ResourceType;
use crate::apiserver::objects::parse_record;
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiState;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const GROUP: &str = "admissionregistration.k8s.io";

/// The parsed webhooks at one generation, in upstream's order (configurations by name,
/// webhooks as listed).
#[derive(Default)]
pub struct Snapshot {
    generation: u64,
    pub hooks: Vec<Arc<Hook>>,
    /// Clients by (`caBundle`, TLS server name), kept across rebuilds so connection pools
    /// survive them.
    clients: HashMap<(String, Option<String>), Arc<HttpsClient>>,
}

pub struct ConfigCache {
    flavor: Flavor,
    /// Starts ahead of the empty snapshot: the first request that might need webhooks
    /// loads them.
    generation: AtomicU64,
    snapshot: RwLock<Arc<Snapshot>>,
    /// One rebuild at a time; the others wait for it and use its result.
    rebuild: tokio::sync::Mutex<()>,
}

impl ConfigCache {
    pub fn new(flavor: Flavor) -> ConfigCache {
        ConfigCache {
            flavor,
            generation: AtomicU64::new(1),
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            rebuild: tokio::sync::Mutex::new(()),
        }
    }

    /// Notes a stored write of objects of type `rt`.
    pub fn observe_write(&self, rt: &ResourceType) {
        if rt.group == GROUP && rt.plural == self.flavor.plural() {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Without waiting: `None` if the snapshot is stale, else what `f` says of it.
    pub fn peek<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> Option<T> {
        let snap = self.snapshot.read();
        (snap.generation == self.generation.load(Ordering::Acquire)).then(|| f(&snap))
    }

    /// The current snapshot, rebuilt from the store if a write made it stale.
    pub async fn current(&self, state: &ApiState) -> Result<Arc<Snapshot>, ApiError> {
        if let Some(s) = self.fresh() {
            return Ok(s);
        }
        let _one = self.rebuild.lock().await;
        if let Some(s) = self.fresh() {
            return Ok(s);
        }
        // Read the generation before the store: a write landing meanwhile leaves the new
        // snapshot stale rather than letting it claim to include that write.
        let generation = self.generation.load(Ordering::Acquire);
        let previous = self.snapshot.read().clone();
        let mut clients = previous.clients.clone();
        let mut hooks = Vec::new();
        if let Some(rt) = state.registry.lookup(GROUP, "v1", self.flavor.plural()) {
            let (records, _) = state.store.list(&rt.storage_prefix()).await?;
            let mut configs = records
                .iter()
                .map(parse_record)
                .collect::<Result<Vec<_>, _>>()?;
            configs.sort_by(|a, b| {
                a["metadata"]["name"]
                    .as_str()
                    .cmp(&b["metadata"]["name"].as_str())
            });
            let mut client_for = |ca: &str, server_name: Option<&str>| {
                let key = (ca.to_owned(), server_name.map(str::to_owned));
                if let Some(c) = clients.get(&key) {
                    return Ok(c.clone());
                }
                let c = new_client(ca, server_name)?;
                clients.insert(key, c.clone());
                Ok(c)
            };
            for c in &configs {
                hooks.extend(
                    hooks_of(self.flavor, c, &mut client_for)
                        .into_iter()
                        .map(Arc::new),
                );
            }
        }
        let snap = Arc::new(Snapshot {
            generation,
            hooks,
            clients,
        });
        *self.snapshot.write() = snap.clone();
        Ok(snap)
    }

    fn fresh(&self) -> Option<Arc<Snapshot>> {
        let snap = self.snapshot.read();
        (snap.generation == self.generation.load(Ordering::Acquire)).then(|| snap.clone())
    }
}
