//! From the metrics' recommendation to the replica count the controller sets (upstream
//! `normalizeDesiredReplicas*`): stabilization over recent recommendations, the scale-rate
//! policies of `spec.behavior`, and min/max replicas; with the AbleToScale / ScalingLimited
//! reasons and messages upstream reports for each outcome.
//!
//! Invariant: each HPA's [`History`] (recommendations and scale events) lives only in the
//! controller's memory, as upstream's does; time comes in as an argument, so the rules are
//! unit-tested by stepping a timestamp.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::autoscaling::v2::{HPAScalingPolicy, HPAScalingRules};

/// `--horizontal-pod-autoscaler-downscale-stabilization` (HPAs without `spec.behavior`).
pub const DOWNSCALE_STABILIZATION: SignedDuration = SignedDuration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Recommendation {
    replicas: i32,
    at: Timestamp,
}

#[derive(Debug, Clone, Copy)]
struct ScaleEvent {
    change: i32,
    at: Timestamp,
    outdated: bool,
}

/// One HPA's memory of what it recommended and what it did.
#[derive(Debug, Default)]
pub struct History {
    recommendations: Vec<Recommendation>,
    up: Vec<ScaleEvent>,
    down: Vec<ScaleEvent>,
}

/// What the HPA's spec and the target's scale say.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub min: i32,
    pub max: i32,
    pub current: i32,
}

/// A normalized count with the conditions it implies.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub replicas: i32,
    /// AbleToScale (status True): reason, message.
    pub able: (&'static str, String),
    /// ScalingLimited: status, reason, message.
    pub limited: (bool, &'static str, String),
}

const READY: (&str, &str) = ("ReadyForNewScale", "recommended size matches current size");
const WITHIN: &str = "the desired count is within the acceptable range";

/// Upstream's default rules, used where `spec.behavior` leaves a direction out.
pub fn default_scale_up() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(0),
        select_policy: Some("Max".into()),
        policies: Some(vec![policy("Percent", 100, 15), policy("Pods", 4, 15)]),
        ..Default::default()
    }
}

pub fn default_scale_down() -> HPAScalingRules {
    HPAScalingRules {
        stabilization_window_seconds: Some(300),
        select_policy: Some("Max".into()),
        policies: Some(vec![policy("Percent", 100, 15)]),
        ..Default::default()
    }
}

fn policy(type_: &str, value: i32, period_seconds: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds,
    }
}

fn ago(now: Timestamp, secs: i64) -> Timestamp {
    now.checked_sub(SignedDuration::from_secs(secs))
        .unwrap_or(Timestamp::MIN)
}

impl History {
    /// The target's count is the first recommendation, so a fresh HPA does not scale down
    /// before it has seen a window of samples.
    pub fn record_initial(&mut self, current: i32, now: Timestamp) {
        if self.recommendations.is_empty() {
            self.recommendations.push(Recommendation {
                replicas: current,
                at: now,
            });
        }
    }

    /// Records `desired` at `now`, reusing the slot of a sample older than `cutoff`.
    fn record(&mut self, desired: i32, now: Timestamp, old: Option<usize>) {
        let rec = Recommendation {
            replicas: desired,
            at: now,
        };
        match old {
            Some(i) => self.recommendations[i] = rec,
            None => self.recommendations.push(rec),
        }
    }

    /// Without `spec.behavior`: the highest recommendation of the downscale window, then the
    /// fixed scale-up limit (double, at least 4) and min/max.
    pub fn normalize_default(&mut self, b: Bounds, desired: i32, now: Timestamp) -> Decision {
        let cutoff = now
            .checked_sub(DOWNSCALE_STABILIZATION)
            .unwrap_or(Timestamp::MIN);
        let mut stabilized = desired;
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at < cutoff {
                old = Some(i);
            } else {
                stabilized = stabilized.max(r.replicas);
            }
        }
        self.record(desired, now, old);
        let able = if stabilized != desired {
            ("ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation".to_string())
        } else {
            (READY.0, READY.1.to_string())
        };
        let scale_up_limit = (2 * b.current).max(4);
        let (min, min_reason) = if b.min == 0 {
            (1, "the desired replica count is zero")
        } else {
            (
                b.min,
                "the desired replica count is less than the minimum replica count",
            )
        };
        let (max, max_cond, max_reason) = if b.max > scale_up_limit {
            (
                scale_up_limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                b.max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        let (replicas, reason, message) = if stabilized < min {
            (min, "TooFewReplicas", min_reason)
        } else if stabilized > max {
            (max, max_cond, max_reason)
        } else {
            (stabilized, "DesiredWithinRange", WITHIN)
        };
        Decision {
            replicas,
            able,
            limited: (replicas != stabilized, reason, message.to_string()),
        }
    }

    /// With `spec.behavior`: each direction's stabilization window, then its rate policies
    /// over the scale events of their periods, then min/max.
    pub fn normalize_with_behavior(
        &mut self,
        b: Bounds,
        desired: i32,
        up: &HPAScalingRules,
        down: &HPAScalingRules,
        now: Timestamp,
    ) -> Decision {
        let up_cutoff = ago(now, window(up).into());
        let down_cutoff = ago(now, window(down).into());
        let (mut up_rec, mut down_rec) = (desired, desired);
        let mut old = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at > up_cutoff {
                up_rec = up_rec.min(r.replicas);
            }
            if r.at > down_cutoff {
                down_rec = down_rec.max(r.replicas);
            }
            if r.at < up_cutoff && r.at < down_cutoff {
                old = Some(i);
            }
        }
        let stabilized = b.current.max(up_rec).min(down_rec);
        self.record(desired, now, old);
        let able = if stabilized == desired {
            (READY.0, READY.1.to_string())
        } else if desired >= b.current {
            ("ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation".to_string())
        } else {
            ("ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation".to_string())
        };
        let (replicas, reason, message) = self.rate_limited(b, stabilized, up, down, now);
        Decision {
            replicas,
            able,
            limited: (replicas != stabilized, reason, message.to_string()),
        }
    }

