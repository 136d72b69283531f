//! Shared informers: one reflector per resource type for every in-process consumer.
//!
//! A controller, the scheduler or the kubelet asks [`Informers`] for a resource type and gets
//! an [`Informer`]: a kube-runtime [`Store`] to read from (cheap, shared `Arc`s) and
//! [`Informer::subscribe`] for a stream of [`Change`]s. However many consumers ask, the type
//! is listed and watched once, through the in-process `kube::Client`, starting with a
//! WatchList (initial events + bookmark) and relisting after 410 Gone (kube-runtime's
//! watcher does both).
//!
//! Invariants:
//! - A subscriber first receives the current contents as [`Change::Applied`], then every
//!   change after them, with no gap: the store is updated and the subscribers are told under
//!   one lock, and a new subscriber reads the store under the same lock.
//! - A relist (after a watch error or 410) is turned into the changes it implies: objects
//!   missing from the new list are reported [`Change::Deleted`], changed ones `Applied`.
//! - A reflector that stops for good (its watch stream ended) fails [`Informers::run`], so
//!   the process stops instead of serving stale caches.
//!
//! Only the API client is used here: no module outside `apiserver` touches the store.

mod reflect;

use futures::Stream;
use kube::api::{ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::Store;
use kube::{Api, Client, Resource};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use std::any::Any;
use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use reflect::Change;

/// Why an informer stopped.
#[derive(Debug, thiserror::Error)]
pub enum InformerError {
    #[error("the watch of {0} ended")]
    StreamEnded(String),
    #[error("the informers were shut down before {0} synced")]
    ShutDown(String),
}

/// The set of shared informers of one process.
#[derive(Clone)]
pub struct Informers {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    shutdown: CancellationToken,
    by_type: Mutex<HashMap<String, Arc<dyn Any + Send + Sync>>>,
    failures: mpsc::UnboundedSender<InformerError>,
    failures_rx: Mutex<Option<mpsc::UnboundedReceiver<InformerError>>>,
}

/// One resource type's shared cache and change feed.
pub struct Informer<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    name: String,
    reader: Store<K>,
    hub: Arc<reflect::Hub<K>>,
}

impl<K: Resource + 'static> Clone for Informer<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn clone(&self) -> Self {
        Informer {
            name: self.name.clone(),
            reader: self.reader.clone(),
            hub: self.hub.clone(),
        }
    }
}

impl Informers {
    /// Informers over `client`; their reflectors stop when `shutdown` is cancelled.
    pub fn new(client: Client, shutdown: CancellationToken) -> Informers {
        let (tx, rx) = mpsc::unbounded_channel();
        Informers {
            inner: Arc::new(Inner {
                client,
                shutdown,
                by_type: Mutex::new(HashMap::new()),
                failures: tx,
                failures_rx: Mutex::new(Some(rx)),
            }),
        }
    }

    /// Waits for shutdown; fails when any reflector stops for good. Call once.
    pub async fn run(self) -> Result<(), InformerError> {
        let rx = self.inner.failures_rx.lock().take();
        let Some(mut rx) = rx else {
            return Ok(());
        };
        tokio::select! {
            _ = self.inner.shutdown.cancelled() => Ok(()),
            failure = rx.recv() => match failure {
                Some(e) => Err(e),
                None => Ok(()),
            },
        }
    }

    /// The shared informer of a built-in type, e.g. `informers.typed::<Namespace>()`.
    pub fn typed<K>(&self) -> Informer<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let key = format!("typed:{}/{}", K::api_version(&()), K::plural(&()));
        self.get_or_start(key, (), drop_managed_fields::<K>, || {
            Api::<K>::all(self.inner.client.clone())
        })
    }

    /// The shared metadata-only informer of any resource type (built-in or custom), as the
    /// garbage collector needs: identity, labels, owners, finalizers and deletion state.
    /// Annotations and managed fields are not kept (they are most of an object's metadata,
    /// e.g. kubectl's last-applied configuration).
    pub fn metadata(&self, ar: &ApiResource) -> Informer<PartialObjectMeta<DynamicObject>> {
        let key = format!("meta:{}/{}", ar.api_version, ar.plural);
        self.get_or_start(key, ar.clone(), trim_metadata, || {
            Api::<PartialObjectMeta<DynamicObject>>::all_with(self.inner.client.clone(), ar)
        })
    }

    /// Stops and forgets the metadata informer of a type that is no longer served (a
    /// deleted custom resource definition).
    pub fn forget_metadata(&self, ar: &ApiResource) {
        let key = format!("meta:{}/{}", ar.api_version, ar.plural);
        if let Some(any) = self.inner.by_type.lock().remove(&key) {
            if let Ok(inf) = any.downcast::<Informer<PartialObjectMeta<DynamicObject>>>() {
                inf.hub.stop.cancel();
            }
        }
    }

    fn get_or_start<K>(
        &self,
        key: String,
        dyntype: K::DynamicType,
        trim: fn(&mut K),
        api: impl FnOnce() -> Api<K>,
    ) -> Informer<K>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
        K::DynamicType: Clone + Eq + Hash + Send + Sync,
    {
        let mut map = self.inner.by_type.lock();
        if let Some(any) = map.get(&key) {
            if let Ok(inf) = any.clone().downcast::<Informer<K>>() {
                return (*inf).clone();
            }
        }
        let stop = self.inner.shutdown.child_token();
        let (informer, task) = reflect::start(key.clone(), api(), dyntype, trim, stop);
        let failures = self.inner.failures.clone();
        let name = key.clone();
        tokio::spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(informer = %name, error = %e, "informer stopped");
                // Only fails once `run` has returned, i.e. the process is stopping anyway.
                let _ = failures.send(e);
            }
        });
        map.insert(key, Arc::new(informer.clone()));
        informer
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash,
{
    /// The cache: cheap reads of the last observed state.
    pub fn store(&self) -> Store<K> {
        self.reader.clone()
    }

    /// Waits until the first list has been received.
    pub async fn synced(&self) -> Result<(), InformerError> {
        // kube-runtime's readiness signal keeps the waker of its last poller only, so of two
        // consumers waiting at once the first would never wake: poll again now and then.
        loop {
            let wait = self.reader.wait_until_ready();
            match tokio::time::timeout(std::time::Duration::from_millis(50), wait).await {
                Ok(r) => return r.map_err(|_| InformerError::ShutDown(self.name.clone())),
                Err(_) => continue,
            }
        }
    }

    /// The current contents, then every change.
    pub fn subscribe(&self) -> impl Stream<Item = Change<K>> + Send + Unpin + 'static {
        self.hub.subscribe(&self.reader)
    }
}

/// Cached objects never carry managed fields: no in-process consumer reads them, and they are
/// a large share of every object's size.
fn drop_managed_fields<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

fn trim_metadata(obj: &mut PartialObjectMeta<DynamicObject>) {
    obj.metadata.managed_fields = None;
    obj.metadata.annotations = None;
}

#[cfg(test)]
mod tests;
