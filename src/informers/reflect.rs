//! One reflector: a kube-runtime watcher feeding a [`Writer`], and the fan-out of its changes
//! to subscribers.

use super::{Informer, InformerError};
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{store::Writer, Lookup, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What a subscriber is told.
#[derive(Debug)]
pub enum Change<K> {
    /// The object was created or changed (or was there when the subscriber joined).
    Applied(Arc<K>),
    /// The object is gone; this is its last known state.
    Deleted(Arc<K>),
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied(o) => Change::Applied(o.clone()),
            Change::Deleted(o) => Change::Deleted(o.clone()),
        }
    }
}

impl<K> Change<K> {
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied(o) | Change::Deleted(o) => o,
        }
    }
}

/// The subscribers of one reflector.
pub(super) struct Hub<K: Resource> {
    /// Held while the store is written and the change is sent, and while a subscriber joins.
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Change<K>>>>,
    pub(super) stop: CancellationToken,
}

impl<K> Hub<K>
where
    K: Resource + Clone + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash,
{
    pub(super) fn subscribe(
        &self,
        reader: &Store<K>,
    ) -> impl Stream<Item = Change<K>> + Send + Unpin + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut subs = self.subscribers.lock();
        for obj in reader.state() {
            // Cannot fail: the receiver is returned below.
            let _ = tx.send(Change::Applied(obj));
        }
        subs.push(tx);
        tokio_stream_from(rx)
    }

    fn send(subs: &mut Vec<mpsc::UnboundedSender<Change<K>>>, change: Change<K>) {
        // A subscriber that went away is dropped here rather than on its own.
        subs.retain(|tx| tx.send(change.clone()).is_ok());
    }
}

fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send + Unpin + 'static {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|x| (x, rx))
    }))
}

/// Builds the informer and the future that runs its reflector until `stop`.
pub(super) fn start<K>(
    name: String,
    api: Api<K>,
    dyntype: K::DynamicType,
    trim: fn(&mut K),
    stop: CancellationToken,
) -> (
    Informer<K>,
    impl Future<Output = Result<(), InformerError>> + Send + 'static,
)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Send + Sync,
{
    // WatchList first (initial events and a bookmark), relist after 410; errors are retried
    // with backoff inside the stream.
    let config = watcher::Config::default().streaming_lists();
    let stream = watcher(api, config).default_backoff().modify(trim);
    start_with_stream(name, stream, dyntype, stop)
}

/// Like [`start`], over any stream of watcher events (tests feed relists by hand).
pub(super) fn start_with_stream<K, S>(
    name: String,
    stream: S,
    dyntype: K::DynamicType,
    stop: CancellationToken,
) -> (
    Informer<K>,
    impl Future<Output = Result<(), InformerError>> + Send + 'static,
)
where
    K: Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash + Send + Sync,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let writer = Writer::new(dyntype.clone());
    let reader = writer.as_reader();
    let hub = Arc::new(Hub {
        subscribers: Mutex::new(Vec::new()),
        stop: stop.clone(),
    });
    let informer = Informer {
        name: name.clone(),
        reader: reader.clone(),
        hub: hub.clone(),
    };
    (
        informer,
        run(name, stream, writer, reader, dyntype, hub, stop),
    )
}

async fn run<K, S>(
    name: String,
    stream: S,
    mut writer: Writer<K>,
    reader: Store<K>,
    dyntype: K::DynamicType,
    hub: Arc<Hub<K>>,
    stop: CancellationToken,
) -> Result<(), InformerError>
where
    K: Resource + Clone + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + Hash,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut stream = std::pin::pin!(stream);
    // State before the current (re)list, to tell what it removed or changed.
    let mut before_relist: Option<HashMap<ObjectRef<K>, Arc<K>>> = None;
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            e = stream.next() => e,
        };
        let event = match event {
            Some(Ok(e)) => e,
            Some(Err(e)) => {
                tracing::warn!(informer = %name, error = %e, "watch failed; retrying");
                continue;
            }
            None => return Err(InformerError::StreamEnded(name)),
        };
        let mut subs = hub.subscribers.lock();
        match &event {
            watcher::Event::Apply(obj) => {
                writer.apply_watcher_event(&event);
                let key = obj.to_object_ref(dyntype.clone());
                if let Some(stored) = reader.get(&key) {
                    Hub::send(&mut subs, Change::Applied(stored));
                }
            }
            watcher::Event::Delete(obj) => {
                writer.apply_watcher_event(&event);
                Hub::send(&mut subs, Change::Deleted(Arc::new(obj.clone())));
            }
            watcher::Event::Init => {
                writer.apply_watcher_event(&event);
                before_relist = Some(
                    reader
                        .state()
                        .into_iter()
                        .map(|o| (o.to_object_ref(dyntype.clone()), o))
                        .collect(),
                );
            }
            watcher::Event::InitApply(_) => writer.apply_watcher_event(&event),
            watcher::Event::InitDone => {
                writer.apply_watcher_event(&event);
                let mut old = before_relist.take().unwrap_or_default();
                for obj in reader.state() {
                    let key = obj.to_object_ref(dyntype.clone());
                    let unchanged = old.remove(&key).is_some_and(|prev| {
                        prev.meta().resource_version == obj.meta().resource_version
                            && prev.meta().uid == obj.meta().uid
                    });
                    if !unchanged {
                        Hub::send(&mut subs, Change::Applied(obj));
                    }
                }
                for (_, gone) in old {
                    Hub::send(&mut subs, Change::Deleted(gone));
                }
            }
        }
    }
}
