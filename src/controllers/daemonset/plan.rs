//! What one DaemonSet sync does, decided without I/O (upstream's `manage`,
//! `podsShouldBeOnNode` and `rollingUpdate`).
//!
//! Invariants kept:
//! - A node that should run the daemon has one live pod; extra pods (oldest kept), failed
//!   pods and pods on nodes it must leave are deleted.
//! - `RollingUpdate` with `maxSurge: 0` deletes outdated pods so that at most
//!   `maxUnavailable` nodes lack an available pod (unavailable outdated pods go at once);
//!   with `maxSurge > 0` the new pod starts beside the old one on at most `maxSurge` nodes and
//!   the old one goes when the new one is available. `OnDelete` replaces nothing.

#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub name: String,
    /// The `controller-revision-hash` label.
    pub hash: String,
    pub terminating: bool,
    pub failed: bool,
    pub available: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub should_run: bool,
    pub should_continue_running: bool,
    /// Pods created, oldest first.
    pub pods: Vec<PodView>,
    /// A pod was created for this node and the cache has not shown it yet.
    pub creating: bool,
    /// A failed pod was deleted here lately: a failed pod stays (and no new one is made)
    /// until the backoff passes, so a node that rejects the pod is not hot-looped.
    pub failed_backoff: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    OnDelete,
    RollingUpdate {
        max_surge: i32,
        max_unavailable: i32,
    },
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Steps {
    /// Nodes to create a pod for.
    pub create: Vec<String>,
    /// Pods to delete, with whether it is because the pod failed.
    pub delete: Vec<(String, bool)>,
}

/// The steps of one sync for `hash`, the current revision's hash.
pub fn plan(nodes: &[NodeView], update: Update, hash: &str) -> Steps {
    let mut steps = Steps::default();
    let surging = matches!(update, Update::RollingUpdate { max_surge, .. } if max_surge > 0);
    let mut touched: Vec<&str> = Vec::new();
    for n in nodes {
        let before = (steps.create.len(), steps.delete.len());
        let live: Vec<&PodView> = n.pods.iter().filter(|p| !p.terminating).collect();
        if n.should_continue_running || (n.should_run && live.is_empty()) {
            let mut running = Vec::new();
            let mut failed_kept = false;
            for p in &live {
                if p.failed && n.failed_backoff {
                    failed_kept = true;
                } else if p.failed {
                    steps.delete.push((p.name.clone(), true));
                } else {
                    running.push(*p);
                }
            }
            if n.should_run && running.is_empty() && !n.creating && !failed_kept {
                steps.create.push(n.name.clone());
            } else if running.len() > 1 && !surging {
                // Keep the oldest (upstream keeps the oldest too, by creation time).
                steps
                    .delete
                    .extend(running[1..].iter().map(|p| (p.name.clone(), false)));
            }
        } else {
            steps
                .delete
                .extend(live.iter().map(|p| (p.name.clone(), false)));
        }
        if before != (steps.create.len(), steps.delete.len()) {
            touched.push(&n.name);
        }
    }
    if let Update::RollingUpdate {
        max_surge,
        max_unavailable,
    } = update
    {
        // Nodes this sync already acts on count as unavailable and get no further step.
        let nodes: Vec<(&NodeView, bool)> = nodes
            .iter()
            .filter(|n| n.should_run)
            .map(|n| (n, touched.contains(&n.name.as_str())))
            .collect();
        if max_surge > 0 {
            surge(&nodes, max_surge, hash, &mut steps);
        } else {
            replace(&nodes, max_unavailable.max(1), hash, &mut steps);
        }
    }
    steps
}

/// The newest live pod of the current revision and the live pods of older ones.
fn split<'a>(n: &'a NodeView, hash: &str) -> (Option<&'a PodView>, Vec<&'a PodView>) {
    let live = n.pods.iter().filter(|p| !p.terminating && !p.failed);
    let (new, old): (Vec<&PodView>, Vec<&PodView>) = live.partition(|p| p.hash == hash);
    (new.last().copied(), old)
}

fn replace(nodes: &[(&NodeView, bool)], max_unavailable: i32, hash: &str, steps: &mut Steps) {
    let mut unavailable = 0;
    let mut candidates = Vec::new();
    for (n, touched) in nodes {
        if *touched {
            unavailable += 1;
            continue;
        }
        let (new, old) = split(n, hash);
        match (new, old.first()) {
            (_, None) if n.creating => unavailable += 1,
            (None, None) => unavailable += 1,
            (Some(p), None) if !p.available => unavailable += 1,
            (Some(_), None) => {}
            (_, Some(o)) if !o.available => {
                unavailable += 1;
                steps.delete.push((o.name.clone(), false));
            }
            (_, Some(o)) => candidates.push(o.name.clone()),
        }
    }
    let budget = (max_unavailable - unavailable).max(0) as usize;
    steps
        .delete
        .extend(candidates.into_iter().take(budget).map(|n| (n, false)));
}

