//! Events as upstream components record them (core/v1 Event with `source` and
//! `reportingComponent`): the kubelet, the scheduler and every controller write through one
//! [`Recorder`].
//!
//! Invariants:
//! - Recording never blocks the caller: events go through a channel to one writer task.
//! - The writer correlates events as upstream's client-go `EventCorrelator` does: a repeat
//!   of the same (object, reason, message) bumps the count of the event already written;
//!   from the 10th distinct message of one (object, type, reason) within 10 minutes on,
//!   they are combined into one event ("(combined from similar events): …") whose count is
//!   bumped; and each object gets at most 25 writes of one type in a burst, then one per
//!   5 minutes (the spam filter). A ReplicaSet scaled to 3,000 writes 25 `SuccessfulCreate`
//!   events, not 3,000.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Resource;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

fn now_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub object: ObjectReference,
    pub type_: &'static str,
    /// Mostly a constant; a few reasons name a resource (`OutOf<resource>`).
    pub reason: std::borrow::Cow<'static, str>,
    pub message: String,
}

/// Cheap to clone; see the module docs.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Recorded>,
}

/// Who records: `component` (`kubelet`, `default-scheduler`, `replicaset-controller`) and,
/// for the kubelet, the node it runs on.
#[derive(Debug, Clone)]
pub struct Source {
    pub component: String,
    pub host: Option<String>,
}

/// The reference an event about `obj` points at.
pub fn object_ref<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    let meta = obj.meta();
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

impl Recorder {
    /// A recorder that writes through `client`, and the task that does it.
    pub fn new(
        client: kube::Client,
        source: Source,
    ) -> (Recorder, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Recorder { tx }, writer(client, source, rx))
    }

    /// A recorder of a control-plane component (no host), its writer already running.
    pub fn spawn_for(client: kube::Client, component: &str) -> Recorder {
        let (recorder, writer) = Recorder::new(
            client,
            Source {
                component: component.into(),
                host: None,
            },
        );
        tokio::spawn(writer);
        recorder
    }

    /// A recorder whose events are only sent to `tx` (tests).
    pub fn channel() -> (Recorder, mpsc::UnboundedReceiver<Recorded>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Recorder { tx }, rx)
    }

    pub fn event(
        &self,
        object: ObjectReference,
        type_: &'static str,
        reason: impl Into<std::borrow::Cow<'static, str>>,
        message: String,
    ) {
        let _ = self.tx.send(Recorded {
            object,
            type_,
            reason: reason.into(),
            message,
        });
    }
}

