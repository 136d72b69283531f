//! Pod address management for one node: which address of the podCIDR belongs to which
//! pod. Invariant: an address is handed out only after its allocation file
//! `<dir>/<ip>` (content: the pod id) was created with `O_EXCL`, so a crash never leaves
//! two pods thinking they own one address, and the same pod always gets its address
//! back after an agent restart (the files are read once at open). The network address,
//! the gateway (first address) and the broadcast address are never handed out.
//! Allocation is round-robin from the last address handed out (as CNI's host-local
//! does), so an address just released is not immediately reused by the next pod.

use super::NetworkError;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// An IPv4 network in CIDR notation (`10.42.0.0/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid CIDR {0:?}: want an IPv4 network like 10.42.0.0/24")]
pub struct CidrError(String);

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        if prefix > 32 {
            return Err(CidrError(format!("{addr}/{prefix}")));
        }
        Ok(Ipv4Net { addr, prefix })
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }
    fn mask_bits(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }
    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask_bits())
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask_bits())
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask_bits() == u32::from(self.network())
    }
    /// The first usable address: the bridge's (the pods' gateway).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()).wrapping_add(1))
    }
    /// Addresses pods may get: everything but network, gateway and broadcast.
    fn pod_range(&self) -> (u32, u32) {
        let first = u32::from(self.network()).saturating_add(2);
        let last = u32::from(self.broadcast()).saturating_sub(1);
        (first, last)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let bad = || CidrError(s.to_string());
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Ipv4Net::new(addr, prefix).map_err(|_| bad())
    }
}