fn surge(nodes: &[(&NodeView, bool)], max_surge: i32, hash: &str, steps: &mut Steps) {
    let mut surging = 0;
    let mut candidates = Vec::new();
    for (n, touched) in nodes {
        if *touched {
            continue;
        }
        let (new, old) = split(n, hash);
        let Some(o) = old.first() else { continue };
        match new {
            Some(p) if p.available => {
                steps
                    .delete
                    .extend(old.iter().map(|o| (o.name.clone(), false)));
            }
            Some(_) => surging += 1,
            None if n.creating => surging += 1,
            // An old pod that is down anyway is replaced without waiting for a surge slot.
            None if !o.available => steps.create.push(n.name.clone()),
            None => candidates.push(n.name.clone()),
        }
    }
    let budget = (max_surge - surging).max(0) as usize;
    steps.create.extend(candidates.into_iter().take(budget));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, hash: &str, available: bool) -> PodView {
        PodView {
            name: name.into(),
            hash: hash.into(),
            terminating: false,
            failed: false,
            available,
        }
    }

    fn node(name: &str, pods: Vec<PodView>) -> NodeView {
        NodeView {
            name: name.into(),
            should_run: true,
            should_continue_running: true,
            pods,
            creating: false,
            failed_backoff: false,
        }
    }

    const ROLLING: Update = Update::RollingUpdate {
        max_surge: 0,
        max_unavailable: 1,
    };

    #[test]
    fn every_eligible_node_gets_one_pod_and_ineligible_ones_lose_theirs() {
        let mut off = node("n3", vec![pod("p3", "h", true)]);
        off.should_run = false;
        off.should_continue_running = false;
        let nodes = vec![
            node("n1", vec![]),
            node("n2", vec![pod("a", "h", true), pod("b", "h", true)]),
            off,
        ];
        let steps = plan(&nodes, ROLLING, "h");
        assert_eq!(steps.create, vec!["n1".to_string()]);
        assert_eq!(
            steps.delete,
            vec![("b".to_string(), false), ("p3".to_string(), false)]
        );
    }

    #[test]
    fn a_failed_pod_in_backoff_stays_and_gets_no_replacement_yet() {
        let mut p = pod("f", "h", false);
        p.failed = true;
        let mut n = node("n1", vec![p]);
        n.failed_backoff = true;
        assert_eq!(plan(&[n], ROLLING, "h"), Steps::default());
    }

    #[test]
    fn a_failed_daemon_pod_is_deleted_and_replaced() {
        let mut p = pod("a", "h", false);
        p.failed = true;
        let steps = plan(&[node("n1", vec![p])], Update::OnDelete, "h");
        assert_eq!(steps.create, vec!["n1".to_string()]);
        assert_eq!(steps.delete, vec![("a".to_string(), true)]);
    }

    #[test]
    fn a_pod_being_created_is_not_created_twice() {
        let mut n = node("n1", vec![]);
        n.creating = true;
        assert_eq!(plan(&[n], ROLLING, "h"), Steps::default());
    }

    #[test]
    fn rolling_update_replaces_at_most_max_unavailable_nodes_at_a_time() {
        let nodes: Vec<NodeView> = (0..4)
            .map(|i| node(&format!("n{i}"), vec![pod(&format!("p{i}"), "old", true)]))
            .collect();
        let steps = plan(&nodes, ROLLING, "new");
        assert_eq!(steps.delete, vec![("p0".to_string(), false)]);
        let two = Update::RollingUpdate {
            max_surge: 0,
            max_unavailable: 2,
        };
        let mut nodes = nodes;
        nodes[0].pods = vec![pod("q0", "new", false)];
        // n0 is still coming up: one slot left.
        assert_eq!(
            plan(&nodes, two, "new").delete,
            vec![("p1".to_string(), false)]
        );
        assert!(plan(&nodes, Update::OnDelete, "new").delete.is_empty());
    }

    #[test]
    fn surge_starts_the_new_pod_beside_the_old_and_deletes_the_old_once_available() {
        let surge = Update::RollingUpdate {
            max_surge: 1,
            max_unavailable: 0,
        };
        let nodes = vec![
            node("n0", vec![pod("p0", "old", true)]),
            node("n1", vec![pod("p1", "old", true)]),
        ];
        let steps = plan(&nodes, surge, "new");
        assert_eq!(steps.create, vec!["n0".to_string()]);
        assert!(steps.delete.is_empty());
        let nodes = vec![
            node("n0", vec![pod("p0", "old", true), pod("q0", "new", true)]),
            node("n1", vec![pod("p1", "old", true)]),
        ];
        let steps = plan(&nodes, surge, "new");
        assert_eq!(steps.delete, vec![("p0".to_string(), false)]);
        assert_eq!(steps.create, vec!["n1".to_string()]);
    }
}
