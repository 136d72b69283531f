//! [`NodeNetwork`]: the node's pod network, the [`PodNetwork`] the kubelet uses. It owns
//! the bridge (gateway = first address of the podCIDR), one namespace + veth + address
//! per pod, the NAT table, and the per-pod files under `<state-dir>/pods/<id>/`.
//!
//! Invariants:
//! - Everything a pod holds is recorded under the state dir before `setup` returns
//!   (`pods/<id>/sandbox.json`, the IPAM file, the namespace pin), so after an agent
//!   restart `setup` gives the same sandbox back and `teardown` finds what to remove.
//! - The NAT table is a function of the recorded hostPorts (`rules::NatPlan`); it is
//!   replaced whole on open and after every change to the mappings.
//! - A namespace switch happens only on a dedicated thread (`netns`).
//! - Calls for one pod are serialized; calls for different pods run concurrently.

use super::files;
use super::ipam::{Ipam, Ipv4Net};
use super::links;
use super::netns;
use super::nft;
use super::rules::NatPlan;
use super::{NetworkError, PodNetwork, PortMapping, Sandbox, SandboxRequest};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use rtnetlink::Handle;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use tracing::Instrument;

/// How long a gone pod's veth may outlive the release of its namespace before it is deleted
/// by name (it normally goes with the namespace within milliseconds).
const STALE_VETH_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// How a node's pod network is set up.
#[derive(Debug, Clone)]
pub struct NodeNetworkConfig {
    /// This node's podCIDR (`Node.spec.podCIDR`), e.g. 10.42.0.0/24.
    pub pod_cidr: Ipv4Net,
    /// The whole cluster's pod range (10.42.0.0/16): traffic to it is not masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// The bridge, also the name of the NAT table.
    pub bridge: String,
    /// `<agent-dir>/network`.
    pub state_dir: PathBuf,
    /// Where the host's resolvers are read (see `files::default_host_resolv_conf`).
    pub host_resolv_conf: PathBuf,
    /// The host's hosts file, the base of host-network pods' `/etc/hosts`.
    pub host_hosts: PathBuf,
    pub mtu: u32,
}

impl NodeNetworkConfig {
    pub fn new(pod_cidr: Ipv4Net, cluster_cidr: Ipv4Net, state_dir: PathBuf) -> Self {
        NodeNetworkConfig {
            pod_cidr,
            cluster_cidr,
            bridge: "skiff0".into(),
            state_dir,
            host_resolv_conf: files::default_host_resolv_conf(),
            host_hosts: PathBuf::from("/etc/hosts"),
            mtu: 1500,
        }
    }
}

/// What is recorded of a pod (`pods/<id>/sandbox.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct PodRecord {
    id: String,
    host_network: bool,
    ip: Option<Ipv4Addr>,
    ports: Vec<PortMapping>,
}

struct State {
    ipam: Ipam,
    records: HashMap<String, PodRecord>,
}

pub struct NodeNetwork {
    cfg: NodeNetworkConfig,
    rtnl: Handle,
    bridge_index: u32,
    state: Mutex<State>,
    pod_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Held while the NAT table is rendered and applied, so a later change never gets
    /// overwritten by an earlier snapshot.
    nat: Mutex<u32>,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Io { what, source }
}

/// The host end of a pod's veth: derived from the pod id so it is found again after a
/// restart even if the record was never written.
pub fn host_veth_name(pod_id: &str) -> String {
    let digest = Sha256::digest(pod_id.as_bytes());
    format!("veth{}", &hex::encode(digest)[..8])
}

fn check_pod_id(id: &str) -> Result<(), NetworkError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(NetworkError::Io {
            what: format!("pod id {id:?}"),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "want letters, digits, '-', '_' or '.'",
            ),
        })
    }
}

fn write_sysctl(path: &str, value: &str) -> Result<(), NetworkError> {
    std::fs::write(path, value).map_err(io(format!("writing {path}")))
}

