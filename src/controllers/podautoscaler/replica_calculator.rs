//! The replica count a resource metric asks for (upstream `replica_calculator.go`): the ratio
//! of the pods' usage to their target, applied to the ready pods, with upstream's rules for
//! pods that have no metrics yet or are not ready.
//!
//! Invariant: pure: pods, metrics and "now" go in, a proposal comes out, so every rule is
//! unit-tested without an API server. Values are in milli-units (`500m` CPU = 500).
//!
//! The rules, as upstream:
//! - deleted and failed pods are ignored; pending pods count as unready;
//! - for CPU, a pod is unready when it has no Ready condition or start time, when it is
//!   within the CPU initialization period (5 min) and either not ready or its sample was
//!   taken less than one metric window after it became ready, or when it is not ready and
//!   has never been ready (its Ready condition went false within 30 s of its start);
//! - a ratio within the tolerance (10 %) keeps the current count;
//! - pods with no metrics count as using 100 % of their request (or the target, if higher)
//!   when scaling down and 0 % when scaling up; unready pods count as 0 % when scaling up;
//!   if those assumptions flip the direction or land within tolerance, nothing changes.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Pod;
use std::collections::{BTreeMap, BTreeSet};

/// Ratios this close to 1 keep the current replica count (`--horizontal-pod-autoscaler-tolerance`).
pub const TOLERANCE: f64 = 0.1;
/// `--horizontal-pod-autoscaler-cpu-initialization-period`.
pub const CPU_INITIALIZATION_PERIOD: SignedDuration = SignedDuration::from_secs(300);
/// `--horizontal-pod-autoscaler-initial-readiness-delay`.
pub const INITIAL_READINESS_DELAY: SignedDuration = SignedDuration::from_secs(30);

/// One pod's usage of the metric's resource, summed over its (selected) containers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodMetric {
    /// Milli-units.
    pub value: i64,
    pub timestamp: Timestamp,
    pub window: SignedDuration,
}

/// Metrics by pod name.
pub type PodMetrics = BTreeMap<String, PodMetric>;

/// Why no replica count could be computed; the texts are upstream's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CalculatorError {
    #[error(
        "unable to get metrics for resource {0}: no metrics returned from resource metrics API"
    )]
    NoMetrics(String),
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoReadyMetrics,
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest {
        resource: String,
        container: String,
        pod: String,
    },
    #[error("no metrics returned matched known pods")]
    NoMatchedPods,
}

/// A replica count and the current value it was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    pub replicas: i32,
    /// Percentage of request (utilization targets only).
    pub utilization: Option<i32>,
    /// Average usage per pod, milli-units.
    pub raw_average: i64,
}

/// What the calculation needs besides pods and metrics.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub current_replicas: i32,
    pub resource: &'a str,
    /// Only this container's usage and request (ContainerResource metrics).
    pub container: Option<&'a str>,
    pub now: Timestamp,
    pub tolerance: f64,
}

/// Replicas for a utilization target (percentage of request).
pub fn utilization_replicas(
    input: Input<'_>,
    target_utilization: i32,
    pods: &[Pod],
    mut metrics: PodMetrics,
) -> Result<Proposal, CalculatorError> {
    let groups = prepare(&input, pods, &mut metrics)?;
    let requests = requests(pods, input.resource, input.container)?;
    let (ratio, utilization, raw) = utilization_ratio(&metrics, &requests, target_utilization)?;
    let unchanged = Proposal {
        replicas: input.current_replicas,
        utilization: Some(utilization),
        raw_average: raw,
    };
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if (1.0 - ratio).abs() <= input.tolerance {
            return Ok(unchanged);
        }
        return Ok(Proposal {
            replicas: ceil(ratio * groups.ready as f64),
            ..unchanged
        });
    }
    let fallback = i64::from(target_utilization.max(100));
    for pod in &groups.missing {
        let value = if ratio < 1.0 {
            requests.get(pod).copied().unwrap_or(0) * fallback / 100
        } else if ratio > 1.0 {
            0
        } else {
            continue;
        };
        metrics.insert(pod.clone(), zero_metric(value, input.now));
    }
    if scale_up_with_unready {
        for pod in &groups.unready {
            metrics.insert(pod.clone(), zero_metric(0, input.now));
        }
    }
    let (new_ratio, _, _) = utilization_ratio(&metrics, &requests, target_utilization)?;
    Ok(Proposal {
        replicas: rebalanced(&input, ratio, new_ratio, metrics.len()),
        ..unchanged
    })
}

/// Replicas for an average-value target (milli-units per pod).
pub fn average_value_replicas(
    input: Input<'_>,
    target_milli: i64,
    pods: &[Pod],
    mut metrics: PodMetrics,
) -> Result<Proposal, CalculatorError> {
    let groups = prepare(&input, pods, &mut metrics)?;
    let (ratio, raw) = usage_ratio(&metrics, target_milli);
    let unchanged = Proposal {
        replicas: input.current_replicas,
        utilization: None,
        raw_average: raw,
    };
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if (1.0 - ratio).abs() <= input.tolerance {
            return Ok(unchanged);
        }
        return Ok(Proposal {
            replicas: ceil(ratio * groups.ready as f64),
            ..unchanged
        });
    }
    for pod in &groups.missing {
        let value = if ratio < 1.0 { target_milli } else { 0 };
        metrics.insert(pod.clone(), zero_metric(value, input.now));
    }
    if scale_up_with_unready {
        for pod in &groups.unready {
            metrics.insert(pod.clone(), zero_metric(0, input.now));
        }
    }
    let (new_ratio, _) = usage_ratio(&metrics, target_milli);
    Ok(Proposal {
        replicas: rebalanced(&input, ratio, new_ratio, metrics.len()),
        ..unchanged
    })
}

