//! One HPA sync (upstream `reconcileAutoscaler`): scale → metrics → recommendation →
//! normalized count → rescale, leaving status, conditions and events as upstream does.
//!
//! Invariant: the HPA passed in is only changed in its status; the caller writes it back
//! when it differs, so a sync that fails half way still reports why in its conditions.

use super::behavior::{default_scale_down, default_scale_up, Bounds, Decision};
use super::replica_calculator::{self, Input, Proposal, TOLERANCE};
use super::sources;
use super::{ControllerError, HpaReconciler};
use crate::api::selector::LabelSelector;
use crate::events::object_ref;
use jiff::Timestamp;
use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec};
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition,
    HorizontalPodAutoscalerSpec, MetricSpec, MetricStatus, MetricTarget, MetricValueStatus,
    ResourceMetricStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

const ABLE_TO_SCALE: &str = "AbleToScale";
const SCALING_ACTIVE: &str = "ScalingActive";
const SCALING_LIMITED: &str = "ScalingLimited";

/// The HPA's conditions being rewritten; a condition keeps its transition time while its
/// status stays the same.
struct Conditions {
    list: Vec<HorizontalPodAutoscalerCondition>,
    now: Timestamp,
}

impl Conditions {
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        let status = if status { "True" } else { "False" }.to_string();
        let message = Some(message.into());
        let reason = Some(reason.to_string());
        match self.list.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = Some(Time(self.now));
                }
                c.status = status;
                c.reason = reason;
                c.message = message;
            }
            None => self.list.push(HorizontalPodAutoscalerCondition {
                type_: type_.to_string(),
                status,
                reason,
                message,
                last_transition_time: Some(Time(self.now)),
            }),
        }
    }
}

/// A metric that could not give a replica count: the event reason and the error.
struct MetricError {
    reason: &'static str,
    error: String,
}

/// What the metrics ask for: the highest count and the metric that asked for it.
struct Recommendation {
    replicas: i32,
    metric: String,
}

impl HpaReconciler {
    pub(super) async fn sync(
        &self,
        hpa: &mut HorizontalPodAutoscaler,
        key: &str,
    ) -> Result<(), ControllerError> {
        let now = self.clock.now();
        let ns = hpa.metadata.namespace.clone().unwrap_or_default();
        let spec = hpa.spec.clone().unwrap_or_default();
        let target = &spec.scale_target_ref;
        let mut status = hpa.status.clone().unwrap_or_default();
        let mut conds = Conditions {
            list: status.conditions.take().unwrap_or_default(),
            now,
        };
        let result = self
            .sync_status(hpa, &spec, key, &ns, &mut conds, &mut status)
            .await;
        if result.is_err() {
            // Upstream reports the failure in the conditions and leaves the rest of the
            // status (desired replicas, last scale time) as it was.
            tracing::debug!(hpa = %key, target = %target.name, "sync stopped early");
        }
        status.conditions = Some(conds.list);
        hpa.status = Some(status);
        result
    }

