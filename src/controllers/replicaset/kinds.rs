//! The two kinds the replica controller runs over: apps/v1 ReplicaSet itself and core/v1
//! ReplicationController, converted to a ReplicaSet for the sync (as upstream's replication
//! manager wraps its informers in a conversion to ReplicaSets).
//!
//! Invariant: the conversion keeps identity (name, namespace, uid, generation), replicas,
//! minReadySeconds, the template, and the selector (an RC's map becomes `matchLabels`), so
//! one sync serves both kinds.

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::ReplicationController;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

/// A kind whose objects keep `replicas` pods from a template.
pub trait Replicated:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// Upstream's controller (service account and event source) name.
    const CONTROLLER: &'static str;
    /// Whether the kind's status has `terminatingReplicas` (ReplicaSet in 1.35).
    const HAS_TERMINATING_REPLICAS: bool;
    /// The object as a ReplicaSet.
    fn as_replica_set(&self) -> ReplicaSet;
    /// `status.observedGeneration`.
    fn observed_generation(&self) -> Option<i64>;
}

impl Replicated for ReplicaSet {
    const CONTROLLER: &'static str = "replicaset-controller";
    const HAS_TERMINATING_REPLICAS: bool = true;
    fn as_replica_set(&self) -> ReplicaSet {
        self.clone()
    }
    fn observed_generation(&self) -> Option<i64> {
        self.status.as_ref()?.observed_generation
    }
}

impl Replicated for ReplicationController {
    const CONTROLLER: &'static str = "replication-controller";
    const HAS_TERMINATING_REPLICAS: bool = false;
    fn observed_generation(&self) -> Option<i64> {
        self.status.as_ref()?.observed_generation
    }
    fn as_replica_set(&self) -> ReplicaSet {
        let spec = self.spec.clone().unwrap_or_default();
        // Same JSON shape (replicas, fullyLabeled, ready, available, observedGeneration,
        // conditions with type/status/reason/message/lastTransitionTime).
        let status = self
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| serde_json::from_value::<ReplicaSetStatus>(v).ok());
        ReplicaSet {
            metadata: self.metadata.clone(),
            spec: Some(ReplicaSetSpec {
                replicas: spec.replicas,
                min_ready_seconds: spec.min_ready_seconds,
                selector: LabelSelector {
                    match_labels: spec.selector,
                    match_expressions: None,
                },
                template: spec.template,
            }),
            status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ReplicationControllerCondition, ReplicationControllerSpec, ReplicationControllerStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn a_replication_controller_converts_to_a_replica_set_with_its_selector_and_status() {
        let rc = ReplicationController {
            metadata: ObjectMeta {
                name: Some("rc".into()),
                uid: Some("u1".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicationControllerSpec {
                replicas: Some(2),
                min_ready_seconds: Some(4),
                selector: Some([("app".to_string(), "x".to_string())].into()),
                template: None,
            }),
            status: Some(ReplicationControllerStatus {
                replicas: 1,
                ready_replicas: Some(1),
                conditions: Some(vec![ReplicationControllerCondition {
                    type_: "ReplicaFailure".into(),
                    status: "True".into(),
                    reason: Some("FailedCreate".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        };
        let rs = rc.as_replica_set();
        assert_eq!(rs.metadata.uid.as_deref(), Some("u1"));
        let spec = rs.spec.expect("spec");
        assert_eq!((spec.replicas, spec.min_ready_seconds), (Some(2), Some(4)));
        assert_eq!(
            spec.selector.match_labels.expect("labels")["app"],
            "x".to_string()
        );
        let status = rs.status.expect("status");
        assert_eq!((status.replicas, status.ready_replicas), (1, Some(1)));
        assert_eq!(
            status.conditions.expect("conditions")[0].type_,
            "ReplicaFailure"
        );
    }
}
