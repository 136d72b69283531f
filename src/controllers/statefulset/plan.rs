//! What one StatefulSet sync does to its pods, decided without I/O (upstream's
//! `updateStatefulSet` and `updateStatefulSetAfterInvariantEstablished`).
//!
//! Invariants kept:
//! - `OrderedReady`: at most one pod is created or deleted per sync, ordinal `n+1` only
//!   once `0..=n` are Running and Ready (available after `minReadySeconds`); scale-down
//!   removes the highest ordinal first and only when all lower ones are healthy.
//! - `Parallel`: every missing pod is created and every condemned pod deleted at once.
//! - `RollingUpdate`: pods with ordinal ≥ `partition` and an outdated revision are deleted
//!   highest ordinal first, never leaving more than `maxUnavailable` pods unhealthy;
//!   `OnDelete` never deletes a pod for its revision.

/// What the plan needs to know of one existing pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub name: String,
    pub ordinal: i32,
    /// The `controller-revision-hash` label: the revision name.
    pub revision: String,
    pub terminating: bool,
    /// Phase Succeeded or Failed: the pod is replaced.
    pub finished: bool,
    pub running_ready: bool,
    /// Running, Ready for `minReadySeconds`.
    pub available: bool,
}

impl PodView {
    fn healthy(&self) -> bool {
        self.available && !self.terminating
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    OnDelete,
    RollingUpdate {
        partition: i32,
        max_unavailable: i32,
    },
}

#[derive(Debug, Clone)]
pub struct Input {
    pub start: i32,
    pub replicas: i32,
    /// `podManagementPolicy: Parallel`.
    pub parallel: bool,
    pub update: Update,
    pub update_revision: String,
    pub pods: Vec<PodView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the pod of this ordinal from the update revision (`true`) or the current one.
    Create { ordinal: i32, update: bool },
    /// Delete this pod (finished, condemned by a scale-down, or outdated).
    Delete { name: String },
}

impl Input {
    /// Whether a missing pod of `ordinal` is made from the current revision: ordinals below
    /// the partition stay on it during a rolling update.
    fn stays_current(&self, ordinal: i32) -> bool {
        match self.update {
            Update::RollingUpdate { partition, .. } => ordinal < self.start + partition,
            Update::OnDelete => false,
        }
    }
}

/// The steps of one sync, in the order they are to be taken.
pub fn plan(input: &Input) -> Vec<Step> {
    let ordered = !input.parallel;
    let end = input.start + input.replicas;
    let in_range = |o: i32| o >= input.start && o < end;
    let mut steps = Vec::new();

    let mut slots: Vec<(i32, Option<&PodView>)> = (input.start..end)
        .map(|o| (o, input.pods.iter().find(|p| p.ordinal == o)))
        .collect();
    let mut condemned: Vec<&PodView> = input.pods.iter().filter(|p| !in_range(p.ordinal)).collect();
    condemned.sort_by_key(|p| std::cmp::Reverse(p.ordinal));

    // The lowest-ordinal unhealthy pod may be removed even in order: it blocks nothing.
    let first_unhealthy = slots
        .iter()
        .filter_map(|(_, p)| *p)
        .chain(condemned.iter().rev().copied())
        .find(|p| !p.running_ready || p.terminating)
        .map(|p| p.name.clone());

    for (ordinal, pod) in slots.iter_mut() {
        match pod {
            Some(p) if p.finished && !p.terminating => {
                steps.push(Step::Delete {
                    name: p.name.clone(),
                });
                if ordered {
                    return steps;
                }
            }
            None => {
                steps.push(Step::Create {
                    ordinal: *ordinal,
                    update: !input.stays_current(*ordinal),
                });
                if ordered {
                    return steps;
                }
            }
            Some(p) if ordered && (p.terminating || !p.available) => return steps,
            Some(_) => {}
        }
    }

    for p in &condemned {
        if p.terminating {
            if ordered {
                return steps;
            }
            continue;
        }
        if ordered && !p.running_ready && first_unhealthy.as_deref() != Some(p.name.as_str()) {
            return steps;
        }
        steps.push(Step::Delete {
            name: p.name.clone(),
        });
        if ordered {
            return steps;
        }
    }

    let Update::RollingUpdate {
        partition,
        max_unavailable,
    } = input.update
    else {
        return steps;
    };
    let present: Vec<&PodView> = slots.iter().filter_map(|(_, p)| *p).collect();
    // Creations of this sync count as unavailable.
    let missing = slots.iter().filter(|(_, p)| p.is_none()).count() as i32;
    let unavailable = present.iter().filter(|p| !p.healthy()).count() as i32 + missing;
    let budget = max_unavailable.max(1) - unavailable;
    if budget <= 0 {
        return steps;
    }
    let update_min = input.start + partition;
    let outdated = present
        .iter()
        .rev()
        .filter(|p| p.ordinal >= update_min)
        .filter(|p| p.revision != input.update_revision && !p.terminating)
        .take(budget as usize);
    steps.extend(outdated.map(|p| Step::Delete {
        name: p.name.clone(),
    }));
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ordinal: i32, rev: &str, healthy: bool) -> PodView {
        PodView {
            name: format!("web-{ordinal}"),
            ordinal,
            revision: rev.into(),
            terminating: false,
            finished: false,
            running_ready: healthy,
            available: healthy,
        }
    }