    async fn sync_status(
        &self,
        hpa: &HorizontalPodAutoscaler,
        spec: &HorizontalPodAutoscalerSpec,
        key: &str,
        ns: &str,
        conds: &mut Conditions,
        status: &mut k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerStatus,
    ) -> Result<(), ControllerError> {
        let now = conds.now;
        let obj = object_ref(hpa);
        let target = &spec.scale_target_ref;
        let fetched = match sources::target_path(&self.client, ns, target).await {
            Ok(path) => sources::get_scale(&self.client, &path, &target.name)
                .await
                .map(|s| (path, s)),
            Err(e) => Err(e),
        };
        let (path, mut scale) = match fetched {
            Ok(found) => found,
            Err(e) => {
                let msg = error_text(&e);
                self.recorder
                    .event(obj, "Warning", "FailedGetScale", msg.clone());
                conds.set(
                    ABLE_TO_SCALE,
                    false,
                    "FailedGetScale",
                    format!(
                        "the HPA controller was unable to get the target's current scale: {msg}"
                    ),
                );
                return Err(e);
            }
        };
        conds.set(
            ABLE_TO_SCALE,
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
        );
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        self.histories
            .lock()
            .entry(key.to_string())
            .or_default()
            .record_initial(current, now);
        let min = spec.min_replicas.unwrap_or(1);
        let mut metric_statuses = Vec::new();
        let (desired, reason) = if current == 0 && min != 0 {
            conds.set(
                SCALING_ACTIVE,
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
            );
            (current, String::new())
        } else if current > spec.max_replicas {
            (
                spec.max_replicas,
                "Current number of replicas above Spec.MaxReplicas".to_string(),
            )
        } else if current < min {
            (
                min,
                "Current number of replicas below Spec.MinReplicas".to_string(),
            )
        } else {
            let (rec, statuses) = self.recommend(hpa, spec, ns, &scale, current, conds).await;
            metric_statuses = statuses;
            let Some(rec) = rec else {
                status.current_replicas = Some(current);
                status.current_metrics = non_empty(metric_statuses);
                return Ok(());
            };
            let reason = if rec.replicas > current {
                format!("{} above target", rec.metric)
            } else if rec.replicas < current {
                "All metrics below target".to_string()
            } else {
                String::new()
            };
            let decision = self.normalize(spec, key, current, min, rec.replicas, now);
            conds.set(ABLE_TO_SCALE, true, decision.able.0, decision.able.1);
            let (limited, why, msg) = decision.limited;
            conds.set(SCALING_LIMITED, limited, why, msg);
            (decision.replicas, reason)
        };
        let rescale = desired != current;
        if rescale {
            scale.spec = Some(ScaleSpec {
                replicas: Some(desired),
            });
            scale.status = None;
            if let Err(e) = sources::update_scale(&self.client, &path, &target.name, &scale).await {
                let msg = error_text(&e);
                self.recorder.event(
                    obj,
                    "Warning",
                    "FailedRescale",
                    format!("New size: {desired}; reason: {reason}; error: {msg}"),
                );
                conds.set(
                    ABLE_TO_SCALE,
                    false,
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {msg}"),
                );
                status.current_replicas = Some(current);
                status.current_metrics = non_empty(metric_statuses);
                return Err(e);
            }
            conds.set(
                ABLE_TO_SCALE,
                true,
                "SucceededRescale",
                format!("the HPA controller was able to update the target scale to {desired}"),
            );
            self.recorder.event(
                obj,
                "Normal",
                "SuccessfulRescale",
                format!("New size: {desired}; reason: {reason}"),
            );
            if let Some(b) = spec.behavior.as_ref() {
                let up = b.scale_up.clone().unwrap_or_else(default_scale_up);
                let down = b.scale_down.clone().unwrap_or_else(default_scale_down);
                self.histories
                    .lock()
                    .entry(key.to_string())
                    .or_default()
                    .record_scale((&up, &down), current, desired, now);
            }
            status.last_scale_time = Some(Time(now));
        }
        status.current_replicas = Some(current);
        status.desired_replicas = desired;
        status.current_metrics = non_empty(metric_statuses);
        status.observed_generation = hpa.metadata.generation;
        Ok(())
    }

    fn normalize(
        &self,
        spec: &HorizontalPodAutoscalerSpec,
        key: &str,
        current: i32,
        min: i32,
        desired: i32,
        now: Timestamp,
    ) -> Decision {
        let bounds = Bounds {
            min,
            max: spec.max_replicas,
            current,
        };
        let mut histories = self.histories.lock();
        let history = histories.entry(key.to_string()).or_default();
        match spec.behavior.as_ref() {
            None => history.normalize_default(bounds, desired, now),
            Some(b) => {
                let up = b.scale_up.clone().unwrap_or_else(default_scale_up);
                let down = b.scale_down.clone().unwrap_or_else(default_scale_down);
                history.normalize_with_behavior(bounds, desired, &up, &down, now)
            }
        }
    }

    /// The HPAs (`ns/name`, sorted) controlling the pods `selector` selects, when there is
    /// more than one (upstream's hpasControllingPodsUnderSelector): two autoscalers of one
    /// set of pods would fight, so neither scales. An HPA's selector is known once it has
    /// synced. A failed pod list is not an ambiguity (the metrics report it).
    async fn ambiguous(&self, ns: &str, selector: &str) -> Option<Vec<String>> {
        let pods = sources::pods(&self.client, ns, selector).await.ok()?;
        let prefix = format!("{ns}/");
        let selectors = self.selectors.lock();
        let mut controlling: Vec<String> = selectors
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .filter(|(_, sel)| pods.iter().any(|p| sel.matches(p.metadata.labels.as_ref())))
            .map(|(key, _)| key.clone())
            .collect();
        controlling.sort();
        (controlling.len() > 1).then_some(controlling)
    }