/// The count after assumptions for missing and unready pods; the current one when those
/// assumptions reverse the direction of the change or bring it within tolerance.
fn rebalanced(input: &Input<'_>, ratio: f64, new_ratio: f64, pods: usize) -> i32 {
    let current = input.current_replicas;
    if (1.0 - new_ratio).abs() <= input.tolerance
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return current;
    }
    let replicas = ceil(new_ratio * pods as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return current;
    }
    replicas
}

fn ceil(x: f64) -> i32 {
    // Replica counts are far below i32::MAX; `as` saturates anyway.
    x.ceil() as i32
}

fn zero_metric(value: i64, now: Timestamp) -> PodMetric {
    PodMetric {
        value,
        timestamp: now,
        window: SignedDuration::ZERO,
    }
}

/// Pods by how their metrics count.
#[derive(Debug, Default)]
struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
}

/// Groups the pods and drops the metrics of ignored and unready pods.
fn prepare(
    input: &Input<'_>,
    pods: &[Pod],
    metrics: &mut PodMetrics,
) -> Result<Groups, CalculatorError> {
    if metrics.is_empty() {
        return Err(CalculatorError::NoMetrics(input.resource.to_string()));
    }
    if pods.is_empty() {
        return Err(CalculatorError::NoPods);
    }
    let mut groups = Groups::default();
    let mut ignored = BTreeSet::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if pod.metadata.deletion_timestamp.is_some() || phase == Some("Failed") {
            ignored.insert(name);
            continue;
        }
        if phase == Some("Pending") {
            groups.unready.insert(name);
            continue;
        }
        let Some(metric) = metrics.get(&name) else {
            groups.missing.insert(name);
            continue;
        };
        if input.resource == "cpu" && cpu_unready(pod, metric, input.now) {
            groups.unready.insert(name);
            continue;
        }
        groups.ready += 1;
    }
    metrics.retain(|pod, _| !ignored.contains(pod) && !groups.unready.contains(pod));
    if metrics.is_empty() {
        return Err(CalculatorError::NoReadyMetrics);
    }
    Ok(groups)
}

/// Whether a pod's CPU sample must not count (it may still be warming up).
fn cpu_unready(pod: &Pod, metric: &PodMetric, now: Timestamp) -> bool {
    let status = pod.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let start = status.and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    let (Some(ready), Some(start)) = (ready, start) else {
        return true;
    };
    let is_false = ready.status == "False";
    let transition = ready
        .last_transition_time
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    if plus(start, CPU_INITIALIZATION_PERIOD) > now {
        is_false || metric.timestamp < plus(transition, metric.window)
    } else {
        is_false && plus(start, INITIAL_READINESS_DELAY) > transition
    }
}

fn plus(t: Timestamp, d: SignedDuration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

/// Each pod's request of the resource (milli-units), summed over its containers.
fn requests(
    pods: &[Pod],
    resource: &str,
    container: Option<&str>,
) -> Result<BTreeMap<String, i64>, CalculatorError> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut total = 0i64;
        let containers = pod.spec.as_ref().map(|s| s.containers.as_slice());
        for c in containers.unwrap_or_default() {
            if container.is_some_and(|want| want != c.name) {
                continue;
            }
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| crate::api::quantity::Quantity::parse(&q.0).ok());
            let Some(q) = request else {
                return Err(CalculatorError::MissingRequest {
                    resource: resource.to_string(),
                    container: c.name.clone(),
                    pod: name,
                });
            };
            total += i64::try_from(q.milli_value()).unwrap_or(i64::MAX);
        }
        out.insert(name, total);
    }
    Ok(out)
}

/// (usage/target ratio, utilization %, average usage) over pods with both a metric and a
/// request (upstream `GetResourceUtilizationRatio`).
fn utilization_ratio(
    metrics: &PodMetrics,
    requests: &BTreeMap<String, i64>,
    target: i32,
) -> Result<(f64, i32, i64), CalculatorError> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, m) in metrics {
        if let Some(r) = requests.get(pod) {
            used += m.value;
            requested += r;
            n += 1;
        }
    }
    if requested == 0 {
        return Err(CalculatorError::NoMatchedPods);
    }
    let utilization = i32::try_from(used * 100 / requested).unwrap_or(i32::MAX);
    Ok((
        f64::from(utilization) / f64::from(target.max(1)),
        utilization,
        used / n,
    ))
}

/// (average/target ratio, average usage) (upstream `GetMetricUsageRatio`).
fn usage_ratio(metrics: &PodMetrics, target_milli: i64) -> (f64, i64) {
    let total: i64 = metrics.values().map(|m| m.value).sum();
    let avg = total / i64::try_from(metrics.len().max(1)).unwrap_or(1);
    (avg as f64 / target_milli.max(1) as f64, avg)
}

#[cfg(test)]
#[path = "replica_calculator_tests.rs"]
mod tests;
