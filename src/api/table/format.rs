//! Shared cell formatting: label maps, label selectors, container lists,
//! access modes and "a,b,c + N more..." lists.
//!
//! Invariant: output text is byte-identical to what the upstream helpers
//! (`labels.FormatLabels`, `metav1.FormatLabelSelector`, ...) print, since
//! users grep and script against it.

use serde_json::Value;

use super::fields::{list_at, str_at};

/// `k1=v1,k2=v2` sorted by key, or `<none>` (upstream `labels.FormatLabels`).
pub fn format_labels(map: Option<&Value>) -> String {
    let joined = labels_string(map);
    if joined.is_empty() {
        "<none>".to_string()
    } else {
        joined
    }
}

/// `k1=v1,k2=v2` sorted by key; empty for no labels.
pub fn labels_string(map: Option<&Value>) -> String {
    let Some(obj) = map.and_then(Value::as_object) else {
        return String::new();
    };
    let mut pairs: Vec<(&String, &str)> = obj
        .iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Why a `LabelSelector` cannot be turned into a selector string.
#[derive(Debug, PartialEq, Eq)]
pub struct BadSelector;

/// The selector string of a `metav1.LabelSelector` (`app=web,tier in (a,b)`).
/// An absent or empty selector gives `""`, as upstream's `Nothing()` and
/// `Everything()` both print empty.
pub fn selector_string(sel: Option<&Value>) -> Result<String, BadSelector> {
    let Some(sel) = sel.filter(|v| v.is_object()) else {
        return Ok(String::new());
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for expr in list_at(sel, &["matchExpressions"]) {
        let key = str_at(expr, &["key"]);
        let mut values: Vec<&str> = list_at(expr, &["values"])
            .iter()
            .map(|v| v.as_str().unwrap_or(""))
            .collect();
        values.sort_unstable();
        let text = match str_at(expr, &["operator"]) {
            "In" | "NotIn" if values.is_empty() => return Err(BadSelector),
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return Err(BadSelector),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return Err(BadSelector),
        };
        reqs.push((key.to_string(), text));
    }
    // Upstream sorts requirements by key only; a stable sort keeps matchLabels
    // before expressions on the same key, as its insertion sort does.
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs
        .into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(","))
}

/// Upstream `metav1.FormatLabelSelector`: `<none>` when empty, `<error>` when
/// the selector is malformed.
pub fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(BadSelector) => "<error>".to_string(),
    }
}

/// Comma-joined container names and images of a pod spec.
pub fn container_cells(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec.map(|s| list_at(s, &["containers"])).unwrap_or(&[]);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// `RWO,ROX,RWX,RWOP` in that fixed order, duplicates folded.
pub fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// First three entries then `+ N more...`; `<unset>` when empty.
pub fn list_with_more(items: &[String]) -> String {
    const MAX: usize = 3;
    if items.is_empty() {
        return "<unset>".to_string();
    }
    let shown = items[..items.len().min(MAX)].join(",");
    if items.len() > MAX {
        format!("{shown} + {} more...", items.len() - MAX)
    } else {
        shown
    }
}

/// `True`/`False` for a set optional bool, `<unset>` otherwise.
pub fn bool_ptr(v: Option<&Value>) -> String {
    match v.and_then(Value::as_bool) {
        Some(true) => "True".to_string(),
        Some(false) => "False".to_string(),
        None => "<unset>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_are_sorted_and_empty_prints_none() {
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(Some(&json!({}))), "<none>");
        assert_eq!(format_labels(None), "<none>");
    }

    #[test]
    fn selector_with_expressions_sorts_by_key_and_values() {
        let sel = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"}
            ]
        });
        assert_eq!(
            selector_string(Some(&sel)),
            Ok("app=web,!canary,env notin (dev),tier in (back,front),zone".to_string())
        );
    }

    #[test]
    fn empty_and_bad_selectors_format_like_upstream() {
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Near"}]});
        assert_eq!(format_label_selector(Some(&bad)), "<error>");
    }

    #[test]
    fn access_modes_use_fixed_order() {
        let modes = [
            json!("ReadWriteMany"),
            json!("ReadWriteOnce"),
            json!("ReadWriteOnce"),
        ];
        assert_eq!(access_modes(&modes), "RWO,RWX");
    }

    #[test]
    fn long_lists_are_elided_after_three() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(list_with_more(&items), "a,b,c + 2 more...");
        assert_eq!(list_with_more(&[]), "<unset>");
    }
}
