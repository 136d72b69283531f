//! Events expire: each is deleted `--event-ttl` (default 1 h) after it was last written, as
//! kube-apiserver stores events under an etcd lease of that length, renewed by every write.
//! Without it a long-lived cluster keeps every event it ever recorded, and `kubectl get
//! events` lists them all.
//!
//! One task follows the store's writes of Events (both APIs' Events are stored together)
//! and keeps, in write order, when each key expires and at which revision it was written.
//! A key rewritten since has a later entry, so an expiring entry whose revision is no
//! longer the key's current one deletes nothing.
//! Events already stored when the task starts (a restart, a watch that fell behind
//! compaction) are dated by their own newest timestamp, the nearest thing to their last
//! write the object holds.
//!
//! The delete is a storage-level removal, as an expired lease's is: finalizers and graceful
//! deletion do not apply, and watchers see it as an ordinary DELETED event.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::objects::{self, parse_record_fields, Decision};
use super::ApiState;
use crate::api::registry::ResourceType;
use crate::api::table::duration::parse_time;
use crate::store::{EventKind, StoreError};

/// Runs until `stop`: expires every stored event after `ttl`.
pub async fn run(
    state: Arc<ApiState>,
    ttl: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    // events.k8s.io Events are stored with the core ones (ResourceType::storage_group).
    let rt = state
        .registry
        .lookup("", "v1", "events")
        .ok_or_else(|| anyhow::anyhow!("the events resource is not registered"))?;
    remove_unserved(&state).await?;
    expire_type(&state, &rt, ttl, &stop).await
}

/// Where events.k8s.io Events were stored before they were stored with the core ones.
const UNSERVED_PREFIX: &str = "events.k8s.io/events/";

/// Removes the events.k8s.io Events a data directory from before still holds apart: nothing
/// serves or expires them any more.
async fn remove_unserved(state: &ApiState) -> Result<(), StoreError> {
    let (records, _) = state.store.list(UNSERVED_PREFIX).await?;
    for r in records {
        state.store.delete(&r.key, r.value).await?;
    }
    Ok(())
}

/// One key's pending expiry.
struct Entry {
    at: Instant,
    key: String,
    revision: u64,
}