    /// Upstream `computeReplicasForMetrics`: the highest count any metric asks for, or
    /// `None` (with ScalingActive False) when the metrics cannot be trusted: all failed, or
    /// some failed and the others would scale down.
    async fn recommend(
        &self,
        hpa: &HorizontalPodAutoscaler,
        spec: &HorizontalPodAutoscalerSpec,
        ns: &str,
        scale: &Scale,
        current: i32,
        conds: &mut Conditions,
    ) -> (Option<Recommendation>, Vec<MetricStatus>) {
        let obj = object_ref(hpa);
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        if selector.is_empty() {
            self.recorder.event(
                obj,
                "Warning",
                "SelectorRequired",
                "selector is required".into(),
            );
            conds.set(
                SCALING_ACTIVE,
                false,
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
            );
            return (None, Vec::new());
        }
        let parsed = match LabelSelector::parse(&selector) {
            Ok(p) => p,
            Err(e) => {
                self.recorder
                    .event(obj, "Warning", "InvalidSelector", e.to_string());
                conds.set(
                    SCALING_ACTIVE,
                    false,
                    "InvalidSelector",
                    format!("the HPA target's scale has an invalid selector: {e}"),
                );
                return (None, Vec::new());
            }
        };
        let hpa_key = format!("{ns}/{}", hpa.metadata.name.as_deref().unwrap_or_default());
        self.selectors.lock().insert(
            hpa_key,
            crate::controllers::controller_utils::Selector::parsed(parsed),
        );
        if let Some(others) = self.ambiguous(ns, &selector).await {
            let msg = format!(
                "pods by selector {selector} are controlled by multiple HPAs: [{}]",
                others.join(" ")
            );
            self.recorder
                .event(obj, "Warning", "AmbiguousSelector", msg.clone());
            conds.set(SCALING_ACTIVE, false, "AmbiguousSelector", msg);
            return (None, Vec::new());
        }
        let metrics = spec.metrics.clone().unwrap_or_default();
        let mut statuses = Vec::with_capacity(metrics.len());
        let mut best: Option<Recommendation> = None;
        let mut first_error: Option<MetricError> = None;
        let mut invalid = 0;
        for m in &metrics {
            match self.metric_replicas(m, ns, &selector, current).await {
                Ok((replicas, name, st)) => {
                    statuses.push(st);
                    if best.as_ref().is_none_or(|b| replicas > b.replicas) {
                        best = Some(Recommendation {
                            replicas,
                            metric: name,
                        });
                    }
                }
                Err(e) => {
                    // Upstream leaves the failed metric's status entry empty, keeping the
                    // positions of spec.metrics and status.currentMetrics paired.
                    statuses.push(MetricStatus::default());
                    self.recorder
                        .event(obj.clone(), "Warning", e.reason, e.error.clone());
                    invalid += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        let replicas = best.as_ref().map_or(0, |b| b.replicas);
        if let Some(e) = first_error.filter(|_| invalid >= metrics.len() || replicas < current) {
            conds.set(
                SCALING_ACTIVE,
                false,
                e.reason,
                format!(
                    "the HPA was unable to compute the replica count: {}",
                    e.error
                ),
            );
            self.recorder.event(
                obj,
                "Warning",
                "FailedComputeMetricsReplicas",
                format!(
                    "invalid metrics ({invalid} invalid out of {}), first error is: {}",
                    metrics.len(),
                    e.error
                ),
            );
            return (None, statuses);
        }
        let Some(best) = best else {
            return (None, statuses);
        };
        conds.set(
            SCALING_ACTIVE,
            true,
            "ValidMetricFound",
            format!(
                "the HPA was able to successfully calculate a replica count from {}",
                best.metric
            ),
        );
        (Some(best), statuses)
    }

    /// One metric's proposal (upstream `computeReplicasForMetric`); only resource metrics
    /// have a source here (no custom or external metrics API is served).
    async fn metric_replicas(
        &self,
        m: &MetricSpec,
        ns: &str,
        selector: &str,
        current: i32,
    ) -> Result<(i32, String, MetricStatus), MetricError> {
        let (resource, container, target, reason) = match m.type_.as_str() {
            "Resource" => {
                let Some(r) = m.resource.as_ref() else {
                    return Err(invalid_source("Resource"));
                };
                (r.name.as_str(), None, &r.target, "FailedGetResourceMetric")
            }
            "ContainerResource" => {
                let Some(r) = m.container_resource.as_ref() else {
                    return Err(invalid_source("ContainerResource"));
                };
                (
                    r.name.as_str(),
                    Some(r.container.as_str()),
                    &r.target,
                    "FailedGetContainerResourceMetric",
                )
            }
            "Pods" | "Object" | "External" => {
                let (reason, api) = match m.type_.as_str() {
                    "Pods" => ("FailedGetPodsMetric", "custom"),
                    "Object" => ("FailedGetObjectMetric", "custom"),
                    _ => ("FailedGetExternalMetric", "external"),
                };
                return Err(MetricError {
                    reason,
                    error: format!("unable to fetch metrics from {api} metrics API: the server could not find the requested resource"),
                });
            }
            other => {
                return Err(MetricError {
                    reason: "InvalidMetricSourceType",
                    error: format!("unknown metric source type \"{other}\""),
                });
            }
        };
        let (proposal, name) = self
            .resource_proposal(resource, container, target, ns, selector, current)
            .await
            .map_err(|error| MetricError { reason, error })?;
        let current_value = MetricValueStatus {
            average_utilization: proposal.utilization,
            average_value: Some(milli_quantity(proposal.raw_average)),
            value: None,
        };
        let status = match container {
            None => MetricStatus {
                type_: "Resource".into(),
                resource: Some(ResourceMetricStatus {
                    name: resource.to_string(),
                    current: current_value,
                }),
                ..Default::default()
            },
            Some(c) => MetricStatus {
                type_: "ContainerResource".into(),
                container_resource: Some(ContainerResourceMetricStatus {
                    name: resource.to_string(),
                    container: c.to_string(),
                    current: current_value,
                }),
                ..Default::default()
            },
        };
        Ok((proposal.replicas, name, status))
    }

    async fn resource_proposal(
        &self,
        resource: &str,
        container: Option<&str>,
        target: &MetricTarget,
        ns: &str,
        selector: &str,
        current: i32,
    ) -> Result<(Proposal, String), String> {
        let kind = if container.is_some() {
            "container resource"
        } else {
            "resource"
        };
        let average = target
            .average_value
            .as_ref()
            .filter(|_| target.type_ == "AverageValue");
        let utilization = target.average_utilization;
        if average.is_none() && utilization.is_none() {
            return Err("invalid resource metric source: neither an average utilization target nor an average value (usage) target was set".into());
        }
        let metrics = sources::resource_metrics(&self.client, ns, selector, resource, container)
            .await
            .map_err(|e| {
                format!("unable to get metrics for resource {resource}: unable to fetch metrics from resource metrics API: {e}")
            })?;
        let pods = sources::pods(&self.client, ns, selector)
            .await
            .map_err(|e| format!("unable to get pods while calculating replica count: {e}"))?;
        let input = Input {
            current_replicas: current,
            resource,
            container,
            now: self.clock.now(),
            tolerance: TOLERANCE,
        };
        if let Some(avg) = average {
            let target_milli = crate::api::quantity::Quantity::parse(&avg.0)
                .map(|q| i64::try_from(q.milli_value()).unwrap_or(i64::MAX))
                .map_err(|e| e.to_string())?;
            let p = replica_calculator::average_value_replicas(input, target_milli, &pods, metrics)
                .map_err(|e| format!("failed to get {resource} usage: {e}"))?;
            return Ok((p, format!("{resource} {kind}")));
        }
        let target_utilization = utilization.unwrap_or(0);
        let p = replica_calculator::utilization_replicas(input, target_utilization, &pods, metrics)
            .map_err(|e| format!("failed to get {resource} utilization: {e}"))?;
        Ok((
            p,
            format!("{resource} {kind} utilization (percentage of request)"),
        ))
    }
}

fn invalid_source(ty: &str) -> MetricError {
    MetricError {
        reason: "InvalidMetricSourceType",
        error: format!("metric source type {ty:?} has no source"),
    }
}

/// A milli-unit count as upstream's `NewMilliQuantity(v, DecimalSI)` prints it.
fn milli_quantity(milli: i64) -> Quantity {
    let text = format!("{milli}m");
    Quantity(
        crate::api::quantity::Quantity::parse(&text)
            .map(|q| q.to_string())
            .unwrap_or(text),
    )
}

fn non_empty(v: Vec<MetricStatus>) -> Option<Vec<MetricStatus>> {
    (!v.is_empty()).then_some(v)
}

/// An API error's message (what upstream's events carry), or the error itself.
fn error_text(e: &ControllerError) -> String {
    match e {
        ControllerError::Api(kube::Error::Api(s)) => s.message.clone(),
        other => other.to_string(),
    }
}
