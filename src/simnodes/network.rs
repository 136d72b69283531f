//! The pod network of a simulated node: no namespaces, no links, only addresses. Each pod
//! gets an address of the node's `spec.podCIDR` (allocated by the server's node-ipam
//! controller) through the real node's allocator ([`Ipam`], one small file per address
//! under the node's directory, so a restarted `skiff sim-nodes` gives a pod its address
//! back), and releases it at teardown.
//!
//! Invariant: two pods of one node never hold the same address; a host-network pod holds
//! none (the kubelet reports the node's address for it).

use crate::network::{Ipam, NetworkError, PodNetwork, Sandbox, SandboxRequest};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use std::net::IpAddr;
use std::path::PathBuf;
use tokio::sync::{watch, OnceCell};

pub struct SimNetwork {
    /// `<node-dir>/ipam`.
    dir: PathBuf,
    pod_cidr: watch::Receiver<Option<String>>,
    ipam: OnceCell<Mutex<Ipam>>,
}

impl SimNetwork {
    pub fn new(dir: PathBuf, pod_cidr: watch::Receiver<Option<String>>) -> SimNetwork {
        SimNetwork {
            dir,
            pod_cidr,
            ipam: OnceCell::new(),
        }
    }

    /// The allocator, opened once the node has its podCIDR (a pod waits for it, as it
    /// would wait for a CNI plugin's configuration).
    async fn ipam(&self) -> Result<&Mutex<Ipam>, NetworkError> {
        self.ipam
            .get_or_try_init(|| async {
                let net = crate::agent::pods::wait_pod_cidr(&self.pod_cidr).await?;
                Ok(Mutex::new(Ipam::open(&self.dir, net)?))
            })
            .await
    }

    fn sandbox(&self, ip: Option<IpAddr>) -> Sandbox {
        // The kubelet passes these to the runtime as bind mounts; the simulated runtime
        // mounts nothing, so they need not exist.
        Sandbox {
            netns: None,
            ip,
            hosts_file: self.dir.join("hosts"),
            resolv_conf: self.dir.join("resolv.conf"),
        }
    }
}

impl PodNetwork for SimNetwork {
    fn setup(&self, req: SandboxRequest) -> BoxFuture<'_, Result<Sandbox, NetworkError>> {
        Box::pin(async move {
            if req.host_network {
                return Ok(self.sandbox(None));
            }
            let ip = self.ipam().await?.lock().allocate(&req.id)?;
            Ok(self.sandbox(Some(IpAddr::V4(ip))))
        })
    }

    fn teardown(&self, pod_id: &str) -> BoxFuture<'_, Result<(), NetworkError>> {
        let id = pod_id.to_owned();
        Box::pin(async move {
            // Before the podCIDR is known nothing can have been allocated.
            match self.ipam.get() {
                Some(ipam) => ipam.lock().release(&id),
                None if self.pod_cidr.borrow().is_none() => Ok(()),
                None => self.ipam().await?.lock().release(&id),
            }
        })
    }

    fn pods(&self) -> Vec<String> {
        self.ipam
            .get()
            .map(|i| i.lock().owners().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::Ipv4Net;

    fn req(id: &str) -> SandboxRequest {
        SandboxRequest {
            id: id.into(),
            ..SandboxRequest::default()
        }
    }

    #[tokio::test]
    async fn pods_get_distinct_addresses_of_the_pod_cidr_and_give_them_back_at_teardown() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(None);
        let net = std::sync::Arc::new(SimNetwork::new(dir.path().join("ipam"), rx));
        // A pod set up before the podCIDR is known waits for it.
        let early = tokio::spawn({
            let net = net.clone();
            async move { net.setup(req("a")).await }
        });
        tokio::task::yield_now().await;
        assert!(!early.is_finished());
        tx.send_replace(Some("10.42.3.0/24".into()));
        let a = early.await.unwrap().unwrap().ip.unwrap();
        let b = net.setup(req("b")).await.unwrap().ip.unwrap();
        let cidr: Ipv4Net = "10.42.3.0/24".parse().unwrap();
        for ip in [a, b] {
            let IpAddr::V4(v4) = ip else {
                panic!("{ip} is not IPv4")
            };
            assert!(cidr.contains(v4), "{ip} outside {cidr}");
            assert_ne!(v4, cidr.gateway());
        }
        assert_ne!(a, b);
        // Idempotent: the same pod keeps its address.
        assert_eq!(net.setup(req("a")).await.unwrap().ip, Some(a));
        let mut pods = net.pods();
        pods.sort();
        assert_eq!(pods, ["a", "b"]);

        net.teardown("a").await.unwrap();
        assert_eq!(net.pods(), ["b"]);
        // Unknown pods tear down fine.
        net.teardown("nobody").await.unwrap();
        // A new network over the same directory (a restarted command) sees what is held.
        let (_tx2, rx2) = watch::channel(Some("10.42.3.0/24".to_owned()));
        let again = SimNetwork::new(dir.path().join("ipam"), rx2);
        assert_eq!(again.setup(req("b")).await.unwrap().ip, Some(b));
        assert_eq!(again.pods(), ["b"]);
    }

    #[tokio::test]
    async fn a_host_network_pod_holds_no_address() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(Some("10.42.3.0/24".to_owned()));
        let net = SimNetwork::new(dir.path().join("ipam"), rx);
        let sb = net
            .setup(SandboxRequest {
                host_network: true,
                ..req("h")
            })
            .await
            .unwrap();
        assert_eq!(sb.ip, None);
        assert!(net.pods().is_empty());
    }
}