impl NodeNetwork {
    /// Creates or adopts the bridge, turns on forwarding, loads the recorded pods and
    /// installs the NAT table. Must run inside a tokio runtime (the netlink connection
    /// is spawned on it) and in the network namespace the node's bridge belongs to.
    pub async fn open(cfg: NodeNetworkConfig) -> Result<Self, NetworkError> {
        if !cfg.pod_cidr.contains(cfg.pod_cidr.gateway())
            || !cfg.cluster_cidr.contains(cfg.pod_cidr.network())
        {
            return Err(NetworkError::Io {
                what: format!("pod CIDR {}", cfg.pod_cidr),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("must lie inside the cluster CIDR {}", cfg.cluster_cidr),
                ),
            });
        }
        let b = &cfg.bridge;
        if b.is_empty() || b.len() > 15 || b.contains(['/', ' ']) || b == "." || b == ".." {
            return Err(NetworkError::Io {
                what: format!("bridge name {b:?}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "want 1 to 15 characters without '/' or spaces",
                ),
            });
        }
        for dir in ["pods", "netns", "ipam"] {
            let d = cfg.state_dir.join(dir);
            std::fs::create_dir_all(&d).map_err(io(format!("creating {}", d.display())))?;
        }
        let rtnl = links::connect()?;

        let bridge_index = links::ensure_bridge(
            &rtnl,
            &cfg.bridge,
            cfg.mtu,
            cfg.pod_cidr.gateway(),
            cfg.pod_cidr.prefix(),
        )
        .await?;
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")?;
        // The host's own connections to 127.0.0.1:hostPort are DNATed to a pod and must
        // be routable out of the bridge with their loopback source (then masqueraded).
        write_sysctl(
            &format!("/proc/sys/net/ipv4/conf/{}/route_localnet", cfg.bridge),
            "1",
        )?;

