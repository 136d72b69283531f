//! ClusterRole aggregation (upstream's `clusterrole-aggregation` controller): a ClusterRole
//! with `aggregationRule.clusterRoleSelectors` holds the union of the rules of every other
//! ClusterRole its selectors match, so `admin`, `edit` and `view` pick up the rules of roles
//! labelled `rbac.authorization.k8s.io/aggregate-to-<role>: "true"`.
//!
//! Invariant: the aggregated rules are exactly the ordered union (selectors in order,
//! matching roles by name, each rule once) of the current matching roles; a change to any
//! ClusterRole re-checks every aggregated one, and only a difference is written.

use super::{run_on_informer, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::api::selector::LabelSelector;
use crate::informers::Change;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, PostParams};
use kube::runtime::reflector::Store;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

pub struct ClusterRoleAggregationController {
    ctx: Context,
    queue: WorkQueue<String>,
}

impl ClusterRoleAggregationController {
    pub fn new(ctx: Context) -> ClusterRoleAggregationController {
        ClusterRoleAggregationController {
            ctx,
            queue: WorkQueue::new(),
        }
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let informer = self.ctx.informers.typed::<ClusterRole>();
        let store = informer.store();
        let reconciler = Arc::new(Reconcile {
            client: self.ctx.client_for("clusterrole-aggregation-controller"),
            roles: store.clone(),
        });
        // Any role may be matched by any aggregation rule: every change re-checks them all
        // (the queue folds repeats of a key).
        let queue = self.queue.clone();
        let key_of = move |_: &Change<ClusterRole>| {
            for r in store.state() {
                if r.aggregation_rule.is_some() {
                    if let Some(name) = &r.metadata.name {
                        queue.add(name.clone());
                    }
                }
            }
            None
        };
        run_on_informer(informer, key_of, reconciler, self.queue, 1, shutdown).await
    }
}

struct Reconcile {
    client: kube::Client,
    roles: Store<ClusterRole>,
}

/// The aggregated rules of `target` over `roles`.
pub fn aggregate(
    target: &ClusterRole,
    roles: &[Arc<ClusterRole>],
) -> Result<Vec<PolicyRule>, String> {
    let mut rules: Vec<PolicyRule> = Vec::new();
    let Some(agg) = &target.aggregation_rule else {
        return Ok(target.rules.clone().unwrap_or_default());
    };
    let mut sorted: Vec<&Arc<ClusterRole>> = roles.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for sel in agg.cluster_role_selectors.iter().flatten() {
        let json = serde_json::to_value(sel).map_err(|e| e.to_string())?;
        let selector = LabelSelector::from_json(&json).map_err(|e| e.to_string())?;
        for role in &sorted {
            if role.metadata.name == target.metadata.name {
                continue;
            }
            let labels = serde_json::to_value(&role.metadata.labels).map_err(|e| e.to_string())?;
            if !selector.matches(labels.as_object()) {
                continue;
            }
            for r in role.rules.iter().flatten() {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
        }
    }
    Ok(rules)
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "clusterrole-aggregation";

    async fn reconcile(&self, name: &String) -> Result<Action, ControllerError> {
        let all = self.roles.state();
        let Some(target) = all.iter().find(|r| r.metadata.name.as_ref() == Some(name)) else {
            return Ok(Action::Done);
        };
        let rules = aggregate(target, &all).map_err(ControllerError::Invalid)?;
        if target.rules.clone().unwrap_or_default() == rules {
            return Ok(Action::Done);
        }
        let mut updated = (**target).clone();
        updated.rules = Some(rules);
        let api: Api<ClusterRole> = Api::all(self.client.clone());
        api.replace(name, &PostParams::default(), &updated).await?;
        Ok(Action::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as Sel, ObjectMeta};

    fn role(name: &str, label: Option<&str>, verb: &str) -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: label.map(|l| [(l.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            rules: Some(vec![PolicyRule {
                verbs: vec![verb.into()],
                api_groups: Some(vec!["example.com".into()]),
                resources: Some(vec!["widgets".into()]),
                ..PolicyRule::default()
            }]),
            aggregation_rule: None,
        })
    }

    #[test]
    fn an_aggregated_role_holds_the_rules_of_the_roles_its_selectors_match() {
        let view = ClusterRole {
            metadata: ObjectMeta {
                name: Some("view".into()),
                ..ObjectMeta::default()
            },
            aggregation_rule: Some(AggregationRule {
                cluster_role_selectors: Some(vec![Sel {
                    match_labels: Some(
                        [(
                            "rbac.authorization.k8s.io/aggregate-to-view".to_owned(),
                            "true".to_owned(),
                        )]
                        .into(),
                    ),
                    ..Sel::default()
                }]),
            }),
            rules: None,
        };
        let roles = vec![
            role(
                "b-widgets",
                Some("rbac.authorization.k8s.io/aggregate-to-view"),
                "list",
            ),
            role(
                "a-widgets",
                Some("rbac.authorization.k8s.io/aggregate-to-view"),
                "get",
            ),
            role("unlabelled", None, "delete"),
            role(
                "dup",
                Some("rbac.authorization.k8s.io/aggregate-to-view"),
                "get",
            ),
        ];
        let rules = aggregate(&view, &roles).unwrap();
        let verbs: Vec<&str> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(
            verbs,
            vec!["get", "list"],
            "sorted by role name, each rule once"
        );
    }
}
