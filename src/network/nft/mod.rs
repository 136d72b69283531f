//! nf_tables over netlink, in pure Rust: the few expressions the node's NAT needs, the
//! batch that replaces one table atomically, and the socket that sends it. No `nft`
//! binary, no libnftnl (the `rustables` crate is GPL-3.0, this project is Apache-2.0).
//!
//! Invariant: a table is only ever replaced whole, in one nfnetlink batch
//! (`add table; delete table; add table; chains; rules`), so the kernel either has the
//! old rules or the new ones, never a half-written set, and no rule handles need to be
//! tracked. The message layout follows `include/uapi/linux/netfilter/nf_tables.h`.

mod expr;

pub use expr::*;

// nfnetlink / nf_tables constants (uapi).
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
pub const NFPROTO_IPV4: u8 = 2;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

/// 16-byte registers; 1 and 2 are all we need.
pub const REG1: u32 = 1;
pub const REG2: u32 = 2;

/// Netfilter hooks (`enum nf_inet_hooks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Input = 1,
    Output = 3,
    Postrouting = 4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadBase {
    Network = 1,
    Transport = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
}

/// `enum nft_meta_keys` values used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    IifName = 6,
    OifName = 7,
    L4Proto = 16,
}

/// One nf_tables expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Payload {
        base: PayloadBase,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// `reg = (reg & mask) ^ xor`
    Bitwise {
        reg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    Cmp {
        reg: u32,
        op: CmpOp,
        data: Vec<u8>,
    },
    Meta {
        key: MetaKey,
        dreg: u32,
    },
    /// `fib daddr type` into `dreg` (a host-endian u32 `RTN_*`).
    FibDaddrType {
        dreg: u32,
    },
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    /// Destination NAT to the IPv4 address in `addr_reg` and the port in `port_reg`.
    Dnat {
        addr_reg: u32,
        port_reg: u32,
    },
    Masquerade,
    /// `ct state` into `dreg` (a host-endian u32 bit set, see `CT_STATE_*`).
    CtState {
        dreg: u32,
    },
    /// The `drop` verdict.
    Drop,
}

pub const CT_STATE_ESTABLISHED: u32 = 1 << 1;
pub const CT_STATE_RELATED: u32 = 1 << 2;

/// `RTN_LOCAL`: what `fib daddr type` yields for the host's own addresses.
pub const RTN_LOCAL: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// `nat` or `filter`.
    pub kind: &'static str,
    pub hook: Hook,
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub exprs: Vec<Expr>,
}

/// A whole `ip` family table; every chain is a base chain with policy accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub chains: Vec<Chain>,
    pub rules: Vec<Rule>,
}

/// Netlink message writer with nested attributes.
struct Writer {
    buf: Vec<u8>,
    seq: u32,
    count: u32,
}

impl Writer {
    fn new(seq: u32) -> Self {
        Writer {
            buf: Vec::with_capacity(4096),
            seq,
            count: 0,
        }
    }