/// Follows the writes under `rt`'s storage prefix and deletes each object `ttl` after its
/// last write.
async fn expire_type(
    state: &ApiState,
    rt: &Arc<ResourceType>,
    ttl: Duration,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let prefix = rt.storage_prefix();
    'relist: loop {
        let (mut queue, revision) = match stored(state, &prefix, ttl).await {
            Ok(r) => r,
            Err(StoreError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut watcher = match state.store.watch(&prefix, revision) {
            Ok(w) => w,
            Err(StoreError::Closed) => return Ok(()),
            Err(StoreError::Compacted { .. }) => continue 'relist,
            Err(e) => return Err(e.into()),
        };
        loop {
            let next_expiry = queue.front().map(|e| e.at);
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                event = watcher.next() => match event {
                    Some(Ok(ev)) if ev.kind == EventKind::Put => queue.push_back(Entry {
                        at: Instant::now() + ttl,
                        key: ev.key,
                        revision: ev.revision,
                    }),
                    Some(Ok(_)) => {}
                    // Fell behind compaction: start again from what is stored now.
                    Some(Err(StoreError::Compacted { .. })) => continue 'relist,
                    Some(Err(StoreError::Closed)) | None => return Ok(()),
                    Some(Err(e)) => return Err(e.into()),
                },
                _ = sleep_until(next_expiry) => {
                    while let Some(entry) = queue.pop_front_if(|e| e.at <= Instant::now()) {
                        expire(state, rt, &entry).await;
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The objects stored under `prefix`, each due `ttl` after its newest timestamp, in due
/// order, and the revision they were read at.
async fn stored(
    state: &ApiState,
    prefix: &str,
    ttl: Duration,
) -> Result<(VecDeque<Entry>, u64), StoreError> {
    let (records, revision) = state.store.list(prefix).await?;
    let now = Instant::now();
    let wall_now = Utc::now();
    let mut entries: Vec<Entry> = records
        .iter()
        .map(|r| {
            let written = parse_record_fields(r, DATING_FIELDS)
                .ok()
                .and_then(|obj| last_written(&obj));
            let age = written
                .and_then(|t| (wall_now - t).to_std().ok())
                .unwrap_or_default();
            Entry {
                at: now + ttl.saturating_sub(age),
                key: r.key.clone(),
                revision: r.mod_revision,
            }
        })
        .collect();
    entries.sort_by_key(|e| e.at);
    Ok((entries.into(), revision))
}

/// The top-level fields [`last_written`] reads.
const DATING_FIELDS: &[&str] = &[
    "metadata",
    "lastTimestamp",
    "eventTime",
    "series",
    "deprecatedLastTimestamp",
];

/// The newest of an Event's own timestamps (either version's fields), and of its managed
/// fields' write times.
fn last_written(event: &Value) -> Option<DateTime<Utc>> {
    let meta = &event["metadata"];
    let managed = meta["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| &m["time"]);
    [
        &meta["creationTimestamp"],
        &event["lastTimestamp"],
        &event["eventTime"],
        &event["series"]["lastObservedTime"],
        &event["deprecatedLastTimestamp"],
    ]
    .into_iter()
    .chain(managed)
    .filter_map(|v| v.as_str().and_then(parse_time))
    .max()
}

/// Deletes the entry's key if it is still at the entry's revision (a later write has its
/// own entry further back in the queue).
async fn expire(state: &ApiState, rt: &Arc<ResourceType>, entry: &Entry) {
    let Some((ns, name)) = entry
        .key
        .strip_prefix(&rt.storage_prefix())
        .and_then(|rest| rest.split_once('/'))
    else {
        return;
    };
    let revision = entry.revision.to_string();
    let result = objects::write(state, rt, Some(ns), name, false, |current| {
        Ok(match current {
            Some(obj) if obj["metadata"]["resourceVersion"] == revision.as_str() => {
                Decision::Delete(obj)
            }
            Some(obj) => Decision::Keep(obj),
            None => Decision::Keep(Value::Null),
        })
    })
    .await;
    if let Err(error) = result {
        tracing::warn!(key = %entry.key, %error, "expiring an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_is_dated_by_its_newest_timestamp() {
        let event = json!({
            "metadata": {
                "creationTimestamp": "2026-01-01T10:00:00Z",
                "managedFields": [{"time": "2026-01-01T10:05:00Z"}],
            },
            "lastTimestamp": "2026-01-01T10:20:00Z",
            "eventTime": null,
            "series": {"lastObservedTime": "2026-01-01T10:10:00.000000Z"},
        });
        assert_eq!(
            last_written(&event).map(|t| t.to_rfc3339()),
            Some("2026-01-01T10:20:00+00:00".to_owned())
        );
        let new_api = json!({
            "metadata": {"creationTimestamp": "2026-01-01T10:00:00Z"},
            "eventTime": "2026-01-01T09:00:00.000000Z",
            "deprecatedLastTimestamp": "2026-01-01T11:00:00Z",
        });
        assert_eq!(
            last_written(&new_api).map(|t| t.to_rfc3339()),
            Some("2026-01-01T11:00:00+00:00".to_owned())
        );
        assert_eq!(last_written(&json!({"metadata": {}})), None);
    }

    #[tokio::test]
    async fn events_k8s_io_events_stored_apart_by_an_older_version_are_removed() {
        let srv = crate::apiserver::testing::TestServer::start().await;
        let store = &srv.state.store;
        let old = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "default"}});
        store
            .put("events.k8s.io/events/default/e", old.to_string().into())
            .await
            .unwrap();
        store
            .put("core/events/default/kept", old.to_string().into())
            .await
            .unwrap();
        remove_unserved(&srv.state).await.unwrap();
        assert!(store.list(UNSERVED_PREFIX).await.unwrap().0.is_empty());
        assert!(store
            .get("core/events/default/kept")
            .await
            .unwrap()
            .is_some());
    }
}
