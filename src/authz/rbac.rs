//! RBAC rule matching: whether one `PolicyRule` allows one request, and whether a set of
//! rules covers another (escalation checks), as upstream's `rbac/v1/evaluation_helpers.go`
//! and `registry/rbac/validation` define them. Pure functions, no state.
//!
//! Invariant: `*` matches everything in the dimension it appears in (verbs, apiGroups,
//! resources, nonResourceURLs); `*/scale` matches the `scale` subresource of any resource; a
//! trailing `*` in a nonResourceURL matches every path with that prefix; an empty
//! resourceNames list matches every name.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// One request, as RBAC sees it.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    Resource {
        verb: &'a str,
        group: &'a str,
        resource: &'a str,
        subresource: Option<&'a str>,
        name: Option<&'a str>,
    },
    NonResource {
        verb: &'a str,
        path: &'a str,
    },
}

const ALL: &str = "*";

fn has(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == ALL || x == want)
}

pub fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    has(&rule.verbs, verb)
}

pub fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    rule.api_groups.as_deref().is_some_and(|g| has(g, group))
}

/// `resource` or `resource/subresource` against the rule's resources (`*`, exact, `*/sub`).
pub fn resource_matches(rule: &PolicyRule, resource: &str, subresource: Option<&str>) -> bool {
    let Some(resources) = rule.resources.as_deref() else {
        return false;
    };
    let sub = subresource.filter(|s| !s.is_empty());
    resources.iter().any(|r| {
        if r == ALL {
            return true;
        }
        match sub {
            None => r == resource,
            Some(s) => {
                r.len() == resource.len() + 1 + s.len()
                    && r.starts_with(resource)
                    && r.as_bytes()[resource.len()] == b'/'
                    && r.ends_with(s)
                    || r.strip_prefix("*/") == Some(s)
            }
        }
    })
}

pub fn resource_name_matches(rule: &PolicyRule, name: Option<&str>) -> bool {
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => name.is_some_and(|n| !n.is_empty() && names.iter().any(|x| x == n)),
    }
}

pub fn non_resource_url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.as_deref().is_some_and(|urls| {
        urls.iter().any(|u| {
            u == ALL
                || u == path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix))
        })
    })
}

/// Whether `rule` allows `req` (upstream's `RuleAllows`).
pub fn rule_allows(rule: &PolicyRule, req: &Request<'_>) -> bool {
    match *req {
        Request::Resource {
            verb,
            group,
            resource,
            subresource,
            name,
        } => {
            verb_matches(rule, verb)
                && api_group_matches(rule, group)
                && resource_matches(rule, resource, subresource)
                && resource_name_matches(rule, name)
        }
        Request::NonResource { verb, path } => {
            verb_matches(rule, verb) && non_resource_url_matches(rule, path)
        }
    }
}

/// Whether `owner` holds every permission `servant` grants (upstream's `validation.Covers`):
/// each servant rule is broken into single-verb, single-group, single-resource (and single
/// name or URL) rules, each of which must be allowed by some owner rule. Returns the pieces
/// not covered (empty when covered).
pub fn uncovered(owner: &[PolicyRule], servant: &[PolicyRule]) -> Vec<PolicyRule> {
    let mut missing = Vec::new();
    for rule in servant {
        for piece in breakdown(rule) {
            if !owner.iter().any(|o| rule_covers(o, &piece)) {
                missing.push(piece);
            }
        }
    }
    missing
}

/// One servant rule split so each piece has one verb and one group/resource/name or URL.
fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| Some(vec![s.clone()]);
    let mut out = Vec::new();
    let groups = rule.api_groups.clone().unwrap_or_default();
    let resources = rule.resources.clone().unwrap_or_default();
    let names = rule.resource_names.clone().unwrap_or_default();
    for verb in &rule.verbs {
        for g in &groups {
            for r in &resources {
                if names.is_empty() {
                    out.push(PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: one(g),
                        resources: one(r),
                        ..PolicyRule::default()
                    });
                }
                for n in &names {
                    out.push(PolicyRule {
                        verbs: vec![verb.clone()],
                        api_groups: one(g),
                        resources: one(r),
                        resource_names: one(n),
                        ..PolicyRule::default()
                    });
                }
            }
        }
        for u in rule.non_resource_urls.iter().flatten() {
            out.push(PolicyRule {
                verbs: vec![verb.clone()],
                non_resource_urls: one(u),
                ..PolicyRule::default()
            });
        }
    }
    out
}