/// How many distinct messages of one (object, type, reason) are written as they are
/// before they are combined (upstream's `defaultAggregateMaxEvents`)...
const AGGREGATE_MAX_MESSAGES: usize = 10;
/// ...within this window (`defaultAggregateIntervalInSeconds`).
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
/// Writes per (object, type) allowed at once (`defaultSpamBurst`)...
const SPAM_BURST: f64 = 25.0;
/// ...and the rate they are allowed again at (`defaultSpamQPS`: one per 5 minutes).
const SPAM_PER_SEC: f64 = 1.0 / 300.0;
/// Entries each cache keeps before it starts afresh (upstream's LRU size).
const CACHE_ENTRIES: usize = 4096;
/// The prefix of a combined event's message.
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// (kind, namespace, name, uid, type): one object's events of one type, the spam filter's
/// unit.
type SpamKey = (String, String, String, String, &'static str);
/// (object, type, reason): the events that are combined once their messages vary.
type AggregateKey = (SpamKey, Cow<'static, str>);

/// What identifies an event already written, to bump its count.
#[derive(Clone, PartialEq, Eq, Hash)]
enum LogKey {
    /// (uid, fieldPath, reason, message).
    Event(String, String, Cow<'static, str>, String),
    Combined(AggregateKey),
}

/// What to write for one recorded event.
#[derive(Debug, PartialEq)]
enum Write {
    Create {
        message: String,
    },
    /// Bump the event `name` in `namespace` to `count`, with the latest message.
    Bump {
        namespace: String,
        name: String,
        count: i32,
        message: String,
    },
}

/// Upstream's event correlation (aggregation, dedup by count, spam filter) over one
/// writer's events; see the module docs. Time is passed in, so it is testable.
#[derive(Default)]
struct Correlator {
    /// Distinct messages seen per aggregate key, and when one was last seen.
    messages: HashMap<AggregateKey, (HashSet<String>, Instant)>,
    /// Events written: (namespace, name, count).
    written: HashMap<LogKey, (String, String, i32)>,
    /// Token buckets: (tokens, when last filled).
    buckets: HashMap<SpamKey, (f64, Instant)>,
}

impl Correlator {
    /// The write `r` needs (`None`: dropped by the spam filter), and the key that a created
    /// event is to be remembered under.
    fn correlate(&mut self, r: &Recorded, now: Instant) -> (Option<Write>, LogKey) {
        let o = &r.object;
        let spam_key: SpamKey = (
            o.kind.clone().unwrap_or_default(),
            o.namespace.clone().unwrap_or_default(),
            o.name.clone().unwrap_or_default(),
            o.uid.clone().unwrap_or_default(),
            r.type_,
        );
        let aggregate_key = (spam_key.clone(), r.reason.clone());
        fresh_if_full(&mut self.messages);
        let (seen, last) = self
            .messages
            .entry(aggregate_key.clone())
            .or_insert_with(|| (HashSet::new(), now));
        if now.saturating_duration_since(*last) > AGGREGATE_WINDOW {
            seen.clear();
        }
        seen.insert(r.message.clone());
        *last = now;
        let (message, key) = if seen.len() < AGGREGATE_MAX_MESSAGES {
            let key = LogKey::Event(
                o.uid.clone().unwrap_or_default(),
                o.field_path.clone().unwrap_or_default(),
                r.reason.clone(),
                r.message.clone(),
            );
            (r.message.clone(), key)
        } else {
            // Keeps the set one short of the limit, so every new message is combined.
            if let Some(any) = seen.iter().next().cloned() {
                seen.remove(&any);
            }
            (
                format!("{COMBINED_PREFIX}{}", r.message),
                LogKey::Combined(aggregate_key),
            )
        };
        let write = match self.written.get_mut(&key) {
            Some((namespace, name, count)) => {
                *count += 1;
                Write::Bump {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    count: *count,
                    message,
                }
            }
            None => Write::Create { message },
        };
        (self.allow(spam_key, now).then_some(write), key)
    }

    /// The spam filter's token bucket for `key`.
    fn allow(&mut self, key: SpamKey, now: Instant) -> bool {
        fresh_if_full(&mut self.buckets);
        let (tokens, filled) = self.buckets.entry(key).or_insert((SPAM_BURST, now));
        let elapsed = now.saturating_duration_since(*filled).as_secs_f64();
        *tokens = (*tokens + elapsed * SPAM_PER_SEC).min(SPAM_BURST);
        *filled = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Remembers an event written under `key`.
    fn created(&mut self, key: LogKey, namespace: String, name: String) {
        fresh_if_full(&mut self.written);
        self.written.insert(key, (namespace, name, 1));
    }
}

/// Bounds a cache: past [`CACHE_ENTRIES`] it starts afresh (upstream evicts the least
/// recently used entry; starting afresh forgets more, but only ever allows an extra burst).
fn fresh_if_full<K, V>(map: &mut HashMap<K, V>) {
    if map.len() >= CACHE_ENTRIES {
        map.clear();
    }
}

/// Sends a write whose answer the caller does not need: its status is checked (an error
/// comes back as the API's `Status`) but the object in the body is not decoded. A typed
/// call decodes the whole returned object, managed fields and all; for event writes and
/// the kubelet's status patches that was a tenth of the simulated kubelets' CPU.
pub async fn send_unread(
    client: &kube::Client,
    request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
) -> Result<(), kube::Error> {
    let request = request.map_err(kube::Error::BuildRequest)?;
    client.request_text(request).await.map(|_| ())
}

/// `/api/v1/namespaces/<ns>/events`.
fn events_of(namespace: &str) -> kube::core::Request {
    kube::core::Request::new(<Event as kube::Resource>::url_path(&(), Some(namespace)))
}

async fn writer(client: kube::Client, source: Source, mut rx: mpsc::UnboundedReceiver<Recorded>) {
    let mut correlator = Correlator::default();
    while let Some(r) = rx.recv().await {
        let (write, key) = correlator.correlate(&r, Instant::now());
        let message = match write {
            None => continue,
            Some(Write::Bump {
                namespace,
                name,
                count,
                message,
            }) => {
                let patch = serde_json::json!({
                    "count": count,
                    "lastTimestamp": now_time(),
                    "message": message,
                });
                let request = events_of(&namespace).patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                );
                match send_unread(&client, request).await {
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, "bumping an event failed; writing a new one");
                        message
                    }
                }
            }
            Some(Write::Create { message }) => message,
        };
        let ns = r
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let now = chrono::Utc::now();
        let name = format!(
            "{}.{:x}",
            r.object.name.clone().unwrap_or_default(),
            now.timestamp_nanos_opt().unwrap_or_default()
        );
        let ev = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            involved_object: r.object,
            reason: Some(r.reason.to_string()),
            message: Some(message),
            type_: Some(r.type_.into()),
            count: Some(1),
            first_timestamp: Some(now_time()),
            last_timestamp: Some(now_time()),
            event_time: None::<MicroTime>,
            source: Some(EventSource {
                component: Some(source.component.clone()),
                host: source.host.clone(),
            }),
            reporting_component: Some(source.component.clone()),
            reporting_instance: Some(
                source
                    .host
                    .clone()
                    .unwrap_or_else(|| source.component.clone()),
            ),
            ..Default::default()
        };
        let request = match serde_json::to_vec(&ev) {
            Ok(body) => events_of(&ns).create(&PostParams::default(), body),
            Err(e) => {
                tracing::debug!(error = %e, "encoding an event failed");
                continue;
            }
        };
        match send_unread(&client, request).await {
            Ok(()) => correlator.created(key, ns, name),
            Err(e) => tracing::debug!(error = %e, "writing an event failed"),
        }
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
