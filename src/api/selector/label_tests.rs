use serde_json::{json, Map, Value};

use super::*;

fn labels(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn parse_and_match_table() {
    let l = labels(json!({"app": "web", "tier": "front", "version": "3", "empty": ""}));
    let cases: &[(&str, bool)] = &[
        ("", true),
        ("app=web", true),
        ("app==web", true),
        ("app = web", true),
        ("app!=web", false),
        ("app!=db", true),
        ("missing!=x", true),
        ("app in (web,db)", true),
        ("app in (db)", false),
        ("app notin (db, cache)", true),
        ("missing notin (a)", true),
        ("app", true),
        ("missing", false),
        ("!missing", true),
        ("!app", false),
        ("app=web,tier=front", true),
        ("app=web,tier=back", false),
        ("  app=web ,  !missing  ", true),
        ("empty=", true),
        ("empty in (,a)", true),
        ("version>2", true),
        ("version<3", false),
        ("app>1", false),
        ("x in (in)", false),
    ];
    for (sel, want) in cases {
        let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
        assert_eq!(s.matches(Some(&l)), *want, "selector {sel:?}");
    }
}

#[test]
fn missing_labels_match_only_negative_requirements() {
    let s = LabelSelector::parse("a!=b,!c,d notin (e)").expect("valid");
    assert!(s.matches(None));
    assert!(!LabelSelector::parse("a").expect("valid").matches(None));
}

#[test]
fn canonical_string_sorts_keys_and_set_values() {
    let cases = [
        ("z=1,a in (c,b),!m,k", "a in (b,c),k,!m,z=1"),
        ("x==y", "x==y"),
        ("x notin (b, a, a)", "x notin (a,b)"),
        ("x in ()", "x in ()"),
        ("v>5", "v>5"),
    ];
    for (input, want) in cases {
        assert_eq!(
            LabelSelector::parse(input).expect("valid").to_string(),
            want
        );
    }
}

#[test]
fn parse_errors_use_upstream_messages() {
    let cases = [
        (
            "a b",
            "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
        ),
        ("a=b,", "found '', expected: identifier after ','"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("!=a", "found '!=', expected: !, identifier, or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("a=(", "unable to parse requirement: found '(', expected: identifier"),
        (
            "x>a",
            "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer",
        ),
    ];
    for (input, want) in cases {
        let err = LabelSelector::parse(input).expect_err(input);
        assert_eq!(err.to_string(), want, "input {input:?}");
    }
}

#[test]
fn invalid_key_reports_nil_path_like_upstream() {
    let err = LabelSelector::parse("-bad=x").expect_err("bad key");
    assert_eq!(
        err.to_string(),
        "unable to parse requirement: <nil>: Invalid value: \"-bad\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    );
}

#[test]
fn invalid_value_reports_indexed_path() {
    let err = LabelSelector::parse("app in (ok,-bad)").expect_err("bad value");
    let msg = err.to_string();
    assert!(
        msg.starts_with("unable to parse requirement: values[0][app]: Invalid value: \"-bad\": a valid label must be an empty string"),
        "{msg}"
    );
}

#[test]
fn from_json_combines_match_labels_and_expressions() {
    let s = LabelSelector::from_json(&json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "edge"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "env", "operator": "Exists"}
        ]
    }))
    .expect("valid");
    assert_eq!(s.to_string(), "app=web,env,!legacy,tier in (edge,front)");
    let l = labels(json!({"app": "web", "tier": "edge", "env": "prod"}));
    assert!(s.matches(Some(&l)));
    let l2 = labels(json!({"app": "web", "tier": "edge", "env": "prod", "legacy": "1"}));
    assert!(!s.matches(Some(&l2)));
}

#[test]
fn from_json_empty_matches_everything_and_null_matches_nothing() {
    let empty = LabelSelector::from_json(&json!({})).expect("valid");
    assert!(empty.is_empty());
    assert!(empty.matches(None));
    let null = LabelSelector::from_json(&Value::Null).expect("valid");
    assert!(!null.is_empty());
    assert!(null.is_nothing());
    assert!(!null.matches(Some(&labels(json!({"a": "b"})))));
    assert_eq!(null.to_string(), "");
}

#[test]
fn from_json_rejects_unknown_operator_and_empty_in() {
    let err = LabelSelector::from_json(&json!({
        "matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]
    }))
    .expect_err("bad op");
    assert_eq!(
        err.to_string(),
        "\"Equals\" is not a valid label selector operator"
    );
    let err = LabelSelector::from_json(&json!({
        "matchExpressions": [{"key": "a", "operator": "In", "values": []}]
    }))
    .expect_err("empty in");
    assert_eq!(
        err.to_string(),
        "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
    );
}

#[test]
fn from_set_requires_every_pair() {
    let s = LabelSelector::from_set(&labels(json!({"b": "2", "a": "1"})));
    assert_eq!(s.to_string(), "a=1,b=2");
    assert!(s.matches(Some(&labels(json!({"a": "1", "b": "2", "c": "3"})))));
    assert!(!s.matches(Some(&labels(json!({"a": "1"})))));
    assert_eq!(s.requires_exact_match("a"), Some("1"));
    assert_eq!(s.requires_exact_match("c"), None);
}

#[test]
fn matches_map_agrees_with_matches_on_every_operator() {
    let typed: std::collections::BTreeMap<String, String> =
        [("app", "web"), ("tier", "3"), ("zone", "a")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let json: Map<String, Value> = typed
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    for expr in [
        "app=web",
        "app==api",
        "app!=web",
        "missing!=x",
        "app in (api,web)",
        "zone notin (a,b)",
        "missing notin (a)",
        "tier",
        "!tier",
        "!missing",
        "tier>2",
        "tier<3",
        "app=web,zone=b",
    ] {
        let sel = LabelSelector::parse(expr).unwrap();
        assert_eq!(
            sel.matches_map(Some(&typed)),
            sel.matches(Some(&json)),
            "{expr} on labels"
        );
        assert_eq!(
            sel.matches_map(None),
            sel.matches(None),
            "{expr} without labels"
        );
    }
    assert!(!LabelSelector::nothing().matches_map(Some(&typed)));
    assert!(LabelSelector::everything().matches_map(None));
}
