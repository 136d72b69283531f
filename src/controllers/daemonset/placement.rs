//! Which nodes a DaemonSet runs on and the pod it puts there (upstream's
//! `NodeShouldRunDaemonPod`, `AddOrUpdateDaemonPodTolerations` and
//! `ReplaceDaemonSetPodNodeNameNodeAffinity`).
//!
//! A daemon pod is not bound by the controller: it carries a required node-affinity term on
//! the node's `metadata.name` and the scheduler binds it, so resources, ports and preemption
//! are checked as for any pod.

use crate::controllers::controller_utils::new_controller_ref;
use crate::controllers::history::CONTROLLER_REVISION_HASH;
use crate::scheduler::cache::effective_taints;
use crate::scheduler::filters::tolerates;
use crate::scheduler::labels::pod_matches_node_selector_and_affinity;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Whether a node should run the daemon pod, and whether a pod already there may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Selectors match, every `NoSchedule`/`NoExecute` taint tolerated.
    pub should_run: bool,
    /// Selectors match, every `NoExecute` taint tolerated (a later `NoSchedule` taint does
    /// not evict).
    pub should_continue_running: bool,
}

/// The tolerations every daemon pod gets (upstream's `AddOrUpdateDaemonPodTolerations`): it
/// stays through node trouble and is placed on unschedulable or pressured nodes.
pub fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut out = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        out.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    out
}

/// `template`'s tolerations with the defaults added where no equal one is present.
fn with_default_tolerations(template: &PodTemplateSpec) -> Vec<Toleration> {
    let spec = template.spec.clone().unwrap_or_default();
    let mut tols = spec.tolerations.unwrap_or_default();
    for d in default_tolerations(spec.host_network.unwrap_or(false)) {
        if !tols
            .iter()
            .any(|t| t.key == d.key && t.effect == d.effect && t.operator == d.operator)
        {
            tols.push(d);
        }
    }
    tols
}

/// Where `ds` (its current template) stands with `node`.
pub fn placement(ds: &DaemonSet, node: &Node) -> Placement {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let no = Placement {
        should_run: false,
        should_continue_running: false,
    };
    let spec = template.spec.clone().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return no;
    }
    let probe = Pod {
        metadata: template.metadata.clone().unwrap_or_default(),
        spec: Some(spec),
        status: None,
    };
    if !pod_matches_node_selector_and_affinity(&probe, node) {
        return no;
    }
    let tols = with_default_tolerations(&template);
    // With the NoSchedule taint a node that is not Ready implies (upstream's node lifecycle
    // controller puts it there; skiff has none): no new daemon pod there until it is Ready.
    let taints = effective_taints(node);
    let untolerated = |effects: &[&str]| {
        taints
            .iter()
            .filter(|t| effects.contains(&t.effect.as_str()))
            .any(|taint| !tols.iter().any(|t| tolerates(t, taint)))
    };
    Placement {
        should_run: !untolerated(&["NoSchedule", "NoExecute"]),
        should_continue_running: !untolerated(&["NoExecute"]),
    }
}

/// The node a daemon pod is for: its `nodeName`, or the node its `metadata.name` affinity
/// term names (upstream's `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == "metadata.name" && f.operator == "In")
        .and_then(|f| f.values.as_ref()?.first().cloned())
}

/// The daemon pod for `node` from `template` (revision hash `hash`): `generateName`
/// `<ds>-`, the hash label, the default tolerations, and a required node-affinity term on
/// the node's name replacing the template's required terms (they hold on this node).
pub fn new_pod(ds: &DaemonSet, template: &PodTemplateSpec, hash: &str, node: &str) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH.into(), hash.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.tolerations = Some(with_default_tolerations(template));
    let required = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
        }],
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default)
        .required_during_scheduling_ignored_during_execution = Some(required);
    let name = ds.metadata.name.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![new_controller_ref(
                "apps/v1",
                "DaemonSet",
                &ds.metadata,
            )]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(extra_spec: serde_json::Value) -> DaemonSet {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        if let (Some(s), serde_json::Value::Object(e)) = (spec.as_object_mut(), extra_spec) {
            s.extend(e);
        }
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "default", "uid": "d1"},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}
            }
        }))
        .expect("daemonset")
    }

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .expect("node")
    }

    #[test]
    fn node_selectors_and_untolerated_taints_keep_daemon_pods_off_a_node() {
        let plain = node("n1", json!({"role": "edge"}), json!([]));
        assert!(placement(&ds(json!({})), &plain).should_run);
        let selective = ds(json!({"nodeSelector": {"role": "core"}}));
        assert!(!placement(&selective, &plain).should_run);

        let tainted = node(
            "n2",
            json!({}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        );
        let p = placement(&ds(json!({})), &tainted);
        assert!(!p.should_run && p.should_continue_running);
        let tolerant = ds(json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert!(placement(&tolerant, &tainted).should_run);
        let evicting = node(
            "n3",
            json!({}),
            json!([{"key": "dedicated", "effect": "NoExecute"}]),
        );
        assert!(!placement(&ds(json!({})), &evicting).should_continue_running);
    }

    #[test]
    fn a_node_that_is_not_ready_gets_no_new_daemon_pod_but_keeps_its_own() {
        let mut n = node("n1", json!({}), json!([]));
        n.status = None;
        let p = placement(&ds(json!({})), &n);
        assert!(!p.should_run && p.should_continue_running);
    }

    #[test]
    fn unschedulable_and_not_ready_nodes_are_tolerated_by_default() {
        let n = node(
            "n1",
            json!({}),
            json!([
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}
            ]),
        );
        assert!(placement(&ds(json!({})), &n).should_run);
    }

    #[test]
    fn daemon_pods_are_pinned_by_node_name_affinity_for_the_scheduler_to_bind() {
        let d = ds(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "role", "operator": "Exists"}]}]
            }}}}),
        );
        let template = d.spec.as_ref().expect("spec").template.clone();
        let pod = new_pod(&d, &template, "h1", "n7");
        assert_eq!(target_node(&pod).as_deref(), Some("n7"));
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name, None);
        let terms = &spec
            .affinity
            .as_ref()
            .unwrap()
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert!(terms[0].match_expressions.is_none());
        assert_eq!(
            pod.metadata.labels.as_ref().unwrap()[CONTROLLER_REVISION_HASH],
            "h1"
        );
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
        assert!(spec
            .tolerations
            .iter()
            .flatten()
            .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unschedulable")));
    }
}
