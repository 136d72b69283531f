//! The kubelet's ConfigMap and Secret manager, as upstream's default (`Watch` change
//! detection): each object this node's pods use is watched by name while it is in use, so
//! pod starts, env vars and the volume refresh every resync read memory instead of GETting
//! the object (every pod reads `kube-root-ca.crt`), and updates still reach volumes at the
//! next refresh.
//!
//! An object is watched from its first lookup until nobody has looked it up for [`IDLE`]
//! (the pods using it re-read it at every resync, so an idle entry has no pod left): every
//! watch task sweeps idle entries, its own included, once per [`IDLE`]. Until
//! its watch has listed once, or while it cannot (the Node authorizer may not yet know that
//! a new pod uses the object), a lookup GETs the object as before.

use super::env::{EnvError, Objects};
use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::{watcher, WatchStreamExt};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How long an object nobody looks up stays watched.
pub const IDLE: Duration = Duration::from_secs(120);
/// The longest a lookup waits for a new watch's first list before it GETs instead.
const FIRST_LIST_WAIT: Duration = Duration::from_secs(5);

/// What a watch knows of its object.
#[derive(Clone)]
enum Known<K> {
    /// Not listed yet.
    Listing,
    /// The watch failed before it listed once (it keeps retrying).
    Failed,
    Present(Arc<K>),
    Absent,
}

struct Entry<K> {
    state: watch::Receiver<Known<K>>,
    last_used: Instant,
    /// Ends the watch when the entry goes.
    _stop: DropGuard,
}

type Entries<K> = Mutex<HashMap<(String, String), Entry<K>>>;

/// Watched objects of one kind, by namespace and name.
pub struct Watched<K> {
    client: kube::Client,
    entries: Arc<Entries<K>>,
    /// [`IDLE`], shorter in tests.
    idle: Duration,
}

impl<K> Watched<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default,
{
    pub fn new(client: kube::Client) -> Watched<K> {
        Watched::with_idle(client, IDLE)
    }

    fn with_idle(client: kube::Client, idle: Duration) -> Watched<K> {
        Watched {
            client,
            entries: Arc::new(Mutex::new(HashMap::new())),
            idle,
        }
    }

    /// The object (`None`: it does not exist), from its watch when that has listed.
    pub async fn get(&self, ns: &str, name: &str) -> Result<Option<K>, EnvError> {
        let mut state = self.entry(ns, name);
        let known = match tokio::time::timeout(
            FIRST_LIST_WAIT,
            state.wait_for(|k| !matches!(k, Known::Listing)),
        )
        .await
        {
            Ok(Ok(k)) => k.clone(),
            // The watch ended (shutdown) or is slow to list.
            _ => Known::Failed,
        };
        match known {
            Known::Present(o) => Ok(Some((*o).clone())),
            Known::Absent => Ok(None),
            Known::Listing | Known::Failed => kube::Api::<K>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await
                .map_err(|e| EnvError::Get(super::env::api_message(e))),
        }
    }

    /// How many objects are watched now.
    pub fn watched(&self) -> usize {
        self.entries.lock().len()
    }

    fn entry(&self, ns: &str, name: &str) -> watch::Receiver<Known<K>> {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        let key = (ns.to_owned(), name.to_owned());
        if let Some(e) = entries.get_mut(&key) {
            e.last_used = now;
            return e.state.clone();
        }
        let (tx, rx) = watch::channel(Known::Listing);
        let stop = CancellationToken::new();
        let api = kube::Api::<K>::namespaced(self.client.clone(), ns);
        let sweep = (Arc::downgrade(&self.entries), self.idle);
        tokio::spawn(follow(api, name.to_owned(), tx, stop.clone(), sweep));
        entries.insert(
            key,
            Entry {
                state: rx.clone(),
                last_used: now,
                _stop: stop.drop_guard(),
            },
        );
        rx
    }
}

/// Drops the entries nobody has looked up for `idle` (ending their watches).
fn sweep_idle<K>(entries: &Entries<K>, idle: Duration) {
    let now = Instant::now();
    entries
        .lock()
        .retain(|_, e| now.duration_since(e.last_used) < idle);
}

/// Keeps `tx` equal to what the API has of the object `name` until `stop`; sweeps the
/// entries of idle objects once per idle period.
async fn follow<K>(
    api: kube::Api<K>,
    name: String,
    tx: watch::Sender<Known<K>>,
    stop: CancellationToken,
    (entries, idle): (std::sync::Weak<Entries<K>>, Duration),
) where
    K: kube::Resource + Clone + Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
    let mut listing = None;
    let mut sweep = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
    loop {
        let ev = tokio::select! {
            _ = stop.cancelled() => return,
            _ = sweep.tick() => {
                match entries.upgrade() {
                    Some(e) => sweep_idle(&e, idle),
                    None => return,
                }
                continue;
            }
            ev = stream.next() => ev,
        };
        match ev {
            None => return,
            Some(Err(e)) => {
                tracing::debug!(object = %name, error = %e, "watching failed; retrying");
                tx.send_if_modified(|k| {
                    let first = matches!(k, Known::Listing);
                    if first {
                        *k = Known::Failed;
                    }
                    first
                });
            }
            Some(Ok(watcher::Event::Init)) => listing = None,
            Some(Ok(watcher::Event::InitApply(o))) => listing = Some(Arc::new(o)),
            Some(Ok(watcher::Event::InitDone)) => {
                tx.send_replace(listing.take().map_or(Known::Absent, Known::Present));
            }
            Some(Ok(watcher::Event::Apply(o))) => {
                tx.send_replace(Known::Present(Arc::new(o)));
            }
            Some(Ok(watcher::Event::Delete(_))) => {
                tx.send_replace(Known::Absent);
            }
        }
    }
}

/// The ConfigMaps and Secrets of one node's pods.
pub struct ObjectCache {
    pub config_maps: Watched<ConfigMap>,
    pub secrets: Watched<Secret>,
}

impl ObjectCache {
    pub fn new(client: kube::Client) -> ObjectCache {
        ObjectCache {
            config_maps: Watched::new(client.clone()),
            secrets: Watched::new(client),
        }
    }
}

impl Objects for ObjectCache {
    fn config_map<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConfigMap>, EnvError>> {
        Box::pin(self.config_maps.get(ns, name))
    }

    fn secret<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Secret>, EnvError>> {
        Box::pin(self.secrets.get(ns, name))
    }
}

#[cfg(test)]
#[path = "object_cache_tests.rs"]
mod tests;