    fn input(replicas: i32, pods: Vec<PodView>) -> Input {
        Input {
            start: 0,
            replicas,
            parallel: false,
            update: Update::RollingUpdate {
                partition: 0,
                max_unavailable: 1,
            },
            update_revision: "r2".into(),
            pods,
        }
    }

    fn create(ordinal: i32) -> Step {
        Step::Create {
            ordinal,
            update: true,
        }
    }

    fn delete(name: &str) -> Step {
        Step::Delete { name: name.into() }
    }

    #[test]
    fn ordered_ready_creates_the_next_ordinal_only_after_the_previous_is_ready() {
        assert_eq!(plan(&input(3, vec![])), vec![create(0)]);
        assert!(plan(&input(3, vec![pod(0, "r2", false)])).is_empty());
        assert_eq!(plan(&input(3, vec![pod(0, "r2", true)])), vec![create(1)]);
    }

    #[test]
    fn parallel_creates_every_missing_ordinal_at_once() {
        let mut i = input(3, vec![pod(1, "r2", false)]);
        i.parallel = true;
        assert_eq!(plan(&i), vec![create(0), create(2)]);
    }

    #[test]
    fn ordinals_start_at_spec_ordinals_start() {
        let mut i = input(2, vec![pod(5, "r2", true)]);
        i.start = 5;
        assert_eq!(plan(&i), vec![create(6)]);
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
        let pods = (0..4).map(|o| pod(o, "r2", true)).collect();
        assert_eq!(plan(&input(2, pods)), vec![delete("web-3")]);
        let mut pods: Vec<_> = (0..4).map(|o| pod(o, "r2", true)).collect();
        pods[3].terminating = true;
        assert!(plan(&input(2, pods)).is_empty());
    }

    #[test]
    fn a_finished_pod_is_deleted_to_be_recreated() {
        let mut p = pod(0, "r2", false);
        p.finished = true;
        assert_eq!(plan(&input(1, vec![p])), vec![delete("web-0")]);
    }

    #[test]
    fn rolling_update_replaces_outdated_pods_from_the_highest_ordinal_down_to_the_partition() {
        let pods: Vec<_> = (0..3).map(|o| pod(o, "r1", true)).collect();
        assert_eq!(plan(&input(3, pods.clone())), vec![delete("web-2")]);
        let mut i = input(3, pods);
        i.update = Update::RollingUpdate {
            partition: 2,
            max_unavailable: 1,
        };
        i.pods[2].revision = "r2".into();
        assert!(plan(&i).is_empty(), "ordinals below the partition stay");
        // A missing pod below the partition is recreated from the current revision.
        i.pods.remove(0);
        assert_eq!(
            plan(&i),
            vec![Step::Create {
                ordinal: 0,
                update: false
            }]
        );
    }

    #[test]
    fn rolling_update_waits_while_a_pod_is_unhealthy_and_honours_max_unavailable() {
        let mut pods: Vec<_> = (0..4).map(|o| pod(o, "r1", true)).collect();
        pods[3].revision = "r2".into();
        pods[3].available = false;
        pods[3].running_ready = false;
        let mut i = input(4, pods);
        i.parallel = true;
        assert!(plan(&i).is_empty());
        i.update = Update::RollingUpdate {
            partition: 0,
            max_unavailable: 3,
        };
        assert_eq!(plan(&i), vec![delete("web-2"), delete("web-1")]);
    }

    #[test]
    fn on_delete_never_deletes_outdated_pods() {
        let pods: Vec<_> = (0..3).map(|o| pod(o, "r1", true)).collect();
        let mut i = input(3, pods);
        i.update = Update::OnDelete;
        assert!(plan(&i).is_empty());
        i.pods.remove(1);
        assert_eq!(plan(&i), vec![create(1)]);
    }
}