/// Whether `owner` allows everything the single-dimension rule `piece` grants
/// (upstream's `ruleCovers`).
fn rule_covers(owner: &PolicyRule, piece: &PolicyRule) -> bool {
    let contains = |set: &[String], want: &[String]| {
        set.iter().any(|x| x == ALL) || want.iter().all(|w| set.iter().any(|x| x == w))
    };
    let opt = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    let verbs_ok = contains(&owner.verbs, &piece.verbs);
    let groups_ok = contains(&opt(&owner.api_groups), &opt(&piece.api_groups));
    let resources_ok = opt(&piece.resources).iter().all(|r| {
        let owned = opt(&owner.resources);
        owned.iter().any(|o| {
            o == ALL
                || o == r
                // `pods/*` covers every subresource of pods, `*/scale` the scale of any.
                || o.strip_suffix("/*").is_some_and(|base| r.starts_with(&format!("{base}/")))
                || (o.starts_with("*/") && r.ends_with(&o[1..]))
        })
    });
    let urls_ok = opt(&piece.non_resource_urls).iter().all(|u| {
        opt(&owner.non_resource_urls)
            .iter()
            .any(|o| o == ALL || o == u || o.strip_suffix('*').is_some_and(|p| u.starts_with(p)))
    });
    let owner_names = opt(&owner.resource_names);
    let piece_names = opt(&piece.resource_names);
    // A grant limited to names covers only requests limited to those names.
    let names_ok =
        owner_names.is_empty() || (!piece_names.is_empty() && contains(&owner_names, &piece_names));
    verbs_ok && groups_ok && resources_ok && urls_ok && names_ok
}

