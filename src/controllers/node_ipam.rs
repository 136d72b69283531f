//! The node IPAM controller (kube-controller-manager's `node-ipam-controller` with the
//! RangeAllocator, `--allocate-node-cidrs`): every Node without a podCIDR gets the first
//! free /24 of `--cluster-cidr` in `spec.podCIDR` and `spec.podCIDRs`; a deleted Node's
//! range is free again. It acts as upstream's `node-controller` service account.
//!
//! At start the allocations are read back from every Node's `spec.podCIDR` (after the
//! informer's first list, before any reconcile), so a restart never hands out a range twice.
//!
//! Invariant: one worker; a range is recorded for its Node's name before the patch is sent
//! (and released if the patch fails), and asking again for the same name gives the same
//! range, so neither two Nodes share a range nor does one Node get two while the informer
//! has not yet seen the first patch.

use super::{run_workers, Action, Context, ControllerError, Reconciler, Stats, WorkQueue};
use crate::informers::Change;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The size of each node's range.
pub const NODE_MASK: u8 = 24;

/// The /24s of a cluster CIDR and which are taken.
#[derive(Debug)]
pub struct CidrSet {
    base: u32,
    prefix: u8,
    used: BTreeSet<u32>,
    /// Node name → its range index.
    by_node: BTreeMap<String, u32>,
}

impl CidrSet {
    /// `10.42.0.0/16` → 256 ranges. IPv4 only, prefix at most /24.
    pub fn new(cidr: &str) -> Result<CidrSet, String> {
        let (ip, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} is not a CIDR like 10.42.0.0/16"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{cidr:?}: only IPv4 cluster CIDRs are supported"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= NODE_MASK)
            .ok_or_else(|| format!("{cidr:?}: the prefix must be /{NODE_MASK} or shorter"))?;
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        Ok(CidrSet {
            base: u32::from(ip) & mask,
            prefix,
            used: BTreeSet::new(),
            by_node: BTreeMap::new(),
        })
    }

    fn count(&self) -> u32 {
        1 << (NODE_MASK - self.prefix)
    }

    fn render(&self, index: u32) -> String {
        let ip = Ipv4Addr::from(self.base + (index << (32 - NODE_MASK)));
        format!("{ip}/{NODE_MASK}")
    }

    /// The index of a /24 of this set, if `cidr` is one.
    fn index_of(&self, cidr: &str) -> Option<u32> {
        let (ip, prefix) = cidr.split_once('/')?;
        if prefix != NODE_MASK.to_string() {
            return None;
        }
        let ip = u32::from(ip.parse::<Ipv4Addr>().ok()?);
        let offset = ip.checked_sub(self.base)?;
        let index = offset >> (32 - NODE_MASK);
        (offset & 0xff == 0 && index < self.count()).then_some(index)
    }

    /// Records `node`'s existing allocation (false when it is not a range of this set).
    pub fn occupy(&mut self, node: &str, cidr: &str) -> bool {
        match self.index_of(cidr) {
            Some(i) => {
                self.used.insert(i);
                self.by_node.insert(node.to_owned(), i);
                true
            }
            None => false,
        }
    }

    /// Frees `node`'s range.
    pub fn release(&mut self, node: &str) {
        if let Some(i) = self.by_node.remove(node) {
            self.used.remove(&i);
        }
    }

    /// `node`'s range: the one it has, else the first free one.
    pub fn allocate(&mut self, node: &str) -> Option<String> {
        if let Some(i) = self.by_node.get(node) {
            return Some(self.render(*i));
        }
        let free = (0..self.count()).find(|i| !self.used.contains(i))?;
        self.used.insert(free);
        self.by_node.insert(node.to_owned(), free);
        Some(self.render(free))
    }
}

pub struct NodeIpamController {
    ctx: Context,
    cidrs: Arc<Mutex<CidrSet>>,
    queue: WorkQueue<String>,
}

