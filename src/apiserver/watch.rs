//! Watch streams: newline-delimited JSON events over a chunked response, from a
//! resourceVersion or with initial ADDED events, WatchList (`sendInitialEvents`) with the
//! `k8s.io/initial-events-end` bookmark, periodic bookmarks, Table events and timeouts.
//!
//! Invariant: a watcher sees every change after its starting revision exactly once and in
//! order (the store guarantees it); selector transitions are reported the way upstream does
//! (an object leaving the selector is DELETED, one entering it is ADDED).

use super::handlers::read::{printer, served_value, Filter};
use super::request::{Output, Query, ResourceRequest};
use super::response::{self, Body};
use super::status::ApiError;
use super::ApiState;
use crate::api::registry::ResourceType;
use crate::api::selector::LabelSelector;
use crate::api::table;
use crate::store::{Event, EventKind, Route, Shard};
use bytes::Bytes;
use http::Response;
use serde_json::{json, Value};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How often a bookmark is sent when the client allows them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Upstream's default watch length is a random time between 30 and 60 minutes.
const DEFAULT_TIMEOUT_MIN_SECS: u64 = 1800;

pub async fn watch(
    state: &Arc<ApiState>,
    rr: &ResourceRequest,
    q: &Query,
    output: Output,
    client: Option<String>,
) -> Result<Response<Body>, ApiError> {
    let rt = rr.rt.clone();
    let filter = Filter::new(&rt, q, rr.name.as_deref())?;
    let send_initial_events = q.send_initial_events == Some(true);
    if send_initial_events {
        if !q.allow_watch_bookmarks {
            return Err(invalid_watch(
                "allowWatchBookmarks",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
        if q.resource_version_match.as_deref() != Some("NotOlderThan") {
            return Err(invalid_watch(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
    }
    let requested_rv = match q.resource_version.as_deref() {
        None | Some("0") | Some("") => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid resource version {s:?}: must be an unsigned integer"
            ))
        })?),
    };
    let slot = state.watch_slot(client)?;
    let prefix = rt.namespace_prefix(rr.namespace.as_deref());

    // Initial state: synthetic ADDED events when no revision was given (or WatchList).
    let mut initial = Vec::new();
    let start_rev = match (requested_rv, send_initial_events) {
        (Some(rv), false) => rv,
        _ => {
            let (records, rev) = state.store.list(&prefix).await?;
            for r in &records {
                let obj = served_value(&rt, r)?;
                if filter.matches(&obj) {
                    initial.push(obj);
                }
            }
            rev
        }
    };
    let watcher = match pods_by_node_shard(&rt, &filter).or_else(|| by_name_shard(&filter)) {
        Some(shard) => state.store.watch_shard(&prefix, shard, start_rev)?,
        None => state.store.watch(&prefix, start_rev)?,
    };
    let timeout = Duration::from_secs(q.timeout_seconds.unwrap_or_else(|| {
        DEFAULT_TIMEOUT_MIN_SECS + rand::random_range(0..DEFAULT_TIMEOUT_MIN_SECS)
    }));
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let stream = WatchStream {
        rt: rt.clone(),
        glance: Glance::of(&rt, &filter, output),
        filter,
        output,
        bookmarks: q.allow_watch_bookmarks,
        columns_sent: false,
        tx,
        api_version: rt.api_version(),
    };
    tokio::spawn(stream.run(
        watcher,
        initial,
        send_initial_events,
        start_rev,
        timeout,
        slot,
    ));
    let ct = match output {
        Output::Table => "application/json;as=Table;v=v1;g=meta.k8s.io",
        // Upstream names the stream framing of every non-JSON type.
        Output::Protobuf | Output::PartialMetadataProtobuf => {
            "application/vnd.kubernetes.protobuf;stream=watch"
        }
        Output::Json | Output::PartialMetadata => "application/json",
    };
    Ok(response::stream(ct, rx))
}

/// Pods split by `spec.nodeName` (unset is ""): every kubelet watches
/// `spec.nodeName=<itself>`, and without the split each pod change woke all of them (a
/// hundred nodes: a hundred wake-ups and filter runs per change, the largest share of the
/// server's CPU in `bench.sh scale`).
static PODS_BY_NODE: Route = Route {
    name: "pods-by-node",
    shards: pod_node_shards,
};

fn pod_node_shards(ev: &Event) -> [Option<Cow<'_, str>>; 2] {
    [
        ev.head().map(|h| Cow::Borrowed(h.node_name.as_str())),
        ev.prev_head().map(|h| Cow::Borrowed(h.node_name.as_str())),
    ]
}

/// The object's name: the last segment of its key.
fn key_name(key: &str) -> Option<&str> {
    key.rsplit('/').next()
}

/// The one field term a glance decides.
enum Term {
    Everything,
    NodeName(String),
    Name(String),
}

/// A watch decided without the JSON tree, from a [`Head`] of the stored bytes and, when it
/// has a label selector, the event's labels ([`Event::labels`]); one served as
/// PartialObjectMetadata is sent the event's stored metadata text ([`Event::metadata_text`])
/// in JSON, or its metadata tree ([`Event::metadata_json`]) in protobuf. All of these are
/// read once for every watcher of the event. A glance takes a filter of labels and at most
/// one `metadata.name` (or, for pods, `spec.nodeName`) term. Nearly every watch is one of
/// these: informers watch everything (the garbage collector's as metadata), kubelets their
/// node's pods, `kubectl get -w NAME` one object, controllers and tools by label.
struct Glance {
    term: Term,
    labels: Option<LabelSelector>,
    /// The event's object is the object's metadata (PartialObjectMetadata), in this form.
    partial: Option<PartialForm>,
}

#[derive(Clone, Copy)]
enum PartialForm {
    Json,
    Protobuf,
}

/// What a glance decided to send: the event type, and for a partial watch the metadata.
struct Decided<'e> {
    kind: &'static str,
    metadata: Option<PartialMetadata<'e>>,
}

