//! The dependency graph: every object the collector has seen, its owners (from
//! `metadata.ownerReferences`) and its dependents, keyed by UID. Owners known only from a
//! reference are *virtual* nodes until an informer shows them (or the API says they do not
//! exist).
//!
//! Pure data: changes go in ([`Graph::observe`], [`Graph::remove`]) and the work they imply
//! comes out as [`Work`] items for the collector's queue, so the rules are unit-tested
//! without an API server.

use std::collections::{HashMap, HashSet};
use std::fmt;

pub type Uid = String;

/// The `foregroundDeletion` finalizer: the owner waits for its blocking dependents.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The `orphan` finalizer: the owner waits until its dependents no longer point at it.
pub const ORPHAN: &str = "orphan";

/// Which object a node stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub api_version: String,
    pub kind: String,
    /// For a virtual node: the namespace of the dependent that named it (a namespaced owner
    /// lives there).
    pub namespace: Option<String>,
    pub name: String,
    pub uid: Uid,
}

/// One entry of `metadata.ownerReferences`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: Uid,
    pub block_owner_deletion: bool,
}

/// What an informer showed of one object.
#[derive(Debug, Clone)]
pub struct Observed {
    pub identity: Identity,
    pub owners: Vec<OwnerRef>,
    pub being_deleted: bool,
    pub finalizers: Vec<String>,
}

/// Work the graph asks of the collector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Work {
    /// Check the object's owners; delete it when none is left, or finish its foreground
    /// deletion; for a virtual node, ask the API whether the owner exists.
    AttemptToDelete(Uid),
    /// Remove the object's UID from its dependents' owner references, then its `orphan`
    /// finalizer.
    Orphan(Uid),
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Work::AttemptToDelete(u) => write!(f, "delete-check {u}"),
            Work::Orphan(u) => write!(f, "orphan {u}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    identity: Identity,
    owners: Vec<OwnerRef>,
    dependents: HashSet<Uid>,
    is_virtual: bool,
    being_deleted: bool,
    deleting_dependents: bool,
}

/// A copy of what a worker needs to know about one node.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub identity: Identity,
    pub is_virtual: bool,
    pub deleting_dependents: bool,
    pub dependents: Vec<Identity>,
    /// Some dependent is itself waiting in foreground deletion (a possible ownership cycle).
    pub a_dependent_is_deleting_dependents: bool,
    /// Dependents whose reference to this node has `blockOwnerDeletion: true`.
    pub blocking_dependents: Vec<(Identity, bool)>,
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<Uid, Node>,
}

impl Graph {
    /// An object was added or changed.
    pub fn observe(&mut self, obj: Observed) -> Vec<Work> {
        let mut work = Vec::new();
        let uid = obj.identity.uid.clone();
        let old_owners = match self.nodes.get_mut(&uid) {
            Some(node) => {
                node.identity = obj.identity.clone();
                node.is_virtual = false;
                std::mem::replace(&mut node.owners, obj.owners.clone())
            }
            None => {
                self.nodes.insert(
                    uid.clone(),
                    Node {
                        identity: obj.identity.clone(),
                        owners: obj.owners.clone(),
                        dependents: HashSet::new(),
                        is_virtual: false,
                        being_deleted: false,
                        deleting_dependents: false,
                    },
                );
                Vec::new()
            }
        };
        // Owners no longer named: unlink; a waiting owner may be able to finish now.
        for gone in old_owners
            .iter()
            .filter(|o| !obj.owners.iter().any(|n| n.uid == o.uid))
        {
            self.unlink(&gone.uid, &uid, &mut work);
        }
        // Owners that stopped blocking: a waiting owner may be able to finish now.
        for was in &old_owners {
            let unblocked = was.block_owner_deletion
                && obj
                    .owners
                    .iter()
                    .any(|n| n.uid == was.uid && !n.block_owner_deletion);
            if unblocked
                && self
                    .nodes
                    .get(&was.uid)
                    .is_some_and(|o| o.deleting_dependents)
            {
                work.push(Work::AttemptToDelete(was.uid.clone()));
            }
        }
        // New owners: link, creating virtual nodes for owners not seen yet.
        for owner in obj
            .owners
            .iter()
            .filter(|o| !old_owners.iter().any(|p| p.uid == o.uid))
        {
            match self.nodes.get_mut(&owner.uid) {
                Some(o) => {
                    o.dependents.insert(uid.clone());
                    if o.deleting_dependents {
                        work.push(Work::AttemptToDelete(uid.clone()));
                    }
                    if o.is_virtual {
                        // The owner may have been removed already (this node stands in for
                        // it while older dependents remain, and their checks are queued or
                        // done): check it again, so the new dependent is not left behind.
                        work.push(Work::AttemptToDelete(owner.uid.clone()));
                    }
                }
                None => {
                    let mut dependents = HashSet::new();
                    dependents.insert(uid.clone());
                    self.nodes.insert(
                        owner.uid.clone(),
                        Node {
                            identity: Identity {
                                api_version: owner.api_version.clone(),
                                kind: owner.kind.clone(),
                                namespace: obj.identity.namespace.clone(),
                                name: owner.name.clone(),
                                uid: owner.uid.clone(),
                            },
                            owners: Vec::new(),
                            dependents,
                            is_virtual: true,
                            being_deleted: false,
                            deleting_dependents: false,
                        },
                    );
                    work.push(Work::AttemptToDelete(owner.uid.clone()));
                }
            }
        }
        // Deletion states.
        let foreground = obj.being_deleted && obj.finalizers.iter().any(|f| f == FOREGROUND);
        let orphan = obj.being_deleted && obj.finalizers.iter().any(|f| f == ORPHAN);
        if let Some(node) = self.nodes.get_mut(&uid) {
            node.being_deleted = obj.being_deleted;
            node.deleting_dependents = foreground;
            if foreground {
                work.push(Work::AttemptToDelete(uid.clone()));
                work.extend(node.dependents.iter().cloned().map(Work::AttemptToDelete));
            }
        }
        if orphan {
            work.push(Work::Orphan(uid));
        }
        work
    }

