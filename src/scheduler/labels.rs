//! Label and node selectors on typed objects: `LabelSelector` (pod affinity, topology
//! spread, owners' selectors), `NodeSelector` terms (required node affinity, local volume
//! node affinity) and a pod's `nodeSelector`.
//!
//! Invariant: upstream's semantics of nil and empty: a nil `LabelSelector` matches nothing,
//! an empty one everything; a node selector term without requirements matches nothing.

use k8s_openapi::api::core::v1::{Node, NodeSelector, NodeSelectorTerm, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

static NO_LABELS: Labels = BTreeMap::new();

pub fn labels_of_pod(p: &Pod) -> &Labels {
    p.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

pub fn labels_of_node(n: &Node) -> &Labels {
    n.metadata.labels.as_ref().unwrap_or(&NO_LABELS)
}

/// Whether `sel` selects `labels` (a `None` selector selects nothing).
pub fn selector_matches(sel: Option<&LabelSelector>, labels: &Labels) -> bool {
    let Some(sel) = sel else {
        return false;
    };
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    for e in sel.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default();
        let have = labels.get(&e.key);
        let ok = match e.operator.as_str() {
            "In" => have.is_some_and(|v| values.contains(v)),
            "NotIn" => have.is_none_or(|v| !values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A selector from a plain label map (a Service's or ReplicationController's selector).
pub fn selector_from_map(m: &Labels) -> LabelSelector {
    LabelSelector {
        match_labels: Some(m.clone()),
        match_expressions: None,
    }
}

fn requirement_matches(op: &str, values: &[String], have: Option<&String>) -> bool {
    match op {
        "In" => have.is_some_and(|v| values.contains(v)),
        "NotIn" => have.is_none_or(|v| !values.contains(v)),
        "Exists" => have.is_some(),
        "DoesNotExist" => have.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(want)) = (
                have.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|v| v.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if op == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

/// One node selector term: all its requirements hold (an empty term matches nothing).
pub fn term_matches(term: &NodeSelectorTerm, node_name: &str, labels: &Labels) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node_name.to_owned();
    exprs.iter().all(|e| {
        requirement_matches(
            &e.operator,
            e.values.as_deref().unwrap_or_default(),
            labels.get(&e.key),
        )
    }) && fields.iter().all(|f| {
        f.key == "metadata.name"
            && requirement_matches(
                &f.operator,
                f.values.as_deref().unwrap_or_default(),
                Some(&name),
            )
    })
}

/// A node selector: any of its terms holds.
pub fn node_selector_matches(sel: &NodeSelector, node_name: &str, labels: &Labels) -> bool {
    sel.node_selector_terms
        .iter()
        .any(|t| term_matches(t, node_name, labels))
}

/// The pod's `nodeSelector` and required node affinity both hold on the node.
pub fn pod_matches_node_selector_and_affinity(pod: &Pod, node: &Node) -> bool {
    let labels = labels_of_node(node);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let Some(spec) = &pod.spec else {
        return true;
    };
    for (k, v) in spec.node_selector.iter().flatten() {
        if labels.get(k) != Some(v) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    required.is_none_or(|sel| node_selector_matches(sel, name, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_nil_selector_matches_nothing_and_an_empty_one_everything() {
        let l = labels(&[("app", "web")]);
        assert!(!selector_matches(None, &l));
        assert!(selector_matches(Some(&LabelSelector::default()), &l));
    }

    #[test]
    fn selector_expressions_follow_their_operators() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(selector_matches(Some(&sel), &labels(&[("app", "web")])));
        assert!(!selector_matches(
            Some(&sel),
            &labels(&[("app", "web"), ("tier", "db")])
        ));
        assert!(!selector_matches(Some(&sel), &labels(&[("app", "api")])));
    }

    #[test]
    fn node_terms_support_gt_lt_and_metadata_name_fields() {
        let term: NodeSelectorTerm = serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}],
            "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]
        }))
        .expect("term");
        assert!(term_matches(&term, "n1", &labels(&[("cores", "8")])));
        assert!(!term_matches(&term, "n2", &labels(&[("cores", "8")])));
        assert!(!term_matches(&term, "n1", &labels(&[("cores", "2")])));
        assert!(!term_matches(
            &NodeSelectorTerm::default(),
            "n1",
            &Labels::new()
        ));
    }
}
