//! Events as upstream components record them (core/v1 Event with `source` and
//! `reportingComponent`): the kubelet, the scheduler and every controller write through one
//! [`Recorder`].
//!
//! Invariant: recording never blocks the caller: events go through a channel to one writer
//! task; a repeat of the same (object, reason, message) bumps the count of the event already
//! written instead of creating another, as upstream's correlator does.

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Resource;
use std::collections::HashMap;
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

/// (uid, fieldPath, reason, message): what makes two events the same.
type SeenKey = (String, String, std::borrow::Cow<'static, str>, String);

async fn writer(client: kube::Client, source: Source, mut rx: mpsc::UnboundedReceiver<Recorded>) {
    // (uid, fieldPath, reason, message) → (namespace, event name, count)
    let mut seen: HashMap<SeenKey, (String, String, i32)> = HashMap::new();
    while let Some(r) = rx.recv().await {
        let ns = r
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = (
            r.object.uid.clone().unwrap_or_default(),
            r.object.field_path.clone().unwrap_or_default(),
            r.reason.clone(),
            r.message.clone(),
        );
        let now = chrono::Utc::now();
        let api: Api<Event> = Api::namespaced(client.clone(), &ns);
        if let Some((ens, name, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = serde_json::json!({"count": *count, "lastTimestamp": now_time()});
            let api: Api<Event> = Api::namespaced(client.clone(), ens);
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => continue,
                Err(e) => tracing::debug!(error = %e, "bumping an event failed; writing a new one"),
            }
        }
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
            message: Some(r.message),
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
        match api.create(&PostParams::default(), &ev).await {
            Ok(_) => {
                if seen.len() > 4096 {
                    seen.clear();
                }
                seen.insert(key, (ns, name, 1));
            }
            Err(e) => tracing::debug!(error = %e, "writing an event failed"),
        }
    }
}
