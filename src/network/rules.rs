//! Which NAT rules a node has: a pure function from the node's configuration and its
//! current hostPort mappings to one nf_tables table (see `nft`), replaced whole on every
//! change. Invariant: the rules depend only on the persisted state, so re-opening the
//! network after an agent restart reproduces them exactly and drops stale ones.
//!
//! The table (`ip <bridge>`), in `nft` syntax:
//! ```text
//! chain prerouting  { type nat hook prerouting  priority dstnat; <hostPort DNATs> }
//! chain output      { type nat hook output      priority dstnat; <hostPort DNATs> }
//! chain postrouting { type nat hook postrouting priority srcnat;
//!     ip saddr <podCIDR> ip daddr != <clusterCIDR> masquerade    # outbound NAT
//!     ip saddr 127.0.0.0/8 oifname <bridge> masquerade             # 127.0.0.1:hostPort
//!     ip saddr <podIP> ip daddr <podIP> masquerade                 # hairpin, per pod with hostPorts
//! }
//! chain input { type filter hook input priority filter;
//!     iifname <bridge> ip daddr 127.0.0.0/8 ct state & (established|related) == 0 drop
//! }
//! ```
//! The input rule is kube-proxy's answer to CVE-2020-8558: `route_localnet`, needed on
//! the bridge for 127.0.0.1:hostPort, would otherwise let a pod reach services that
//! listen on the node's loopback only.
//! A hostPort DNAT is `[ip daddr <hostIP> | fib daddr type local] meta l4proto P
//! th dport H dnat to <podIP>:<containerPort>`; the output chain makes the host's own
//! connections (to its addresses and to 127.0.0.1) reach the pod as well.

use super::ipam::Ipv4Net;
use super::nft::{self, Chain, CmpOp, Expr, Hook, Rule, Table};
use super::{PortMapping, Protocol};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

pub struct NatPlan<'a> {
    pub table: &'a str,
    pub bridge: &'a str,
    pub pod_cidr: Ipv4Net,
    pub cluster_cidr: Ipv4Net,
    /// (pod address, mapping) of every pod with hostPorts.
    pub mappings: Vec<(Ipv4Addr, &'a PortMapping)>,
}

const PREROUTING: &str = "prerouting";
const OUTPUT: &str = "output";
const POSTROUTING: &str = "postrouting";
const INPUT: &str = "input";

fn proto_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