    /// Starts a message: nlmsghdr + nfgenmsg. Returns its start offset for `end_msg`.
    fn begin_msg(&mut self, ty: u16, flags: u16, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in end_msg
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&self.seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        self.seq = self.seq.wrapping_add(1);
        self.count += 1;
        // nfgenmsg: family, version (NFNETLINK_V0), res_id (big endian)
        self.buf.push(family);
        self.buf.push(0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    fn end_msg(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn attr_str(&mut self, ty: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(ty, &v);
    }

    fn attr_be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    fn nest(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn end_nest(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn data(&mut self, ty: u16, value: &[u8]) {
        let n = self.nest(ty);
        self.attr(NFTA_DATA_VALUE, value);
        self.end_nest(n);
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn expr(&mut self, e: &Expr) {
        let elem = self.nest(NFTA_LIST_ELEM);
        let name = match e {
            Expr::Payload { .. } => "payload",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Cmp { .. } => "cmp",
            Expr::Meta { .. } => "meta",
            Expr::FibDaddrType { .. } => "fib",
            Expr::Immediate { .. } => "immediate",
            Expr::Dnat { .. } => "nat",
            Expr::Masquerade => "masq",
            Expr::CtState { .. } => "ct",
            Expr::Drop => "immediate",
        };
        self.attr_str(NFTA_EXPR_NAME, name);
        let data = self.nest(NFTA_EXPR_DATA);
        match e {
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                self.attr_be32(1, *dreg); // NFTA_PAYLOAD_DREG
                self.attr_be32(2, *base as u32); // NFTA_PAYLOAD_BASE
                self.attr_be32(3, *offset); // NFTA_PAYLOAD_OFFSET
                self.attr_be32(4, *len); // NFTA_PAYLOAD_LEN
            }
            Expr::Bitwise { reg, mask, xor } => {
                self.attr_be32(1, *reg); // NFTA_BITWISE_SREG
                self.attr_be32(2, *reg); // NFTA_BITWISE_DREG
                self.attr_be32(3, mask.len() as u32); // NFTA_BITWISE_LEN
                self.data(4, mask); // NFTA_BITWISE_MASK
                self.data(5, xor); // NFTA_BITWISE_XOR
            }
            Expr::Cmp { reg, op, data } => {
                self.attr_be32(1, *reg); // NFTA_CMP_SREG
                self.attr_be32(2, *op as u32); // NFTA_CMP_OP
                self.data(3, data); // NFTA_CMP_DATA
            }
            Expr::Meta { key, dreg } => {
                self.attr_be32(1, *dreg); // NFTA_META_DREG
                self.attr_be32(2, *key as u32); // NFTA_META_KEY
            }
            Expr::FibDaddrType { dreg } => {
                self.attr_be32(1, *dreg); // NFTA_FIB_DREG
                self.attr_be32(2, 3); // NFTA_FIB_RESULT = NFT_FIB_RESULT_ADDRTYPE
                self.attr_be32(3, 1 << 1); // NFTA_FIB_FLAGS = NFTA_FIB_F_DADDR
            }
            Expr::Immediate { dreg, data } => {
                self.attr_be32(1, *dreg); // NFTA_IMMEDIATE_DREG
                self.data(2, data); // NFTA_IMMEDIATE_DATA
            }
            Expr::Dnat { addr_reg, port_reg } => {
                self.attr_be32(1, 1); // NFTA_NAT_TYPE = NFT_NAT_DNAT
                self.attr_be32(2, u32::from(NFPROTO_IPV4)); // NFTA_NAT_FAMILY
                self.attr_be32(3, *addr_reg); // NFTA_NAT_REG_ADDR_MIN
                self.attr_be32(5, *port_reg); // NFTA_NAT_REG_PROTO_MIN
                                              // NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED
                self.attr_be32(7, 1 | 2); // NFTA_NAT_FLAGS
            }
            Expr::Masquerade => {}
            Expr::CtState { dreg } => {
                self.attr_be32(2, 0); // NFTA_CT_KEY = NFT_CT_STATE
                self.attr_be32(1, *dreg); // NFTA_CT_DREG
            }
            Expr::Drop => {
                self.attr_be32(1, 0); // NFTA_IMMEDIATE_DREG = NFT_REG_VERDICT
                let data = self.nest(2); // NFTA_IMMEDIATE_DATA
                let verdict = self.nest(2); // NFTA_DATA_VERDICT
                self.attr_be32(1, 0); // NFTA_VERDICT_CODE = NF_DROP
                self.end_nest(verdict);
                self.end_nest(data);
            }
        }
        self.end_nest(data);
        self.end_nest(elem);
    }
}

fn subsys(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

impl Table {
    /// The batch that replaces the table (creating it if absent) atomically.
    pub fn replace_batch(&self, seq: u32) -> Batch {
        let mut w = Writer::new(seq);
        let m = w.begin_msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        w.end_msg(m);
        // Create-if-missing, then delete: the delete never fails, the old rules go.
        for ty in [NFT_MSG_NEWTABLE, NFT_MSG_DELTABLE, NFT_MSG_NEWTABLE] {
            let m = w.begin_msg(
                subsys(ty),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
                NFPROTO_IPV4,
                0,
            );
            w.attr_str(NFTA_TABLE_NAME, &self.name);
            w.end_msg(m);
        }
        for c in &self.chains {
            let m = w.begin_msg(
                subsys(NFT_MSG_NEWCHAIN),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
                NFPROTO_IPV4,
                0,
            );
            w.attr_str(NFTA_CHAIN_TABLE, &self.name);
            w.attr_str(NFTA_CHAIN_NAME, &c.name);
            let hook = w.nest(NFTA_CHAIN_HOOK);
            w.attr_be32(NFTA_HOOK_HOOKNUM, c.hook as u32);
            w.attr_be32(NFTA_HOOK_PRIORITY, c.priority as u32);
            w.end_nest(hook);
            w.attr_be32(NFTA_CHAIN_POLICY, 1); // NF_ACCEPT
            w.attr_str(NFTA_CHAIN_TYPE, c.kind);
            w.end_msg(m);
        }
        for r in &self.rules {
            let m = w.begin_msg(
                subsys(NFT_MSG_NEWRULE),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND,
                NFPROTO_IPV4,
                0,
            );
            w.attr_str(NFTA_RULE_TABLE, &self.name);
            w.attr_str(NFTA_RULE_CHAIN, &r.chain);
            let list = w.nest(NFTA_RULE_EXPRESSIONS);
            for e in &r.exprs {
                w.expr(e);
            }
            w.end_nest(list);
            w.end_msg(m);
        }
        let m = w.begin_msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        w.end_msg(m);
        Batch {
            bytes: w.buf,
            acks: w.count - 2,
        }
    }

    /// The batch that deletes the table if it exists.
    pub fn delete_batch(name: &str, seq: u32) -> Batch {
        let mut w = Writer::new(seq);
        let m = w.begin_msg(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        w.end_msg(m);
        for ty in [NFT_MSG_NEWTABLE, NFT_MSG_DELTABLE] {
            let m = w.begin_msg(
                subsys(ty),
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
                NFPROTO_IPV4,
                0,
            );
            w.attr_str(NFTA_TABLE_NAME, name);
            w.end_msg(m);
        }
        let m = w.begin_msg(NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, NFNL_SUBSYS_NFTABLES);
        w.end_msg(m);
        Batch {
            bytes: w.buf,
            acks: w.count - 2,
        }
    }
}

/// Encoded messages and how many acknowledgements the kernel owes for them.
pub struct Batch {
    pub bytes: Vec<u8>,
    pub acks: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nftables socket: {0}")]
    Socket(#[source] nix::Error),
    #[error("nftables rejected the batch (message {seq}): {errno}")]
    Rejected { seq: u32, errno: nix::errno::Errno },
    #[error("nftables acknowledged {got} of {want} messages")]
    Incomplete { got: u32, want: u32 },
}

/// Sends a batch on a fresh `NETLINK_NETFILTER` socket of the calling thread's network
/// namespace and checks every acknowledgement. The kernel processes a batch inside
/// `sendmsg`, so all answers are queued when it returns: reading them without blocking
/// is enough, and this never parks a tokio worker.
pub fn apply(batch: &Batch) -> Result<(), NftError> {
    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
        SockType,
    };
    use std::os::fd::AsRawFd;
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkNetFilter,
    )
    .map_err(NftError::Socket)?;
    sendto(
        fd.as_raw_fd(),
        &batch.bytes,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )
    .map_err(NftError::Socket)?;
    let mut got = 0;
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => return Err(NftError::Socket(e)),
        };
        let mut off = 0;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap_or_default()) as usize;
            let ty = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().unwrap_or_default());
            let seq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap_or_default());
            if len < 16 || off + len > n {
                break;
            }
            if ty == NLMSG_ERROR && len >= 20 {
                let code =
                    i32::from_ne_bytes(buf[off + 16..off + 20].try_into().unwrap_or_default());
                if code != 0 {
                    return Err(NftError::Rejected {
                        seq,
                        errno: nix::errno::Errno::from_raw(-code),
                    });
                }
                got += 1;
            }
            off += (len + 3) & !3;
        }
    }
    if got < batch.acks {
        return Err(NftError::Incomplete {
            got,
            want: batch.acks,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn table() -> Table {
        Table {
            name: "t".into(),
            chains: vec![Chain {
                name: "post".into(),
                kind: "nat",
                hook: Hook::Postrouting,
                priority: 100,
            }],
            rules: vec![Rule {
                chain: "post".into(),
                exprs: [
                    ip_addr_in(true, Ipv4Addr::new(10, 42, 0, 0), 24, CmpOp::Eq),
                    vec![Expr::Masquerade],
                ]
                .concat(),
            }],
        }
    }

    /// Walks the top-level messages of a batch: (type, flags, family, len).
    fn messages(b: &[u8]) -> Vec<(u16, u16, u8, usize)> {
        let mut out = vec![];
        let mut off = 0;
        while off < b.len() {
            let len = u32::from_ne_bytes(b[off..off + 4].try_into().unwrap()) as usize;
            let ty = u16::from_ne_bytes(b[off + 4..off + 6].try_into().unwrap());
            let flags = u16::from_ne_bytes(b[off + 6..off + 8].try_into().unwrap());
            assert_eq!(len % 4, 0, "messages stay 4-byte aligned");
            out.push((ty, flags, b[off + 16], len));
            off += len;
        }
        assert_eq!(off, b.len());
        out
    }

    #[test]
    fn replace_batch_is_begin_table_recreate_chains_rules_end() {
        let batch = table().replace_batch(7);
        let msgs = messages(&batch.bytes);
        let types: Vec<u16> = msgs.iter().map(|m| m.0).collect();
        assert_eq!(
            types,
            vec![
                0x10, 0x0a00, // NEWTABLE
                0x0a02, // DELTABLE
                0x0a00, 0x0a03, // NEWCHAIN
                0x0a06, // NEWRULE
                0x11
            ]
        );
        assert_eq!(batch.acks, 5);
        // Batch delimiters carry the nftables subsystem in res_id, objects the family.
        assert_eq!(msgs[0].2, 0);
        assert!(msgs[1..6].iter().all(|m| m.2 == NFPROTO_IPV4));
        assert!(msgs[1..6].iter().all(|m| m.1 & NLM_F_ACK != 0));
        // The rule message carries its expressions by name.
        let rule = &batch.bytes;
        let text = String::from_utf8_lossy(rule);
        for name in [
            "payload\0",
            "bitwise\0",
            "cmp\0",
            "masq\0",
            "nat\0",
            "post\0",
        ] {
            assert!(text.contains(name), "{name} missing");
        }
    }

    #[test]
    fn sequence_numbers_increase_per_message() {
        let b = table().replace_batch(100);
        let mut off = 0;
        let mut seqs = vec![];
        while off < b.bytes.len() {
            let len = u32::from_ne_bytes(b.bytes[off..off + 4].try_into().unwrap()) as usize;
            seqs.push(u32::from_ne_bytes(
                b.bytes[off + 8..off + 12].try_into().unwrap(),
            ));
            off += len;
        }
        assert_eq!(seqs, (100..107).collect::<Vec<_>>());
    }
}