/// The allocations of one podCIDR, persisted one file per address under `dir`.
#[derive(Debug)]
pub struct Ipam {
    dir: PathBuf,
    cidr: Ipv4Net,
    by_pod: HashMap<String, Ipv4Addr>,
    by_ip: HashMap<Ipv4Addr, String>,
    last: u32,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> NetworkError {
    move |source| NetworkError::Io { what, source }
}

impl Ipam {
    /// Reads the allocations in `dir` (created if missing). Files for addresses outside
    /// `cidr` (a node whose podCIDR changed) are dropped.
    pub fn open(dir: &Path, cidr: Ipv4Net) -> Result<Self, NetworkError> {
        std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let mut ipam = Ipam {
            dir: dir.to_path_buf(),
            cidr,
            by_pod: HashMap::new(),
            by_ip: HashMap::new(),
            last: cidr.pod_range().0.saturating_sub(1),
        };
        let entries =
            std::fs::read_dir(dir).map_err(io_err(format!("reading {}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(ip) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let owner = std::fs::read_to_string(&path).unwrap_or_default();
            let owner = owner.trim();
            let (first, last) = cidr.pod_range();
            let n = u32::from(ip);
            if owner.is_empty() || n < first || n > last || !cidr.contains(ip) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            ipam.by_pod.insert(owner.to_string(), ip);
            ipam.by_ip.insert(ip, owner.to_string());
            ipam.last = ipam.last.max(n);
        }
        Ok(ipam)
    }

    pub fn get(&self, pod_id: &str) -> Option<Ipv4Addr> {
        self.by_pod.get(pod_id).copied()
    }

    pub fn owners(&self) -> impl Iterator<Item = &String> {
        self.by_pod.keys()
    }

    /// The pod's address: the one it holds, or the next free one.
    pub fn allocate(&mut self, pod_id: &str) -> Result<Ipv4Addr, NetworkError> {
        if let Some(ip) = self.get(pod_id) {
            return Ok(ip);
        }
        let (first, last) = self.cidr.pod_range();
        if last < first {
            return Err(self.exhausted());
        }
        let size = last - first + 1;
        let start = if self.last >= last || self.last < first {
            first
        } else {
            self.last + 1
        };
        for i in 0..size {
            let n = first + (start - first + i) % size;
            let ip = Ipv4Addr::from(n);
            if self.by_ip.contains_key(&ip) {
                continue;
            }
            let path = self.dir.join(ip.to_string());
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path);
            match file {
                Ok(mut f) => {
                    // No fsync: after a power loss no pod namespace survives either, and
                    // the kubelet sets every sandbox up again.
                    f.write_all(pod_id.as_bytes())
                        .map_err(io_err(format!("writing {}", path.display())))?;
                }
                // Another owner we did not know of (a file written behind our back): skip.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err(format!("creating {}", path.display()))(e)),
            }
            self.by_pod.insert(pod_id.to_string(), ip);
            self.by_ip.insert(ip, pod_id.to_string());
            self.last = n;
            return Ok(ip);
        }
        Err(self.exhausted())
    }

    /// Frees the pod's address; a pod without one is fine.
    pub fn release(&mut self, pod_id: &str) -> Result<(), NetworkError> {
        let Some(ip) = self.by_pod.remove(pod_id) else {
            return Ok(());
        };
        self.by_ip.remove(&ip);
        let path = self.dir.join(ip.to_string());
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io_err(format!("removing {}", path.display()))(e))
            }
            _ => Ok(()),
        }
    }

    fn exhausted(&self) -> NetworkError {
        NetworkError::Exhausted {
            cidr: self.cidr.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parses_and_computes_gateway_and_broadcast() {
        let n = net("10.42.3.77/24");
        assert_eq!(n.to_string(), "10.42.3.0/24");
        assert_eq!(n.gateway(), Ipv4Addr::new(10, 42, 3, 1));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 42, 3, 255));
        assert!(n.contains(Ipv4Addr::new(10, 42, 3, 200)));
        assert!(!n.contains(Ipv4Addr::new(10, 42, 4, 1)));
        assert!(net("10.42.0.0/16").contains(Ipv4Addr::new(10, 42, 200, 1)));
        assert_eq!(net("0.0.0.0/0").mask(), Ipv4Addr::UNSPECIFIED);
        for bad in [
            "10.42.0.0",
            "10.42.0.0/33",
            "x/24",
            "10.42.0.0/-1",
            "::1/64",
        ] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
    }

    #[test]
    fn allocation_skips_gateway_and_returns_the_same_address_to_the_same_pod() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(dir.path(), net("10.42.0.0/24")).unwrap();
        let a = ipam.allocate("pod-a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 42, 0, 2));
        assert_eq!(ipam.allocate("pod-a").unwrap(), a);
        let b = ipam.allocate("pod-b").unwrap();
        assert_eq!(b, Ipv4Addr::new(10, 42, 0, 3));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("10.42.0.3")).unwrap(),
            "pod-b"
        );
    }

    #[test]
    fn allocations_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let cidr = net("10.42.0.0/24");
        let (a, b) = {
            let mut ipam = Ipam::open(dir.path(), cidr).unwrap();
            (ipam.allocate("a").unwrap(), ipam.allocate("b").unwrap())
        };
        let mut ipam = Ipam::open(dir.path(), cidr).unwrap();
        assert_eq!(ipam.get("a"), Some(a));
        assert_eq!(ipam.allocate("b").unwrap(), b);
        let c = ipam.allocate("c").unwrap();
        assert!(c != a && c != b);
        let mut owners: Vec<_> = ipam.owners().cloned().collect();
        owners.sort();
        assert_eq!(owners, ["a", "b", "c"]);
    }

    #[test]
    fn release_frees_the_address_and_its_file_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(dir.path(), net("10.42.0.0/24")).unwrap();
        let a = ipam.allocate("a").unwrap();
        ipam.release("a").unwrap();
        ipam.release("a").unwrap();
        ipam.release("never").unwrap();
        assert_eq!(ipam.get("a"), None);
        assert!(!dir.path().join(a.to_string()).exists());
    }

    #[test]
    fn exhaustion_is_reported_and_a_released_address_is_reused_last() {
        let dir = tempfile::tempdir().unwrap();
        // /29: 8 addresses, minus network, gateway, broadcast = 5 for pods.
        let mut ipam = Ipam::open(dir.path(), net("10.9.0.0/29")).unwrap();
        let ips: Vec<_> = (0..5)
            .map(|i| ipam.allocate(&format!("p{i}")).unwrap())
            .collect();
        assert_eq!(ips[0], Ipv4Addr::new(10, 9, 0, 2));
        assert_eq!(ips[4], Ipv4Addr::new(10, 9, 0, 6));
        let err = ipam.allocate("p5").unwrap_err();
        assert!(
            matches!(&err, NetworkError::Exhausted { cidr } if cidr == "10.9.0.0/29"),
            "{err}"
        );
        ipam.release("p1").unwrap();
        assert_eq!(ipam.allocate("p5").unwrap(), ips[1]);
    }

    #[test]
    fn round_robin_does_not_hand_a_just_released_address_to_the_next_pod() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(dir.path(), net("10.42.0.0/24")).unwrap();
        let a = ipam.allocate("a").unwrap();
        ipam.release("a").unwrap();
        assert_ne!(ipam.allocate("b").unwrap(), a);
    }

    #[test]
    fn stale_files_outside_the_cidr_are_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("10.43.0.5"), "old").unwrap();
        std::fs::write(dir.path().join("10.42.0.1"), "gateway?").unwrap();
        std::fs::write(dir.path().join("10.42.0.9"), "kept").unwrap();
        let ipam = Ipam::open(dir.path(), net("10.42.0.0/24")).unwrap();
        assert_eq!(ipam.get("old"), None);
        assert_eq!(ipam.get("gateway?"), None);
        assert_eq!(ipam.get("kept"), Some(Ipv4Addr::new(10, 42, 0, 9)));
        assert!(!dir.path().join("10.43.0.5").exists());
    }
}