impl NatPlan<'_> {
    pub fn table(&self) -> Table {
        let chains = vec![
            Chain {
                name: PREROUTING.into(),
                kind: "nat",
                hook: Hook::Prerouting,
                priority: -100,
            },
            Chain {
                name: OUTPUT.into(),
                kind: "nat",
                hook: Hook::Output,
                priority: -100,
            },
            Chain {
                name: POSTROUTING.into(),
                kind: "nat",
                hook: Hook::Postrouting,
                priority: 100,
            },
            Chain {
                name: INPUT.into(),
                kind: "filter",
                hook: Hook::Input,
                priority: 0,
            },
        ];
        let mut rules = vec![Rule {
            chain: INPUT.into(),
            exprs: [
                nft::iifname(self.bridge),
                nft::ip_addr_in(false, Ipv4Addr::new(127, 0, 0, 0), 8, CmpOp::Eq),
                nft::ct_not_established(),
                vec![Expr::Drop],
            ]
            .concat(),
        }];
        for (pod_ip, m) in &self.mappings {
            let dst: Vec<Expr> = match m.host_ip {
                Some(IpAddr::V4(ip)) if !ip.is_unspecified() => {
                    nft::ip_addr_in(false, ip, 32, CmpOp::Eq)
                }
                // An IPv6 host address cannot match an IPv4 table: no rule for it.
                Some(IpAddr::V6(ip)) if !ip.is_unspecified() => continue,
                _ => nft::daddr_is_local(),
            };
            let exprs = [
                dst,
                nft::l4_dport(proto_number(m.protocol), m.host_port),
                nft::dnat_to(*pod_ip, m.container_port),
            ]
            .concat();
            for chain in [PREROUTING, OUTPUT] {
                rules.push(Rule {
                    chain: chain.into(),
                    exprs: exprs.clone(),
                });
            }
        }
        let cluster = self.cluster_cidr;
        let pods = self.pod_cidr;
        rules.push(Rule {
            chain: POSTROUTING.into(),
            exprs: [
                nft::ip_addr_in(true, pods.network(), pods.prefix(), CmpOp::Eq),
                nft::ip_addr_in(false, cluster.network(), cluster.prefix(), CmpOp::Neq),
                vec![Expr::Masquerade],
            ]
            .concat(),
        });
        if !self.mappings.is_empty() {
            rules.push(Rule {
                chain: POSTROUTING.into(),
                exprs: [
                    nft::ip_addr_in(true, Ipv4Addr::new(127, 0, 0, 0), 8, CmpOp::Eq),
                    nft::oifname(self.bridge),
                    vec![Expr::Masquerade],
                ]
                .concat(),
            });
        }
        let hairpins: BTreeSet<Ipv4Addr> = self.mappings.iter().map(|(ip, _)| *ip).collect();
        for ip in hairpins {
            rules.push(Rule {
                chain: POSTROUTING.into(),
                exprs: [
                    nft::ip_addr_in(true, ip, 32, CmpOp::Eq),
                    nft::ip_addr_in(false, ip, 32, CmpOp::Eq),
                    vec![Expr::Masquerade],
                ]
                .concat(),
            });
        }
        Table {
            name: self.table.to_string(),
            chains,
            rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan<'a>(mappings: Vec<(Ipv4Addr, &'a PortMapping)>) -> NatPlan<'a> {
        NatPlan {
            table: "skiff0",
            bridge: "skiff0",
            pod_cidr: "10.42.0.0/24".parse().unwrap(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            mappings,
        }
    }

    fn tcp(host_port: u16, container_port: u16, host_ip: Option<IpAddr>) -> PortMapping {
        PortMapping {
            protocol: Protocol::Tcp,
            container_port,
            host_port,
            host_ip,
        }
    }

    #[test]
    fn without_host_ports_only_outbound_masquerade_exists() {
        let t = plan(vec![]).table();
        assert_eq!(t.chains.len(), 4);
        assert_eq!(t.rules.len(), 2);
        let r = &t.rules[1];
        assert_eq!(r.chain, "postrouting");
        assert_eq!(
            r.exprs,
            [
                nft::ip_addr_in(true, Ipv4Addr::new(10, 42, 0, 0), 24, CmpOp::Eq),
                nft::ip_addr_in(false, Ipv4Addr::new(10, 42, 0, 0), 16, CmpOp::Neq),
                vec![Expr::Masquerade]
            ]
            .concat()
        );
    }

    #[test]
    fn host_port_on_any_address_dnats_local_destinations_in_prerouting_and_output() {
        let m = tcp(8080, 80, None);
        let pod = Ipv4Addr::new(10, 42, 0, 5);
        let t = plan(vec![(pod, &m)]).table();
        let dnats: Vec<&Rule> = t
            .rules
            .iter()
            .filter(|r| r.exprs.iter().any(|e| matches!(e, Expr::Dnat { .. })))
            .collect();
        assert_eq!(dnats.len(), 2);
        assert_eq!(dnats[0].chain, "prerouting");
        assert_eq!(dnats[1].chain, "output");
        let want = [
            nft::daddr_is_local(),
            nft::l4_dport(6, 8080),
            nft::dnat_to(pod, 80),
        ]
        .concat();
        assert_eq!(dnats[0].exprs, want);
        // 127.0.0.1 masquerade and the pod's hairpin rule come with it.
        assert!(t.rules.iter().any(|r| r.exprs.starts_with(&nft::ip_addr_in(
            true,
            Ipv4Addr::new(127, 0, 0, 0),
            8,
            CmpOp::Eq
        ))));
        assert!(t.rules.iter().any(|r| r.exprs
            == [
                nft::ip_addr_in(true, pod, 32, CmpOp::Eq),
                nft::ip_addr_in(false, pod, 32, CmpOp::Eq),
                vec![Expr::Masquerade]
            ]
            .concat()));
    }

    #[test]
    fn host_port_on_one_address_matches_that_address_and_udp_uses_protocol_17() {
        let m = PortMapping {
            protocol: Protocol::Udp,
            container_port: 53,
            host_port: 5353,
            host_ip: Some("192.168.1.10".parse().unwrap()),
        };
        let t = plan(vec![(Ipv4Addr::new(10, 42, 0, 9), &m)]).table();
        let r = &t.rules[1];
        assert!(r.exprs.starts_with(&nft::ip_addr_in(
            false,
            Ipv4Addr::new(192, 168, 1, 10),
            32,
            CmpOp::Eq
        )));
        assert!(r.exprs.contains(&Expr::Cmp {
            reg: nft::REG1,
            op: CmpOp::Eq,
            data: vec![17]
        }));
    }

    #[test]
    fn new_connections_from_pods_to_the_nodes_loopback_are_dropped() {
        let t = plan(vec![]).table();
        let input = t.chains.iter().find(|c| c.name == "input").unwrap();
        assert_eq!((input.kind, input.hook), ("filter", Hook::Input));
        let r = &t.rules[0];
        assert_eq!(r.chain, "input");
        assert!(r.exprs.starts_with(&nft::iifname("skiff0")));
        assert!(r
            .exprs
            .ends_with(&[nft::ct_not_established(), vec![Expr::Drop]].concat()));
    }

    #[test]
    fn ipv6_host_ips_get_no_rule_in_the_ipv4_table() {
        let m = tcp(80, 80, Some("fd00::1".parse().unwrap()));
        let t = plan(vec![(Ipv4Addr::new(10, 42, 0, 9), &m)]).table();
        assert!(!t
            .rules
            .iter()
            .any(|r| r.exprs.iter().any(|e| matches!(e, Expr::Dnat { .. }))));
    }
}
