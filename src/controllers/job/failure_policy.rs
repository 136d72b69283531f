//! `spec.podFailurePolicy`: which rule a failed pod matches (exit codes of its terminated
//! containers, or its conditions such as `DisruptionTarget`) and what that means for the Job.
//!
//! Invariant: rules are tried in order and the first match decides; a pod matching no rule
//! counts against the backoff limit like any failure.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

/// What a matched rule asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No rule matched: the failure counts.
    Unmatched,
    /// `Count`: the failure counts (as without a policy).
    Count,
    /// `Ignore`: the failure neither counts nor fails anything; the pod is replaced.
    Ignore,
    /// `FailJob`: the whole Job fails, with this condition message.
    FailJob(String),
    /// `FailIndex`: the pod's index fails at once (backoffLimitPerIndex).
    FailIndex,
}

impl Verdict {
    /// Whether the failure counts towards the backoff limit(s).
    pub fn counts(&self) -> bool {
        !matches!(self, Verdict::Ignore)
    }
}

/// Matches a failed pod against the policy.
pub fn judge(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else {
        return Verdict::Unmatched;
    };
    let status = pod.status.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched_message = if let Some(req) = &rule.on_exit_codes {
            let statuses = status.container_statuses.iter().flatten();
            let inits = status.init_container_statuses.iter().flatten();
            statuses
                .chain(inits)
                .find(|c| exit_code_matches(c, req))
                .map(|c| {
                    let code = terminated_exit_code(c).unwrap_or_default();
                    format!(
                        "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {index}",
                        c.name, rule.action
                    )
                })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            status.conditions.iter().flatten().find_map(|cond| {
                patterns
                    .iter()
                    .any(|p| {
                        p.type_ == cond.type_
                            && p.status.as_deref().unwrap_or("True") == cond.status
                    })
                    .then(|| {
                        format!(
                            "Pod {ns}/{name} has condition {} matching {} rule at index {index}",
                            cond.type_, rule.action
                        )
                    })
            })
        } else {
            None
        };
        let Some(message) = matched_message else {
            continue;
        };
        return match rule.action.as_str() {
            "Ignore" => Verdict::Ignore,
            "Count" => Verdict::Count,
            "FailJob" => Verdict::FailJob(message),
            "FailIndex" => Verdict::FailIndex,
            // An action this version does not know is skipped, as upstream skips it.
            _ => continue,
        };
    }
    Verdict::Unmatched
}

fn terminated_exit_code(c: &ContainerStatus) -> Option<i32> {
    c.state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code)
}

/// A terminated container with a non-zero exit code the requirement selects.
fn exit_code_matches(c: &ContainerStatus, req: &PodFailurePolicyOnExitCodesRequirement) -> bool {
    let Some(code) = terminated_exit_code(c) else {
        return false;
    };
    if code == 0 || req.container_name.as_ref().is_some_and(|n| *n != c.name) {
        return false;
    }
    match req.operator.as_str() {
        "In" => req.values.contains(&code),
        "NotIn" => !req.values.contains(&code),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).unwrap()
    }

    fn failed_pod(exit_codes: &[(&str, i32)], conditions: &[&str]) -> Pod {
        let statuses: Vec<_> = exit_codes
            .iter()
            .map(|(n, c)| {
                json!({"name": n, "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": c}}})
            })
            .collect();
        let conds: Vec<_> = conditions
            .iter()
            .map(|t| json!({"type": t, "status": "True"}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "containerStatuses": statuses, "conditions": conds}
        }))
        .unwrap()
    }

    #[test]
    fn first_matching_rule_decides_on_exit_codes() {
        let p = policy(json!([
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [3]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [0, 42]}},
        ]));
        assert_eq!(
            judge(Some(&p), &failed_pod(&[("main", 3)], &[])),
            Verdict::Ignore
        );
        assert_eq!(
            judge(Some(&p), &failed_pod(&[("main", 42)], &[])),
            Verdict::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into()
            )
        );
        // Another container's 42 does not match the named-container rule.
        assert_eq!(
            judge(Some(&p), &failed_pod(&[("side", 42)], &[])),
            Verdict::Unmatched
        );
        assert_eq!(
            judge(Some(&p), &failed_pod(&[("side", 7)], &[])),
            Verdict::Count
        );
        assert_eq!(
            judge(None, &failed_pod(&[("main", 42)], &[])),
            Verdict::Unmatched
        );
    }

    #[test]
    fn exit_code_zero_never_matches_not_in() {
        let p = policy(
            json!([{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}}]),
        );
        assert_eq!(
            judge(Some(&p), &failed_pod(&[("a", 0)], &[])),
            Verdict::Unmatched
        );
    }

    #[test]
    fn pod_conditions_match_disruption_targets() {
        let p = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [5]}},
        ]));
        let pod = failed_pod(&[("a", 5)], &["DisruptionTarget"]);
        assert_eq!(judge(Some(&p), &pod), Verdict::Ignore);
        assert!(!judge(Some(&p), &pod).counts());
        assert_eq!(
            judge(Some(&p), &failed_pod(&[("a", 5)], &[])),
            Verdict::FailIndex
        );
        let fail = policy(
            json!([{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]),
        );
        assert_eq!(
            judge(Some(&fail), &pod),
            Verdict::FailJob(
                "Pod ns/p has condition DisruptionTarget matching FailJob rule at index 0".into()
            )
        );
    }
}
