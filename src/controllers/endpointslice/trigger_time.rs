//! The `endpoints.kubernetes.io/last-change-trigger-time` annotation (upstream's
//! `TriggerTimeTracker`): when the change that an Endpoints or EndpointSlice write
//! publishes happened, so latency from a pod becoming ready to proxies seeing it can be
//! measured (the network-programming-latency SLI).
//!
//! The time is the earliest trigger that changed since the service's previous sync — a
//! pod's Ready condition transition, or the service's creation — or, on a service's first
//! sync, its creation time. `None` means nothing changed that carries a time.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

pub const ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

#[derive(Default)]
struct ServiceState {
    pods: HashMap<String, Timestamp>,
    service: Option<Timestamp>,
}

/// Per-service memory of the trigger times last seen. Cheap to share between workers: one
/// service is never synced by two workers at once.
#[derive(Default)]
pub struct TriggerTimes {
    services: Mutex<HashMap<String, ServiceState>>,
}

fn pod_trigger(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?
        .last_transition_time
        .as_ref()
        .map(|t| t.0)
}

impl TriggerTimes {
    /// The trigger time of the sync of `key` about to be written, remembering what it saw.
    pub fn compute(&self, key: &str, svc: &Service, pods: &[Arc<Pod>]) -> Option<Timestamp> {
        let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let mut services = self.services.lock();
        let known = services.contains_key(key);
        let state = services.entry(key.to_string()).or_default();
        let mut min_changed: Option<Timestamp> = None;
        let mut seen = HashMap::with_capacity(pods.len());
        for pod in pods {
            let Some(t) = pod_trigger(pod) else { continue };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if state.pods.get(&name).is_none_or(|last| t > *last) {
                min_changed = Some(min_changed.map_or(t, |m| m.min(t)));
            }
            seen.insert(name, t);
        }
        if let Some(c) = created {
            if state.service.is_none_or(|last| c > last) {
                min_changed = Some(min_changed.map_or(c, |m| m.min(c)));
            }
        }
        state.pods = seen;
        state.service = created;
        if known {
            min_changed
        } else {
            created
        }
    }

    pub fn forget(&self, key: &str) {
        self.services.lock().remove(key);
    }
}

/// The annotation's text (Go's RFC 3339 with nanoseconds, trailing zeros dropped).
pub fn format(t: Timestamp) -> String {
    t.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ready_at: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "status": {"conditions": [{"type": "Ready", "status": "True",
                                            "lastTransitionTime": ready_at}]}}))
            .expect("valid pod"),
        )
    }

    #[test]
    fn the_trigger_time_is_creation_first_then_the_earliest_changed_pod() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "creationTimestamp": "2026-01-01T00:00:00Z"}}))
        .expect("valid service");
        let t = TriggerTimes::default();
        let a = pod("a", "2026-01-01T00:00:05Z");
        let first = t
            .compute("ns/s", &svc, std::slice::from_ref(&a))
            .map(format);
        assert_eq!(first.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(
            t.compute("ns/s", &svc, std::slice::from_ref(&a)),
            None,
            "nothing changed"
        );
        let b = pod("b", "2026-01-01T00:00:09Z");
        let c = pod("c", "2026-01-01T00:00:07Z");
        let next = t.compute("ns/s", &svc, &[a, b, c]).map(format);
        assert_eq!(next.as_deref(), Some("2026-01-01T00:00:07Z"));
    }
}