enum PartialMetadata<'e> {
    /// The stored `metadata` object's JSON text.
    Text(&'e [u8]),
    Tree(&'e Value),
}

impl Glance {
    fn of(rt: &ResourceType, filter: &Filter, output: Output) -> Option<Glance> {
        let partial = match output {
            Output::Json => None,
            Output::PartialMetadata => Some(PartialForm::Json),
            Output::PartialMetadataProtobuf => Some(PartialForm::Protobuf),
            Output::Protobuf | Output::Table => return None,
        };
        let term = match filter.at_most_one_field_equals()? {
            None => Term::Everything,
            Some(("metadata.name", name)) => Term::Name(name.to_owned()),
            Some(("spec.nodeName", node)) if is_core_pods(rt) => Term::NodeName(node.to_owned()),
            Some(_) => return None,
        };
        Some(Glance {
            term,
            labels: filter.labels().cloned(),
            partial,
        })
    }

    /// The event to send for `ev` (`Some(None)`: none), or `None` when only a full parse can
    /// tell (stored in another version than `api_version`, or unreadable).
    fn decide<'e>(&self, ev: &'e Event, api_version: &str) -> Option<Option<Decided<'e>>> {
        // The stored object's apiVersion and the field term, read once per event for all
        // watchers (`Event::head`): serde skips every other field without allocating (a
        // full parse of each pod change, twice with its previous value, was ~6% of the
        // server's CPU under `bench.sh scale`; reading the head per watcher ~3%).
        let head = ev.head()?;
        let now_term = match &self.term {
            Term::Everything => true,
            Term::Name(name) => key_name(&ev.key) == Some(name.as_str()),
            Term::NodeName(node) => head.node_name == *node,
        };
        if head.api_version.as_deref() != Some(api_version) {
            return None;
        }
        // Labels alone, not the whole metadata: parsing each pod change's metadata (its
        // managedFields above all) into a tree, with its previous value's, was ~7% of the
        // server's CPU under `bench.sh scale` with one label-selected pod watch open.
        let labels = match self.labels.is_some() {
            true => Some(ev.labels()?),
            false => None,
        };
        let now_matches = now_term && self.labelled(labels);
        let kind = match ev.kind {
            EventKind::Delete => now_matches.then_some("DELETED"),
            EventKind::Put => {
                let prev_matches = match &ev.prev_value {
                    None => None,
                    // Only the node and the labels can differ from the previous value
                    // (the key, so the name, is the same).
                    Some(_) if matches!(self.term, Term::NodeName(_)) || self.labels.is_some() => {
                        let term = match &self.term {
                            Term::NodeName(node) => ev.prev_head()?.node_name == *node,
                            Term::Everything | Term::Name(_) => now_term,
                        };
                        let labels = match self.labels.is_some() {
                            true => Some(ev.prev_labels()?),
                            false => None,
                        };
                        Some(term && self.labelled(labels))
                    }
                    Some(_) => Some(now_matches),
                };
                transition(prev_matches, now_matches)
            }
        };
        let Some(kind) = kind else {
            return Some(None);
        };
        let metadata = match self.partial {
            None => None,
            Some(PartialForm::Json) => Some(PartialMetadata::Text(ev.metadata_text()?)),
            Some(PartialForm::Protobuf) => Some(PartialMetadata::Tree(ev.metadata_json()?)),
        };
        Some(Some(Decided { kind, metadata }))
    }

    /// Whether `labels` satisfy the label selector.
    fn labelled(&self, labels: Option<&crate::store::Labels>) -> bool {
        self.labels.as_ref().is_none_or(|s| s.matches_map(labels))
    }
}