    /// An object is gone (deleted, or a virtual owner the API does not have).
    pub fn remove(&mut self, uid: &str) -> Vec<Work> {
        let mut work = Vec::new();
        let Some(node) = self.nodes.remove(uid) else {
            return work;
        };
        // Dependents lost an owner: check whether they should go too. Their references to
        // the removed UID stay; a virtual node stands in for it while any remain.
        if !node.dependents.is_empty() {
            work.extend(node.dependents.iter().cloned().map(Work::AttemptToDelete));
            if !node.is_virtual {
                self.nodes.insert(
                    uid.to_owned(),
                    Node {
                        is_virtual: true,
                        owners: Vec::new(),
                        being_deleted: false,
                        deleting_dependents: false,
                        ..node.clone()
                    },
                );
            }
        }
        for owner in &node.owners {
            self.unlink(&owner.uid, uid, &mut work);
        }
        work
    }

    /// Removes a virtual node the API confirmed absent; returns its dependents' work.
    pub fn remove_virtual(&mut self, uid: &str) -> Vec<Work> {
        match self.nodes.get(uid) {
            Some(n) if n.is_virtual => {}
            _ => return Vec::new(),
        }
        let node = self.nodes.remove(uid).expect("checked above");
        node.dependents
            .into_iter()
            .map(Work::AttemptToDelete)
            .collect()
    }

    fn unlink(&mut self, owner: &str, dependent: &str, work: &mut Vec<Work>) {
        let Some(o) = self.nodes.get_mut(owner) else {
            return;
        };
        o.dependents.remove(dependent);
        if o.deleting_dependents {
            work.push(Work::AttemptToDelete(owner.to_owned()));
        }
        if o.is_virtual && o.dependents.is_empty() {
            self.nodes.remove(owner);
        }
    }

