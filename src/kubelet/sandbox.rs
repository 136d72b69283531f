//! What a pod asks of its network sandbox, from its spec: `hostPort`s of its containers,
//! `hostAliases`, and the resolver settings of `dnsConfig` (upstream's kubelet passes these
//! to the CRI's RunPodSandbox). Cluster DNS (`dnsPolicy: ClusterFirst`) comes with the
//! DNS issue; until then pods use the host's resolvers plus their `dnsConfig`.

use crate::network::{DnsConfig, PortMapping, Protocol};
use k8s_openapi::api::core::v1::PodSpec;
use std::net::IpAddr;

/// One mapping per container port that sets a `hostPort` (init containers' too, as upstream).
pub fn port_mappings(spec: &PodSpec) -> Vec<PortMapping> {
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    containers
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|h| *h > 0)?;
            Some(PortMapping {
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => Protocol::Udp,
                    Some("SCTP") => Protocol::Sctp,
                    _ => Protocol::Tcp,
                },
                container_port: u16::try_from(p.container_port).ok()?,
                host_port,
                host_ip: p
                    .host_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .filter(|ip| !ip.is_unspecified()),
            })
        })
        .collect()
}

pub fn host_aliases(spec: &PodSpec) -> Vec<(IpAddr, Vec<String>)> {
    spec.host_aliases
        .iter()
        .flatten()
        .filter_map(|a| Some((a.ip.parse().ok()?, a.hostnames.clone().unwrap_or_default())))
        .collect()
}

/// `dnsConfig`'s nameservers, searches and options (`name[:value]`).
pub fn dns_config(spec: &PodSpec) -> DnsConfig {
    let Some(cfg) = &spec.dns_config else {
        return DnsConfig::default();
    };
    DnsConfig {
        nameservers: cfg
            .nameservers
            .iter()
            .flatten()
            .filter_map(|n| n.parse().ok())
            .collect(),
        searches: cfg.searches.clone().unwrap_or_default(),
        options: cfg
            .options
            .iter()
            .flatten()
            .filter_map(|o| {
                let name = o.name.clone()?;
                Some(match &o.value {
                    Some(v) => format!("{name}:{v}"),
                    None => name,
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn host_ports_aliases_and_dns_options_come_from_the_spec() {
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [{"name": "web", "ports": [
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "127.0.0.1"},
                {"containerPort": 9090}]}],
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}],
            "dnsConfig": {"nameservers": ["1.2.3.4"], "searches": ["ns1.svc.cluster-domain.example"],
                          "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}
        }))
        .unwrap();
        let ports = port_mappings(&spec);
        assert_eq!(ports.len(), 2);
        assert_eq!((ports[0].host_port, ports[0].container_port), (8080, 80));
        assert_eq!(ports[1].protocol, Protocol::Udp);
        assert_eq!(ports[1].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(host_aliases(&spec)[0].1, ["foo.local", "bar.local"]);
        let dns = dns_config(&spec);
        assert_eq!(dns.options, ["ndots:2", "edns0"]);
        assert_eq!(dns.nameservers, ["1.2.3.4".parse::<IpAddr>().unwrap()]);
    }
}