        let ipam = Ipam::open(&cfg.state_dir.join("ipam"), cfg.pod_cidr)?;
        let mut records = HashMap::new();
        let pods_dir = cfg.state_dir.join("pods");
        if let Ok(entries) = std::fs::read_dir(&pods_dir) {
            for entry in entries.flatten() {
                let path = entry.path().join("sandbox.json");
                if let Some(rec) = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<PodRecord>(&b).ok())
                {
                    records.insert(rec.id.clone(), rec);
                }
            }
        }
        let net = NodeNetwork {
            cfg,
            rtnl,
            bridge_index,
            state: Mutex::new(State { ipam, records }),
            pod_locks: Mutex::new(HashMap::new()),
            nat: Mutex::new(1),
        };
        net.sync_nat()?;
        Ok(net)
    }

    pub fn config(&self) -> &NodeNetworkConfig {
        &self.cfg
    }

    fn pod_dir(&self, id: &str) -> PathBuf {
        self.cfg.state_dir.join("pods").join(id)
    }

    /// Where the pod's namespace is pinned.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.cfg.state_dir.join("netns").join(id)
    }

    fn pod_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.pod_locks
            .lock()
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    fn sandbox_of(&self, rec: &PodRecord) -> Sandbox {
        let dir = self.pod_dir(&rec.id);
        Sandbox {
            netns: (!rec.host_network).then(|| self.netns_path(&rec.id)),
            ip: rec.ip.map(IpAddr::V4),
            hosts_file: dir.join("hosts"),
            resolv_conf: dir.join("resolv.conf"),
        }
    }

    /// Renders the NAT table from the recorded mappings and replaces it in the kernel.
    fn sync_nat(&self) -> Result<(), NetworkError> {
        let mut seq = self.nat.lock();
        let table = {
            let state = self.state.lock();
            let mut recs: Vec<&PodRecord> = state.records.values().collect();
            recs.sort_by(|a, b| a.id.cmp(&b.id));
            let mappings = recs
                .iter()
                .filter_map(|r| r.ip.map(|ip| (ip, &r.ports)))
                .flat_map(|(ip, ports)| ports.iter().map(move |p| (ip, p)))
                .collect();
            NatPlan {
                table: &self.cfg.bridge,
                bridge: &self.cfg.bridge,
                pod_cidr: self.cfg.pod_cidr,
                cluster_cidr: self.cfg.cluster_cidr,
                mappings,
            }
            .table()
        };
        let batch = table.replace_batch(*seq);
        *seq = seq.wrapping_add(batch.acks + 2);
        nft::apply(&batch).map_err(|e| NetworkError::Netlink(e.to_string()))
    }

    /// Reserves the pod's hostPorts and address in memory (and the address on disk).
    fn reserve(&self, req: &SandboxRequest) -> Result<PodRecord, NetworkError> {
        let mut state = self.state.lock();
        let ports = if req.host_network {
            Vec::new()
        } else {
            req.port_mappings.clone()
        };
        for p in &ports {
            let taken = state.records.values().filter(|r| r.id != req.id).any(|r| {
                r.ports.iter().any(|q| {
                    q.protocol == p.protocol
                        && q.host_port == p.host_port
                        && (q.host_ip.is_none() || p.host_ip.is_none() || q.host_ip == p.host_ip)
                })
            });
            if taken {
                return Err(NetworkError::HostPortInUse {
                    port: p.host_port,
                    protocol: p.protocol,
                });
            }
        }
        let ip = if req.host_network {
            // A pod that turned into a host-network one keeps no address.
            state.ipam.release(&req.id)?;
            None
        } else {
            Some(state.ipam.allocate(&req.id)?)
        };
        let rec = PodRecord {
            id: req.id.clone(),
            host_network: req.host_network,
            ip,
            ports,
        };
        state.records.insert(req.id.clone(), rec.clone());
        Ok(rec)
    }

    fn write_files(&self, req: &SandboxRequest, rec: &PodRecord) -> Result<(), NetworkError> {
        let dir = self.pod_dir(&req.id);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let hosts = match rec.ip {
            Some(ip) => files::pod_hosts(req, IpAddr::V4(ip)),
            None => {
                let host = std::fs::read_to_string(&self.cfg.host_hosts)
                    .map_err(io(format!("reading {}", self.cfg.host_hosts.display())))?;
                files::host_network_hosts(&host, &req.host_aliases)
            }
        };
        let host_dns = if req.dns.nameservers.is_empty() {
            let c = std::fs::read_to_string(&self.cfg.host_resolv_conf).map_err(io(format!(
                "reading {}",
                self.cfg.host_resolv_conf.display()
            )))?;
            files::parse_resolv_conf(&c)
        } else {
            Default::default()
        };
        let resolv = files::render_resolv_conf(&files::effective_dns(&req.dns, &host_dns));
        for (name, content) in [("hosts", hosts), ("resolv.conf", resolv)] {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, content)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(io(format!("writing {}", path.display())))?;
        }
        Ok(())
    }

    fn persist(&self, rec: &PodRecord) -> Result<(), NetworkError> {
        let dir = self.pod_dir(&rec.id);
        let path = dir.join("sandbox.json");
        let tmp = dir.join(".sandbox.json.tmp");
        let bytes = serde_json::to_vec(rec).map_err(|e| NetworkError::Io {
            what: "encoding the pod record".into(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(io(format!("writing {}", path.display())))
    }

    /// Whether the pod's kernel state is all there (namespace pinned, veth present). A
    /// veth that lost its bridge (the bridge was deleted and recreated at open) is put
    /// back on it: the pod's containers keep their namespace.
    async fn wired(&self, id: &str) -> Result<bool, NetworkError> {
        if !netns::is_pinned(&self.netns_path(id)) {
            return Ok(false);
        }
        links::ensure_attached(&self.rtnl, &host_veth_name(id), self.bridge_index).await
    }

    /// Namespace, veth into the bridge, eth0 with the address and the default route.
    async fn wire(&self, id: &str, ip: Ipv4Addr) -> Result<(), NetworkError> {
        let pin = self.netns_path(id);
        netns::create(pin.clone())
            .await
            .map_err(io(format!("creating namespace {}", pin.display())))?;
        let ns = std::fs::File::open(&pin).map_err(io(format!("opening {}", pin.display())))?;
        let veth = host_veth_name(id);
        // Names are hashes of pod ids: a link of this name that another live pod's name
        // also hashes to is that pod's, never a stale one of ours.
        let ours = !self
            .state
            .lock()
            .records
            .keys()
            .any(|other| other != id && host_veth_name(other) == veth);
        // A netlink connection of its own: a connection sends its next request only after
        // its task has handled the previous answer (netlink-proto sends one message per
        // poll), so on the node's shared one a burst of pods queued one round trip and one
        // turn of the busy runtime each. With 100 pods at once this step took 455 ms on
        // average (1,065 ms at most); with one connection each, 237 ms (380 ms), waiting
        // mostly for the CPU the burst saturates: one iproute2 process makes 100
        // namespaces with such pairs in ~90 ms. A pod alone: 0.9 ms.
        let rtnl = links::connect()?;
        links::create_pod_veth(&rtnl, &veth, self.cfg.mtu, self.bridge_index, &ns, ours).await?;
        drop(ns);
        let cidr = self.cfg.pod_cidr;
        links::configure_pod_side(&pin, ip, cidr.prefix(), cidr.gateway()).await
    }

    /// Removes whatever kernel state the pod has (veth, namespace) at once, so the same
    /// names can be wired again; leaves the records.
    async fn unwire(&self, id: &str) -> Result<(), NetworkError> {
        links::delete_link(&self.rtnl, &host_veth_name(id)).await?;
        let pin = self.netns_path(id);
        netns::remove(&pin).map_err(io(format!("removing namespace {}", pin.display())))
    }

    /// The teardown of a pod that is gone: its namespace is released and the kernel takes
    /// the veth pair down with it. Deleting each veth ourselves held the rtnl lock ~30 ms
    /// per pod, and a node deleting 100 pods made every new pod's veth wait ~3 s behind
    /// them; the kernel destroys dying namespaces' devices in batches, off that path. A
    /// veth without a namespace (a setup cut short) is deleted by name.
    async fn release_wiring(&self, id: &str) -> Result<(), NetworkError> {
        let pin = self.netns_path(id);
        if !netns::is_pinned(&pin) {
            return self.unwire(id).await;
        }
        netns::remove(&pin).map_err(io(format!("removing namespace {}", pin.display())))?;
        // Something may still hold the namespace (a port-forward being torn down, a process
        // that outlived its container): its veth would stay on the bridge, answering for an
        // address IPAM has released. Whatever is left later is deleted by name.
        let (rtnl, veth) = (self.rtnl.clone(), host_veth_name(id));
        tokio::spawn(async move {
            tokio::time::sleep(STALE_VETH_AFTER).await;
            if let Err(e) = links::delete_link(&rtnl, &veth).await {
                tracing::debug!(%veth, error = %e, "deleting a gone pod's veth");
            }
        });
        Ok(())
    }

    async fn setup_locked(&self, req: SandboxRequest) -> Result<Sandbox, NetworkError> {
        let existing = self.state.lock().records.get(&req.id).cloned();
        if let Some(rec) = &existing {
            let dir = self.pod_dir(&rec.id);
            let files_ok = dir.join("sandbox.json").exists();
            if rec.host_network == req.host_network
                && files_ok
                && (rec.host_network || self.wired(&rec.id).await?)
            {
                return Ok(self.sandbox_of(rec));
            }
            // Half set up (agent killed mid-way) or changed: start over, same address.
            self.unwire(&req.id).await?;
        }
        let rec = self.reserve(&req)?;
        let result = async {
            self.write_files(&req, &rec)?;
            if let Some(ip) = rec.ip {
                self.wire(&rec.id, ip).await?;
            }
            self.persist(&rec)?;
            if !rec.ports.is_empty() || existing.is_some_and(|e| !e.ports.is_empty()) {
                self.sync_nat()?;
            }
            Ok(self.sandbox_of(&rec))
        }
        .await;
        if result.is_err() {
            // The pod will be set up again under the same names: undone at once.
            let _ = self.teardown_locked(&req.id, false).await;
        }
        result
    }

    /// Removes the pod's wiring, address, record and files. `gone`: the pod will not be
    /// set up again, so its veth may go with its namespace ([`Self::release_wiring`]).
    async fn teardown_locked(&self, id: &str, gone: bool) -> Result<(), NetworkError> {
        if gone {
            self.release_wiring(id).await?;
        } else {
            self.unwire(id).await?;
        }
        let had_ports = {
            let mut state = self.state.lock();
            state.ipam.release(id)?;
            state
                .records
                .remove(id)
                .is_some_and(|r| !r.ports.is_empty())
        };
        if had_ports {
            self.sync_nat()?;
        }
        let dir = self.pod_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io(format!("removing {}", dir.display()))(e))
            }
            _ => Ok(()),
        }
    }

    /// Deletes the NAT table and the bridge (the node leaves): for tests and for
    /// `skiff agent` clean-up. Pods must have been torn down first.
    pub async fn uninstall(self) -> Result<(), NetworkError> {
        {
            let _seq = self.nat.lock();
            nft::apply(&nft::Table::delete_batch(&self.cfg.bridge, 1))
                .map_err(|e| NetworkError::Netlink(e.to_string()))?;
        }
        links::delete_link_index(&self.rtnl, self.bridge_index).await
    }
}