/// The event a change shows a filtered watch: whether the object matched before (`None`:
/// it was created) and whether it matches now.
fn transition(prev_matches: Option<bool>, now_matches: bool) -> Option<&'static str> {
    match (prev_matches, now_matches) {
        (None, true) | (Some(false), true) => Some("ADDED"),
        (Some(true), true) => Some("MODIFIED"),
        (Some(true), false) => Some("DELETED"),
        _ => None,
    }
}

fn is_core_pods(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "pods" && rt.custom.is_none()
}

/// Objects split by name (the last segment of the key): a watch of one object by
/// `metadata.name` (a kubelet's own Node, `kubectl get -w` of one object) is woken only by
/// that object's changes, without parsing anything.
static BY_NAME: Route = Route {
    name: "by-name",
    shards: name_shards,
};

fn name_shards(ev: &Event) -> [Option<Cow<'_, str>>; 2] {
    [key_name(&ev.key).map(Cow::Borrowed), None]
}

/// The shard of a watch whose field selector requires one `metadata.name`.
fn by_name_shard(filter: &Filter) -> Option<Shard> {
    Some(Shard {
        route: &BY_NAME,
        value: filter.field_equals("metadata.name")?.to_owned(),
    })
}

/// The shard of a pod watch whose field selector requires one `spec.nodeName`.
fn pods_by_node_shard(rt: &ResourceType, filter: &Filter) -> Option<Shard> {
    if !is_core_pods(rt) {
        return None;
    }
    Some(Shard {
        route: &PODS_BY_NODE,
        value: filter.field_equals("spec.nodeName")?.to_owned(),
    })
}

fn invalid_watch(field: &str, msg: &str) -> ApiError {
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!("ListOptions.meta.k8s.io \"\" is invalid: {field}: Forbidden: {msg}"),
    );
    e.details = Some(
        json!({"group": "meta.k8s.io", "kind": "ListOptions", "causes": [{"reason": "FieldValueForbidden", "message": format!("Forbidden: {msg}"), "field": field}]}),
    );
    e
}

