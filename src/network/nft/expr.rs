//! nf_tables expressions for the rule shapes the node needs, named after the `nft`
//! syntax they stand for (`ip saddr 10.42.0.0/24`, `th dport 80`, `dnat to ...`). Pure.

use super::{
    CmpOp, Expr, MetaKey, PayloadBase, CT_STATE_ESTABLISHED, CT_STATE_RELATED, REG1, REG2,
    RTN_LOCAL,
};
use std::net::Ipv4Addr;

/// `ip saddr <net>` (`src = true`) or `ip daddr <net>`, with `op`.
pub fn ip_addr_in(src: bool, addr: Ipv4Addr, prefix: u8, op: CmpOp) -> Vec<Expr> {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    let mut v = vec![Expr::Payload {
        base: PayloadBase::Network,
        offset: if src { 12 } else { 16 },
        len: 4,
        dreg: REG1,
    }];
    if prefix < 32 {
        v.push(Expr::Bitwise {
            reg: REG1,
            mask: mask.to_be_bytes().to_vec(),
            xor: vec![0; 4],
        });
    }
    v.push(Expr::Cmp {
        reg: REG1,
        op,
        data: (u32::from(addr) & mask).to_be_bytes().to_vec(),
    });
    v
}

/// `meta l4proto <proto> th dport <port>`.
pub fn l4_dport(proto: u8, port: u16) -> Vec<Expr> {
    vec![
        Expr::Meta {
            key: MetaKey::L4Proto,
            dreg: REG1,
        },
        Expr::Cmp {
            reg: REG1,
            op: CmpOp::Eq,
            data: vec![proto],
        },
        Expr::Payload {
            base: PayloadBase::Transport,
            offset: 2,
            len: 2,
            dreg: REG1,
        },
        Expr::Cmp {
            reg: REG1,
            op: CmpOp::Eq,
            data: port.to_be_bytes().to_vec(),
        },
    ]
}

/// `fib daddr type local`.
pub fn daddr_is_local() -> Vec<Expr> {
    vec![
        Expr::FibDaddrType { dreg: REG1 },
        Expr::Cmp {
            reg: REG1,
            op: CmpOp::Eq,
            data: RTN_LOCAL.to_ne_bytes().to_vec(),
        },
    ]
}

/// `oifname <name>`.
pub fn oifname(name: &str) -> Vec<Expr> {
    ifname(MetaKey::OifName, name)
}

/// `iifname <name>`.
pub fn iifname(name: &str) -> Vec<Expr> {
    ifname(MetaKey::IifName, name)
}

/// `ct state & (established | related) == 0`: a packet that starts nothing we allowed.
pub fn ct_not_established() -> Vec<Expr> {
    let bits = CT_STATE_ESTABLISHED | CT_STATE_RELATED;
    vec![
        Expr::CtState { dreg: REG1 },
        Expr::Bitwise {
            reg: REG1,
            mask: bits.to_ne_bytes().to_vec(),
            xor: vec![0; 4],
        },
        Expr::Cmp {
            reg: REG1,
            op: CmpOp::Eq,
            data: vec![0; 4],
        },
    ]
}

fn ifname(key: MetaKey, name: &str) -> Vec<Expr> {
    let mut data = [0u8; 16];
    let n = name.len().min(15);
    data[..n].copy_from_slice(&name.as_bytes()[..n]);
    vec![
        Expr::Meta { key, dreg: REG1 },
        Expr::Cmp {
            reg: REG1,
            op: CmpOp::Eq,
            data: data.to_vec(),
        },
    ]
}

/// `dnat to <ip>:<port>`.
pub fn dnat_to(ip: Ipv4Addr, port: u16) -> Vec<Expr> {
    vec![
        Expr::Immediate {
            dreg: REG1,
            data: ip.octets().to_vec(),
        },
        Expr::Immediate {
            dreg: REG2,
            data: port.to_be_bytes().to_vec(),
        },
        Expr::Dnat {
            addr_reg: REG1,
            port_reg: REG2,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_match_masks_then_compares_the_network() {
        let e = ip_addr_in(false, Ipv4Addr::new(10, 42, 7, 9), 16, CmpOp::Neq);
        assert_eq!(
            e,
            vec![
                Expr::Payload {
                    base: PayloadBase::Network,
                    offset: 16,
                    len: 4,
                    dreg: REG1
                },
                Expr::Bitwise {
                    reg: REG1,
                    mask: vec![255, 255, 0, 0],
                    xor: vec![0; 4]
                },
                Expr::Cmp {
                    reg: REG1,
                    op: CmpOp::Neq,
                    data: vec![10, 42, 0, 0]
                },
            ]
        );
        // A single address needs no mask.
        assert_eq!(
            ip_addr_in(true, Ipv4Addr::new(1, 2, 3, 4), 32, CmpOp::Eq).len(),
            2
        );
    }

    #[test]
    fn port_and_dnat_use_network_byte_order() {
        let e = l4_dport(6, 8080);
        assert_eq!(
            e[3],
            Expr::Cmp {
                reg: REG1,
                op: CmpOp::Eq,
                data: vec![0x1f, 0x90]
            }
        );
        let d = dnat_to(Ipv4Addr::new(10, 42, 0, 5), 80);
        assert_eq!(
            d[0],
            Expr::Immediate {
                dreg: REG1,
                data: vec![10, 42, 0, 5]
            }
        );
        assert_eq!(
            d[1],
            Expr::Immediate {
                dreg: REG2,
                data: vec![0, 80]
            }
        );
    }

    #[test]
    fn oifname_is_padded_to_ifnamsiz() {
        let e = oifname("skiff0");
        let Expr::Cmp { data, .. } = &e[1] else {
            panic!()
        };
        assert_eq!(data.len(), 16);
        assert_eq!(&data[..7], b"skiff0\0");
    }
}