impl PodNetwork for NodeNetwork {
    fn setup(&self, req: SandboxRequest) -> BoxFuture<'_, Result<Sandbox, NetworkError>> {
        Box::pin(async move {
            check_pod_id(&req.id)?;
            let lock = self.pod_lock(&req.id);
            let _held = lock.lock().await;
            let span = tracing::debug_span!(
                "pod_network_setup",
                pod = %req.id,
                ns = %req.namespace,
                name = %req.name
            );
            self.setup_locked(req).instrument(span).await
        })
    }

    fn teardown(&self, pod_id: &str) -> BoxFuture<'_, Result<(), NetworkError>> {
        let id = pod_id.to_string();
        Box::pin(async move {
            check_pod_id(&id)?;
            let lock = self.pod_lock(&id);
            let result = {
                let _held = lock.lock().await;
                self.teardown_locked(&id, true).await
            };
            drop(lock);
            // Forget the lock unless another call for this pod holds or waits on it.
            let mut locks = self.pod_locks.lock();
            if locks.get(&id).is_some_and(|l| Arc::strong_count(l) == 1) {
                locks.remove(&id);
            }
            result
        })
    }

    fn pods(&self) -> Vec<String> {
        let state = self.state.lock();
        let mut ids: BTreeSet<String> = state.records.keys().cloned().collect();
        ids.extend(state.ipam.owners().cloned());
        if let Ok(entries) = std::fs::read_dir(self.cfg.state_dir.join("netns")) {
            ids.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(String::from)),
            );
        }
        ids.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_stable_and_fit_ifnamsiz() {
        let a = host_veth_name("0b6c3d2e-1111-2222-3333-444455556666");
        assert_eq!(a, host_veth_name("0b6c3d2e-1111-2222-3333-444455556666"));
        assert_ne!(a, host_veth_name("other"));
        assert!(a.len() <= 15 && a.starts_with("veth"));
    }

    #[test]
    fn pod_ids_that_are_not_plain_names_are_refused() {
        for bad in ["", "..", "a/b", "../x", "a b"] {
            assert!(check_pod_id(bad).is_err(), "{bad:?}");
        }
        check_pod_id("0b6c3d2e-1111-2222-3333-444455556666").unwrap();
        check_pod_id("static_pod.node1").unwrap();
    }
}