    pub fn view(&self, uid: &str) -> Option<NodeView> {
        let node = self.nodes.get(uid)?;
        let mut dependents = Vec::new();
        let mut blocking = Vec::new();
        let mut a_dependent_is_deleting_dependents = false;
        for d in &node.dependents {
            let Some(dep) = self.nodes.get(d) else {
                continue;
            };
            dependents.push(dep.identity.clone());
            a_dependent_is_deleting_dependents |= dep.deleting_dependents;
            if dep
                .owners
                .iter()
                .any(|o| o.uid == uid && o.block_owner_deletion)
            {
                blocking.push((dep.identity.clone(), dep.being_deleted));
            }
        }
        Some(NodeView {
            identity: node.identity.clone(),
            is_virtual: node.is_virtual,
            deleting_dependents: node.deleting_dependents,
            dependents,
            a_dependent_is_deleting_dependents,
            blocking_dependents: blocking,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: &str, name: &str, uid: &str) -> Identity {
        Identity {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: Some("ns".into()),
            name: name.into(),
            uid: uid.into(),
        }
    }

    fn owner(uid: &str, block: bool) -> OwnerRef {
        OwnerRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("owner-{uid}"),
            uid: uid.into(),
            block_owner_deletion: block,
        }
    }

    fn obs(name: &str, uid: &str, owners: Vec<OwnerRef>) -> Observed {
        Observed {
            identity: id("ConfigMap", name, uid),
            owners,
            being_deleted: false,
            finalizers: vec![],
        }
    }

    #[test]
    fn an_owner_not_seen_yet_becomes_a_virtual_node_that_is_checked() {
        let mut g = Graph::default();
        let work = g.observe(obs("dep", "d1", vec![owner("o1", false)]));
        assert_eq!(work, vec![Work::AttemptToDelete("o1".into())]);
        let v = g.view("o1").unwrap();
        assert!(v.is_virtual);
        assert_eq!(v.identity.namespace.as_deref(), Some("ns"));
        assert_eq!(v.dependents.len(), 1);
        // The owner shows up: no longer virtual, no more work.
        assert!(g.observe(obs("owner-o1", "o1", vec![])).is_empty());
        assert!(!g.view("o1").unwrap().is_virtual);
    }

    #[test]
    fn deleting_an_owner_queues_its_dependents() {
        let mut g = Graph::default();
        g.observe(obs("owner", "o1", vec![]));
        g.observe(obs("a", "a1", vec![owner("o1", false)]));
        g.observe(obs("b", "b1", vec![owner("o1", false)]));
        let mut work = g.remove("o1");
        work.sort_by_key(|w| w.to_string());
        assert_eq!(
            work,
            vec![
                Work::AttemptToDelete("a1".into()),
                Work::AttemptToDelete("b1".into())
            ]
        );
        // The dependents still name it; it stays as a virtual stand-in until they are gone.
        assert!(g.view("o1").unwrap().is_virtual);
        g.remove("a1");
        g.remove("b1");
        assert!(
            g.view("o1").is_none(),
            "the stand-in goes with its last dependent"
        );
    }

    #[test]
    fn a_dependent_seen_after_its_owner_was_removed_gets_the_owner_checked_again() {
        // A ReplicaSet deleted while its controller was creating one more pod: the pod's
        // ADDED can come after the owner's DELETED (separate informers).
        let mut g = Graph::default();
        g.observe(obs("rs", "o1", vec![]));
        g.observe(obs("pod-a", "a1", vec![owner("o1", false)]));
        assert_eq!(g.remove("o1"), vec![Work::AttemptToDelete("a1".into())]);
        let work = g.observe(obs("pod-late", "late", vec![owner("o1", false)]));
        assert_eq!(work, vec![Work::AttemptToDelete("o1".into())]);
        // The check finds it absent: both dependents are checked.
        let mut work = g.remove_virtual("o1");
        work.sort_by_key(|w| w.to_string());
        assert_eq!(
            work,
            vec![
                Work::AttemptToDelete("a1".into()),
                Work::AttemptToDelete("late".into())
            ]
        );
    }

    #[test]
    fn foreground_deletion_queues_the_owner_and_its_dependents_and_reports_blockers() {
        let mut g = Graph::default();
        g.observe(obs("owner", "o1", vec![]));
        g.observe(obs("a", "a1", vec![owner("o1", true)]));
        g.observe(obs("b", "b1", vec![owner("o1", false)]));
        let mut deleting = obs("owner", "o1", vec![]);
        deleting.being_deleted = true;
        deleting.finalizers = vec![FOREGROUND.into()];
        let work = g.observe(deleting);
        assert!(work.contains(&Work::AttemptToDelete("o1".into())));
        assert!(work.contains(&Work::AttemptToDelete("a1".into())));
        assert!(work.contains(&Work::AttemptToDelete("b1".into())));
        let v = g.view("o1").unwrap();
        assert!(v.deleting_dependents);
        assert_eq!(v.blocking_dependents.len(), 1);
        assert_eq!(v.blocking_dependents[0].0.uid, "a1");
        // The blocker leaves: the owner is checked again.
        let work = g.remove("a1");
        assert!(work.contains(&Work::AttemptToDelete("o1".into())));
        assert!(g.view("o1").unwrap().blocking_dependents.is_empty());
    }

    #[test]
    fn unblocking_a_reference_wakes_the_waiting_owner() {
        let mut g = Graph::default();
        let mut deleting = obs("owner", "o1", vec![]);
        deleting.being_deleted = true;
        deleting.finalizers = vec![FOREGROUND.into()];
        g.observe(deleting);
        g.observe(obs("a", "a1", vec![owner("o1", true)]));
        let work = g.observe(obs("a", "a1", vec![owner("o1", false)]));
        assert_eq!(work, vec![Work::AttemptToDelete("o1".into())]);
    }

    #[test]
    fn the_orphan_finalizer_asks_for_orphaning() {
        let mut g = Graph::default();
        let mut o = obs("owner", "o1", vec![]);
        o.being_deleted = true;
        o.finalizers = vec![ORPHAN.into()];
        assert_eq!(g.observe(o), vec![Work::Orphan("o1".into())]);
    }

    #[test]
    fn a_virtual_owner_confirmed_absent_releases_its_dependents() {
        let mut g = Graph::default();
        g.observe(obs("dep", "d1", vec![owner("ghost", false)]));
        assert_eq!(
            g.remove_virtual("ghost"),
            vec![Work::AttemptToDelete("d1".into())]
        );
        assert!(g.view("ghost").is_none());
        assert!(
            g.remove_virtual("d1").is_empty(),
            "real nodes are not removed"
        );
    }

    #[test]
    fn dropping_an_owner_reference_unlinks_the_dependent() {
        let mut g = Graph::default();
        g.observe(obs("owner", "o1", vec![]));
        g.observe(obs("a", "a1", vec![owner("o1", false)]));
        g.observe(obs("a", "a1", vec![]));
        assert!(g.view("o1").unwrap().dependents.is_empty());
    }
}