    fn rate_limited(
        &self,
        b: Bounds,
        desired: i32,
        up: &HPAScalingRules,
        down: &HPAScalingRules,
        now: Timestamp,
    ) -> (i32, &'static str, &'static str) {
        if desired > b.current {
            let limit = scale_up_limit(b.current, &self.up, up, now).max(b.current);
            let (allowed, reason, message) = if b.max > limit {
                (
                    limit,
                    "ScaleUpLimit",
                    "the desired replica count is increasing faster than the maximum scale rate",
                )
            } else {
                (
                    b.max,
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            };
            if desired > allowed {
                return (allowed, reason, message);
            }
        } else if desired < b.current {
            let limit = scale_down_limit(b.current, &self.down, down, now).min(b.current);
            let (allowed, reason, message) = if b.min < limit {
                (
                    limit,
                    "ScaleDownLimit",
                    "the desired replica count is decreasing faster than the maximum scale rate",
                )
            } else {
                (
                    b.min,
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )
            };
            if desired < allowed {
                return (allowed, reason, message);
            }
        }
        (desired, "DesiredWithinRange", WITHIN)
    }

    /// Remembers a rescale for the rate policies (only HPAs with `spec.behavior` use them).
    pub fn record_scale(
        &mut self,
        rules: (&HPAScalingRules, &HPAScalingRules),
        prev: i32,
        new: i32,
        now: Timestamp,
    ) {
        let (events, rules, change) = if new > prev {
            (&mut self.up, rules.0, new - prev)
        } else if new < prev {
            (&mut self.down, rules.1, prev - new)
        } else {
            return;
        };
        let longest = policies(rules)
            .iter()
            .map(|p| p.period_seconds)
            .max()
            .unwrap_or(0);
        let cutoff = ago(now, longest.into());
        for e in events.iter_mut() {
            if e.at < cutoff {
                e.outdated = true;
            }
        }
        let event = ScaleEvent {
            change,
            at: now,
            outdated: false,
        };
        match events.iter_mut().find(|e| e.outdated) {
            Some(slot) => *slot = event,
            None => events.push(event),
        }
    }
}

fn window(rules: &HPAScalingRules) -> i32 {
    rules.stabilization_window_seconds.unwrap_or(0)
}

fn policies(rules: &HPAScalingRules) -> &[HPAScalingPolicy] {
    rules.policies.as_deref().unwrap_or_default()
}

/// Replicas changed by events inside the last `period_seconds`.
fn changed_in_period(events: &[ScaleEvent], period_seconds: i32, now: Timestamp) -> i32 {
    let cutoff = ago(now, period_seconds.into());
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.change)
        .sum()
}

/// The most replicas the scale-up policies allow now.
fn scale_up_limit(
    current: i32,
    events: &[ScaleEvent],
    rules: &HPAScalingRules,
    now: Timestamp,
) -> i32 {
    let select = rules.select_policy.as_deref().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    let proposals = policies(rules).iter().map(|p| {
        let start = current - changed_in_period(events, p.period_seconds, now);
        if p.type_ == "Pods" {
            start + p.value
        } else {
            (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
        }
    });
    if select == "Min" {
        proposals.min().unwrap_or(i32::MAX)
    } else {
        proposals.max().unwrap_or(i32::MIN)
    }
}

/// The fewest replicas the scale-down policies allow now.
fn scale_down_limit(
    current: i32,
    events: &[ScaleEvent],
    rules: &HPAScalingRules,
    now: Timestamp,
) -> i32 {
    let select = rules.select_policy.as_deref().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    let proposals = policies(rules).iter().map(|p| {
        let start = current + changed_in_period(events, p.period_seconds, now);
        if p.type_ == "Pods" {
            start - p.value
        } else {
            (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
        }
    });
    if select == "Min" {
        proposals.max().unwrap_or(i32::MIN)
    } else {
        proposals.min().unwrap_or(i32::MAX)
    }
}

#[cfg(test)]
#[path = "behavior_tests.rs"]
mod tests;