struct WatchStream {
    rt: Arc<ResourceType>,
    filter: Filter,
    /// Set when `filter` can be decided without parsing each event.
    glance: Option<Glance>,
    output: Output,
    bookmarks: bool,
    columns_sent: bool,
    tx: mpsc::Sender<Bytes>,
    /// `rt.api_version()`, the version every event is served in.
    api_version: String,
}

impl WatchStream {
    async fn run(
        mut self,
        mut watcher: crate::store::Watcher,
        initial: Vec<Value>,
        initial_events_end: bool,
        start_rev: u64,
        timeout: Duration,
        slot: super::WatchSlot,
    ) {
        for obj in initial {
            if self.send("ADDED", &obj).await.is_err() {
                return;
            }
        }
        if initial_events_end {
            let b = self.bookmark(start_rev, true);
            if self.tx.send(b).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + BOOKMARK_INTERVAL,
            BOOKMARK_INTERVAL,
        );
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = self.tx.closed() => return,
                // Server shutdown: the response ends cleanly and clients re-watch elsewhere.
                _ = slot.state.closing.cancelled() => return,
                _ = ticker.tick(), if self.bookmarks => {
                    let b = self.bookmark(watcher.position(), false);
                    if self.tx.send(b).await.is_err() { return; }
                }
                ev = watcher.next() => match ev {
                    None => return,
                    Some(Err(e)) => {
                        let err: ApiError = e.into();
                        let line = event_line(self.output, "ERROR", &err.to_status());
                        let _ = self.tx.send(line).await;
                        return;
                    }
                    Some(Ok(ev)) => {
                        if self.on_event(ev).await.is_err() { return; }
                    }
                }
            }
        }
    }

    async fn on_event(&mut self, ev: Event) -> Result<(), ()> {
        if let Some(decided) = self
            .glance
            .as_ref()
            .and_then(|g| g.decide(&ev, &self.api_version))
        {
            let Some(Decided { kind, metadata }) = decided else {
                return Ok(());
            };
            let line = match metadata {
                Some(PartialMetadata::Text(m)) => partial_metadata_line(kind, m),
                Some(PartialMetadata::Tree(m)) => Some(event_line(
                    self.output,
                    kind,
                    &table::partial_metadata_of(m),
                )),
                None => raw_event_line(kind, &ev.value),
            };
            if let Some(line) = line {
                return self.tx.send(line).await.map_err(|_| ());
            }
        }
        // The parse is shared with every other watcher of this event (see `ParsedJson`).
        let Some(obj) = ev.value_json() else {
            return Ok(());
        };
        let obj = self.served(obj);
        let now_matches = self.filter.matches(&obj);
        let kind = match ev.kind {
            EventKind::Delete => now_matches.then_some("DELETED"),
            EventKind::Put => {
                let prev_matches = ev.prev_json().map(|p| self.filter.matches(&self.served(p)));
                transition(prev_matches, now_matches)
            }
        };
        let Some(kind) = kind else {
            return Ok(());
        };
        // Every event shows the stored object (the new value, or the tombstone), so a JSON
        // watcher of the stored version is sent the stored bytes as they are: serializing
        // each event again for each watcher was the largest cost of a watch.
        if self.output == Output::Json && matches!(obj, Cow::Borrowed(_)) {
            if let Some(line) = raw_event_line(kind, &ev.value) {
                return self.tx.send(line).await.map_err(|_| ());
            }
        }
        self.send(kind, &obj).await
    }

    /// `stored` in the watched version: borrowed when it is stored in that version already
    /// (the common case, and the reason filtering costs no copy).
    fn served<'a>(&self, stored: &'a Value) -> Cow<'a, Value> {
        if stored.get("apiVersion").and_then(Value::as_str) == Some(self.api_version.as_str()) {
            return Cow::Borrowed(stored);
        }
        let mut v = stored.clone();
        crate::api::conversion::to_version(&mut v, &self.api_version);
        Cow::Owned(v)
    }

    async fn send(&mut self, kind: &str, obj: &Value) -> Result<(), ()> {
        let transformed;
        let payload = match self.output {
            Output::Json | Output::Protobuf => obj,
            Output::PartialMetadata | Output::PartialMetadataProtobuf => {
                transformed = table::partial_object_metadata(obj);
                &transformed
            }
            Output::Table => {
                let rv = obj["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let mut t = table::table(
                    &printer(&self.rt),
                    [obj],
                    &rv,
                    None,
                    None,
                    chrono::Utc::now(),
                );
                if self.columns_sent {
                    t["columnDefinitions"] = json!([]);
                }
                self.columns_sent = true;
                transformed = t;
                &transformed
            }
        };
        self.tx
            .send(event_line(self.output, kind, payload))
            .await
            .map_err(|_| ())
    }

    fn bookmark(&self, rev: u64, initial_events_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_events_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        // Bookmarks are transformed like every other event's object.
        let (kind, api_version) = match self.output {
            Output::PartialMetadata | Output::PartialMetadataProtobuf => (
                "PartialObjectMetadata".to_owned(),
                "meta.k8s.io/v1".to_owned(),
            ),
            _ => (self.rt.kind.clone(), self.rt.api_version()),
        };
        event_line(
            self.output,
            "BOOKMARK",
            &json!({"kind": kind, "apiVersion": api_version, "metadata": meta}),
        )
    }
}

