//! `spec.successPolicy` of Indexed Jobs: the Job succeeds early once the succeeded indexes
//! satisfy one rule (all of `succeededIndexes`, or `succeededCount` of them, or
//! `succeededCount` indexes at all).
//!
//! Invariant: rules are tried in order; the message names the first that matches.

use super::indexed::Intervals;
use k8s_openapi::api::batch::v1::SuccessPolicy;

/// The condition message when a rule matched, e.g. "Matched rules at index 0".
pub fn matched(
    policy: Option<&SuccessPolicy>,
    completions: u32,
    succeeded: &Intervals,
) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let count = rule.succeeded_count.map(|c| c.max(0) as u32);
        let hit = if let Some(s) = &rule.succeeded_indexes {
            let required = Intervals::parse(s, completions);
            if required.is_empty() {
                continue;
            }
            let have = succeeded.overlap(&required);
            have == required.total() || count.is_some_and(|c| have >= c)
        } else {
            count.is_some_and(|c| succeeded.total() >= c)
        };
        if hit {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(v: serde_json::Value) -> SuccessPolicy {
        serde_json::from_value(serde_json::json!({ "rules": v })).unwrap()
    }

    #[test]
    fn rules_match_by_indexes_by_count_or_both() {
        let p = policy(serde_json::json!([
            {"succeededIndexes": "0-2", "succeededCount": 2},
            {"succeededIndexes": "4"},
            {"succeededCount": 4},
        ]));
        let s = |x: &str| Intervals::parse(x, 10);
        assert_eq!(matched(Some(&p), 10, &s("1")), None);
        assert_eq!(
            matched(Some(&p), 10, &s("0,2")).as_deref(),
            Some("Matched rules at index 0")
        );
        assert_eq!(
            matched(Some(&p), 10, &s("4")).as_deref(),
            Some("Matched rules at index 1")
        );
        assert_eq!(
            matched(Some(&p), 10, &s("5-8")).as_deref(),
            Some("Matched rules at index 2")
        );
        assert_eq!(matched(None, 10, &s("0-9")), None);
    }
}
