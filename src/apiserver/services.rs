//! Service cluster IP allocation from the service CIDR.
//!
//! Invariant: an address is handed out at most once while a Service holds it; the used set
//! is rebuilt from stored Services at start-up, so a restart never double-allocates.

use super::status::ApiError;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

pub struct ServiceIpAllocator {
    base: u32,
    size: u32,
    used: Mutex<BTreeSet<u32>>,
    next: Mutex<u32>,
}

impl ServiceIpAllocator {
    /// `cidr` like `10.43.0.0/16`. The network address and `.1` (the `kubernetes` Service)
    /// are reserved the way upstream reserves them.
    pub fn new(cidr: &str) -> Result<ServiceIpAllocator, String> {
        let (addr, len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("service CIDR {cidr:?} must look like 10.43.0.0/16"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("service CIDR {cidr:?}: invalid IPv4 address"))?;
        let len: u32 = len
            .parse()
            .ok()
            .filter(|l| (8..=30).contains(l))
            .ok_or_else(|| format!("service CIDR {cidr:?}: prefix length must be 8..30"))?;
        let size = 1u32 << (32 - len);
        let base = u32::from(addr) & !(size - 1);
        Ok(ServiceIpAllocator {
            base,
            size,
            used: Mutex::new(BTreeSet::new()),
            next: Mutex::new(2),
        })
    }

    /// The range in canonical CIDR form (`10.43.0.0/16`), as the default ServiceCIDR holds.
    pub fn cidr(&self) -> String {
        format!(
            "{}/{}",
            Ipv4Addr::from(self.base),
            32 - self.size.trailing_zeros()
        )
    }

    /// The first usable address: the `kubernetes` Service's cluster IP.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let v = u32::from(ip);
        v > self.base && v < self.base + self.size - 1
    }

    /// Marks an address as taken (start-up rebuild, or a user-chosen clusterIP).
    pub fn reserve(&self, ip: Ipv4Addr) -> bool {
        self.used.lock().insert(u32::from(ip) - self.base)
    }

    pub fn release(&self, ip: &str) {
        if let Ok(ip) = ip.parse::<Ipv4Addr>() {
            if self.contains(ip) {
                self.used.lock().remove(&(u32::from(ip) - self.base));
            }
        }
    }

    fn allocate(&self) -> Option<Ipv4Addr> {
        let mut used = self.used.lock();
        let mut next = self.next.lock();
        for _ in 0..self.size {
            let candidate = *next;
            *next = if candidate + 1 >= self.size - 1 {
                2
            } else {
                candidate + 1
            };
            if used.insert(candidate) {
                return Some(Ipv4Addr::from(self.base + candidate));
            }
        }
        None
    }

    /// Fills in spec.clusterIP(s) of a new Service (headless `None` and ExternalName excepted).
    pub fn assign(&self, svc: &mut Value) -> Result<(), ApiError> {
        if svc["spec"]["type"].as_str() == Some("ExternalName") {
            return Ok(());
        }
        match svc["spec"]["clusterIP"].as_str() {
            Some("None") => {
                svc["spec"]["clusterIPs"] = json!(["None"]);
                Ok(())
            }
            Some(ip) if !ip.is_empty() => {
                let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "spec.clusterIP: Invalid value: {ip:?}: must be a valid IP address"
                    ))
                })?;
                if !self.contains(parsed) {
                    return Err(ApiError::bad_request(format!(
                        "spec.clusterIPs: Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range"
                    )));
                }
                if !self.reserve(parsed) {
                    return Err(ApiError::bad_request(format!(
                        "spec.clusterIPs: Invalid value: [\"{ip}\"]: failed to allocate IP {ip}: provided IP is already allocated"
                    )));
                }
                svc["spec"]["clusterIPs"] = json!([ip]);
                Ok(())
            }
            _ => {
                let ip = self.allocate().ok_or_else(|| {
                    ApiError::internal("failed to allocate a serviceIP: range is full")
                })?;
                svc["spec"]["clusterIP"] = json!(ip.to_string());
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_unique_and_skip_reserved_addresses() {
        let a = ServiceIpAllocator::new("10.43.0.0/29").unwrap();
        assert!(a.reserve(a.first()));
        let mut seen = BTreeSet::new();
        for _ in 0..5 {
            let mut svc = json!({"spec": {}});
            a.assign(&mut svc).unwrap();
            assert!(seen.insert(svc["spec"]["clusterIP"].as_str().unwrap().to_owned()));
        }
        assert!(!seen.contains("10.43.0.1"));
        let mut svc = json!({"spec": {}});
        assert!(
            a.assign(&mut svc).is_err(),
            "range of 6 usable addresses is exhausted"
        );
    }

    #[test]
    fn headless_and_user_chosen_ips_are_respected() {
        let a = ServiceIpAllocator::new("10.43.0.0/16").unwrap();
        let mut headless = json!({"spec": {"clusterIP": "None"}});
        a.assign(&mut headless).unwrap();
        assert_eq!(headless["spec"]["clusterIP"], "None");
        let mut chosen = json!({"spec": {"clusterIP": "10.43.0.50"}});
        a.assign(&mut chosen).unwrap();
        let mut dup = json!({"spec": {"clusterIP": "10.43.0.50"}});
        assert!(a.assign(&mut dup).is_err());
    }
}