/// A JSON watch event line around an object's stored JSON bytes; `None` if they would not
/// make one line (stored objects are compact JSON, so only a corrupt record is refused).
fn raw_event_line(kind: &str, stored: &[u8]) -> Option<Bytes> {
    event_line_around(kind, b"", stored, b"")
}

/// A JSON watch event line of a PartialObjectMetadata around an object's stored `metadata`
/// text: the bytes serializing its tree would give (stored JSON is compact, keys sorted);
/// `None` if they would not make one line.
fn partial_metadata_line(kind: &str, metadata: &[u8]) -> Option<Bytes> {
    const HEAD: &[u8] =
        br#"{"apiVersion":"meta.k8s.io/v1","kind":"PartialObjectMetadata","metadata":"#;
    event_line_around(kind, HEAD, metadata, b"}")
}

/// `{"type":KIND,"object":HEAD JSON TAIL}` and a newline, where `json` is a stored JSON
/// object; `None` if it is not one line of an object.
fn event_line_around(kind: &str, head: &[u8], json: &[u8], tail: &[u8]) -> Option<Bytes> {
    if json.first() != Some(&b'{') || json.contains(&b'\n') {
        return None;
    }
    let mut line = Vec::with_capacity(json.len() + kind.len() + head.len() + tail.len() + 24);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(head);
    line.extend_from_slice(json);
    line.extend_from_slice(tail);
    line.extend_from_slice(b"}\n");
    Some(Bytes::from(line))
}

/// One event: a JSON line, or a length-prefixed protobuf `WatchEvent` frame. Objects
/// without a protobuf form never reach a protobuf stream (negotiation refuses them), so an
/// encoding failure is a server bug, reported as an ERROR event the client can decode.
fn event_line(output: Output, kind: &str, obj: &Value) -> Bytes {
    if matches!(output, Output::Protobuf | Output::PartialMetadataProtobuf) {
        let mut frame = Vec::with_capacity(512);
        if let Err(e) = crate::api::protobuf::encode_watch_frame(kind, obj, &mut frame) {
            frame.clear();
            let status = ApiError::internal(e.to_string()).to_status();
            if let Err(e) = crate::api::protobuf::encode_watch_frame("ERROR", &status, &mut frame) {
                tracing::error!("watch ERROR event not encodable: {e}");
                frame.clear();
            }
        }
        return Bytes::from(frame);
    }
    // Serialized from the borrowed object: no copy of it into a wrapper Value.
    #[derive(serde::Serialize)]
    struct Line<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: &'a Value,
    }
    let mut line = serde_json::to_vec(&Line { kind, object: obj }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

#[cfg(test)]
#[path = "watch_tests.rs"]
mod tests;