/// Upstream's compact text of a rule, as escalation errors list it:
/// `{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}`.
pub fn describe(rule: &PolicyRule) -> String {
    let quoted = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut parts = Vec::new();
    if let Some(g) = rule.api_groups.as_deref().filter(|g| !g.is_empty()) {
        parts.push(format!("APIGroups:[{}]", quoted(g)));
    }
    if let Some(r) = rule.resources.as_deref().filter(|r| !r.is_empty()) {
        parts.push(format!("Resources:[{}]", quoted(r)));
    }
    if let Some(u) = rule.non_resource_urls.as_deref().filter(|u| !u.is_empty()) {
        parts.push(format!("NonResourceURLs:[{}]", quoted(u)));
    }
    if let Some(n) = rule.resource_names.as_deref().filter(|n| !n.is_empty()) {
        parts.push(format!("ResourceNames:[{}]", quoted(n)));
    }
    parts.push(format!("Verbs:[{}]", quoted(&rule.verbs)));
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            verbs: v(verbs),
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            resource_names: (!names.is_empty()).then(|| v(names)),
            non_resource_urls: None,
        }
    }

    fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            non_resource_urls: Some(urls.iter().map(|s| s.to_string()).collect()),
            ..PolicyRule::default()
        }
    }

    fn res<'a>(verb: &'a str, group: &'a str, resource: &'a str) -> Request<'a> {
        Request::Resource {
            verb,
            group,
            resource,
            subresource: None,
            name: None,
        }
    }

    #[test]
    fn each_dimension_must_match() {
        let r = rule(&["get", "list"], &[""], &["pods"], &[]);
        assert!(rule_allows(&r, &res("get", "", "pods")));
        assert!(!rule_allows(&r, &res("delete", "", "pods")), "verb");
        assert!(!rule_allows(&r, &res("get", "apps", "pods")), "group");
        assert!(!rule_allows(&r, &res("get", "", "secrets")), "resource");
    }

    #[test]
    fn star_matches_every_value_of_its_dimension() {
        let r = rule(&["*"], &["*"], &["*"], &[]);
        assert!(rule_allows(
            &r,
            &res("escalate", "rbac.authorization.k8s.io", "roles")
        ));
        let r = rule(&["get"], &["*"], &["deployments"], &[]);
        assert!(rule_allows(&r, &res("get", "apps", "deployments")));
        assert!(!rule_allows(&r, &res("list", "apps", "deployments")));
    }

    #[test]
    fn subresources_match_exactly_or_through_star_slash() {
        let log = rule(&["get"], &[""], &["pods/log"], &[]);
        let sub = |s| Request::Resource {
            verb: "get",
            group: "",
            resource: "pods",
            subresource: Some(s),
            name: None,
        };
        assert!(rule_allows(&log, &sub("log")));
        assert!(!rule_allows(&log, &sub("exec")));
        assert!(!rule_allows(&log, &res("get", "", "pods")));
        let pods = rule(&["get"], &[""], &["pods"], &[]);
        assert!(
            !rule_allows(&pods, &sub("log")),
            "pods does not grant pods/log"
        );
        let scale = rule(&["get"], &["*"], &["*/scale"], &[]);
        assert!(rule_allows(
            &scale,
            &Request::Resource {
                verb: "get",
                group: "apps",
                resource: "deployments",
                subresource: Some("scale"),
                name: None
            }
        ));
        assert!(!rule_allows(&scale, &sub("log")));
    }

    #[test]
    fn resource_names_restrict_to_named_objects() {
        let r = rule(&["get"], &[""], &["configmaps"], &["a"]);
        let named = |n| Request::Resource {
            verb: "get",
            group: "",
            resource: "configmaps",
            subresource: None,
            name: n,
        };
        assert!(rule_allows(&r, &named(Some("a"))));
        assert!(!rule_allows(&r, &named(Some("b"))));
        assert!(!rule_allows(&r, &named(None)), "a list has no name");
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_prefix() {
        let r = url_rule(&["get"], &["/healthz", "/api/*"]);
        let p = |path| Request::NonResource { verb: "get", path };
        assert!(rule_allows(&r, &p("/healthz")));
        assert!(!rule_allows(&r, &p("/healthz/ping")));
        assert!(rule_allows(&r, &p("/api/v1")));
        assert!(!rule_allows(&r, &p("/apis")));
        assert!(!rule_allows(
            &r,
            &Request::NonResource {
                verb: "post",
                path: "/healthz"
            }
        ));
        assert!(rule_allows(&url_rule(&["*"], &["*"]), &p("/anything")));
        // A resource rule never grants a path and a path rule never a resource.
        assert!(!rule_allows(
            &rule(&["*"], &["*"], &["*"], &[]),
            &p("/healthz")
        ));
        assert!(!rule_allows(&r, &res("get", "", "healthz")));
    }

    #[test]
    fn coverage_breaks_rules_down_per_verb_and_resource() {
        let owner = vec![
            rule(&["get", "list"], &[""], &["pods", "pods/log"], &[]),
            rule(&["get"], &[""], &["configmaps"], &["a"]),
        ];
        assert!(uncovered(&owner, &[rule(&["get"], &[""], &["pods"], &[])]).is_empty());
        assert!(uncovered(&owner, &[rule(&["get"], &[""], &["configmaps"], &["a"])]).is_empty());
        let missing = uncovered(&owner, &[rule(&["get", "delete"], &[""], &["pods"], &[])]);
        assert_eq!(missing, vec![rule(&["delete"], &[""], &["pods"], &[])]);
        // A named grant does not cover an unnamed one.
        assert_eq!(
            uncovered(&owner, &[rule(&["get"], &[""], &["configmaps"], &[])]).len(),
            1
        );
        let admin = vec![rule(&["*"], &["*"], &["*"], &[]), url_rule(&["*"], &["*"])];
        assert!(uncovered(&admin, &[url_rule(&["get"], &["/metrics"])]).is_empty());
        assert!(uncovered(&admin, &[rule(&["bind"], &["x"], &["y/z"], &["n"])]).is_empty());
    }

    #[test]
    fn rules_are_described_as_upstream_lists_them() {
        assert_eq!(
            describe(&rule(&["get", "list"], &[""], &["pods"], &[])),
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}"#
        );
    }
}