impl NodeIpamController {
    pub fn new(ctx: Context, cluster_cidr: &str) -> Result<NodeIpamController, String> {
        Ok(NodeIpamController {
            ctx,
            cidrs: Arc::new(Mutex::new(CidrSet::new(cluster_cidr)?)),
            queue: WorkQueue::new(),
        })
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.queue.stats()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ControllerError> {
        let informer = self.ctx.informers.typed::<Node>();
        tokio::select! {
            r = informer.synced() => r?,
            _ = shutdown.cancelled() => return Ok(()),
        }
        let store = informer.store();
        // Existing allocations first, so no reconcile hands one out again.
        for node in store.state() {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            if let Some(cidr) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
                if !self.cidrs.lock().occupy(name, cidr) {
                    tracing::warn!(node = ?node.metadata.name, cidr, "node's podCIDR is outside the cluster CIDR");
                }
            }
        }
        let reconciler = Arc::new(Reconcile {
            api: Api::all(self.ctx.client_for("node-controller")),
            store,
            cidrs: self.cidrs.clone(),
        });
        let mut changes = informer.subscribe();
        let feed = self.queue.clone();
        let cidrs = self.cidrs.clone();
        let feeder = async move {
            while let Some(change) = changes.next().await {
                match change {
                    Change::Applied(n) => {
                        let has = n.spec.as_ref().is_some_and(|s| s.pod_cidr.is_some());
                        if let (false, Some(name)) = (has, n.metadata.name.clone()) {
                            feed.add(name);
                        }
                    }
                    Change::Deleted(n) => {
                        if let Some(name) = n.metadata.name.as_deref() {
                            cidrs.lock().release(name);
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = feeder => Err(ControllerError::Invalid(format!("{}: the informer's change feed ended", Reconcile::NAME))),
            _ = run_workers(reconciler, self.queue, 1, shutdown) => Ok(()),
        }
    }
}

struct Reconcile {
    api: Api<Node>,
    store: kube::runtime::reflector::Store<Node>,
    cidrs: Arc<Mutex<CidrSet>>,
}

impl Reconciler for Reconcile {
    type Key = String;
    const NAME: &'static str = "node-ipam";

    async fn reconcile(&self, name: &String) -> Result<Action, ControllerError> {
        let Some(node) = self
            .store
            .get(&kube::runtime::reflector::ObjectRef::new(name))
        else {
            return Ok(Action::Done);
        };
        if node.spec.as_ref().is_some_and(|s| s.pod_cidr.is_some()) {
            return Ok(Action::Done);
        }
        let Some(cidr) = self.cidrs.lock().allocate(name) else {
            tracing::warn!(node = %name, "CIDRNotAvailable: no podCIDR left in the cluster CIDR");
            return Ok(Action::Backoff);
        };
        let patch = serde_json::json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        match self
            .api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(node = %name, pod_cidr = %cidr, "podCIDR allocated");
                Ok(Action::Done)
            }
            Err(e) => {
                self.cidrs.lock().release(name);
                match e {
                    kube::Error::Api(s) if s.code == 404 => Ok(Action::Done),
                    e => Err(e.into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_handed_out_in_order_and_reused_after_release() {
        let mut s = CidrSet::new("10.42.0.0/16").unwrap();
        assert_eq!(s.allocate("a").unwrap(), "10.42.0.0/24");
        assert_eq!(s.allocate("b").unwrap(), "10.42.1.0/24");
        assert!(s.occupy("c", "10.42.2.0/24"));
        assert_eq!(s.allocate("d").unwrap(), "10.42.3.0/24");
        s.release("b");
        assert_eq!(s.allocate("e").unwrap(), "10.42.1.0/24");
        assert!(!s.occupy("x", "10.43.0.0/24"));
        assert!(!s.occupy("x", "10.42.0.5/24"));
        assert!(!s.occupy("x", "10.42.0.0/25"));
    }

    #[test]
    fn asking_again_for_a_node_gives_its_range_not_a_new_one() {
        let mut s = CidrSet::new("10.42.0.0/16").unwrap();
        assert_eq!(s.allocate("n1").unwrap(), "10.42.0.0/24");
        assert_eq!(s.allocate("n1").unwrap(), "10.42.0.0/24");
        assert_eq!(s.allocate("n2").unwrap(), "10.42.1.0/24");
    }

    #[test]
    fn a_full_cluster_cidr_has_no_more_ranges() {
        let mut s = CidrSet::new("10.42.0.0/23").unwrap();
        assert!(s.allocate("a").is_some());
        assert!(s.allocate("b").is_some());
        assert!(s.allocate("c").is_none());
        assert!(CidrSet::new("10.42.0.0/25").is_err());
        assert!(CidrSet::new("fd00::/48").is_err());
        assert!(CidrSet::new("10.42.0.0").is_err());
    }
}
