//! berth's own nftables table per network, `ip berth-<bridge>`, spoken in nf_tables netlink
//! directly (one batch per change), so the binary needs no `nft`. See the parent module for why
//! it holds what it holds.

use std::os::fd::AsRawFd;
use std::time::Duration;

use rtnetlink::sys::{Socket, SocketAddr};

use super::{FirewallError, Result};
use crate::network::ipam::Subnet;

pub(super) const NETLINK_NETFILTER: isize = 12;
pub(super) const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;
const NFPROTO_IPV4: u8 = 2;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
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
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFTA_CT_DREG: u16 = 1;
const NFTA_CT_KEY: u16 = 2;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;

const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;
const NFT_CT_STATE: u32 = 0;
/// `NF_CT_STATE_BIT` of `IP_CT_ESTABLISHED` and `IP_CT_RELATED`.
const CT_STATE_ESTABLISHED_RELATED: u32 = 0x2 | 0x4;
const NF_DROP: u32 = 0;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_META_IIFNAME: u32 = 6;
const NFT_META_OIFNAME: u32 = 7;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NF_INET_FORWARD: u32 = 2;
const NF_INET_POST_ROUTING: u32 = 4;
/// `filter` priority.
const NF_IP_PRI_FILTER: i32 = 0;
/// `srcnat` priority.
const NF_IP_PRI_NAT_SRC: i32 = 100;
const IFNAMSIZ: usize = 16;

const NAT_CHAIN: &str = "postrouting";
const FILTER_CHAIN: &str = "forward";

/// The table of the network behind `bridge`.
pub fn table_name(bridge: &str) -> String {
    format!("berth-{bridge}")
}

/// Create or replace, in one transaction, the table of a network: its isolation chain, and the
/// masquerade chain when asked (never for an internal network). "Add, delete, add" in one batch is how
/// `nft -f` replaces a table: whatever an earlier run left is gone, and at no moment is there no
/// table (a half-made one never exists either: the batch applies whole or not at all).
pub fn install_table(bridge: &str, subnet: Subnet, internal: bool, masquerade: bool) -> Result<()> {
    let table = table_name(bridge);
    let table_attr = attr_str(NFTA_TABLE_NAME, &table);
    let mut batch = Batch::default();
    batch.push(NFT_MSG_NEWTABLE, NLM_F_CREATE, &table_attr);
    batch.push(NFT_MSG_DELTABLE, 0, &table_attr);
    batch.push(NFT_MSG_NEWTABLE, NLM_F_CREATE, &table_attr);

    batch.push(
        NFT_MSG_NEWCHAIN,
        NLM_F_CREATE,
        &base_chain(
            &table,
            FILTER_CHAIN,
            "filter",
            NF_INET_FORWARD,
            NF_IP_PRI_FILTER,
        ),
    );
    let mut rules = vec![unsolicited_inbound_drop(bridge)];
    if internal {
        rules.push(outbound_drop(bridge));
    } else if masquerade {
        batch.push(
            NFT_MSG_NEWCHAIN,
            NLM_F_CREATE,
            &base_chain(
                &table,
                NAT_CHAIN,
                "nat",
                NF_INET_POST_ROUTING,
                NF_IP_PRI_NAT_SRC,
            ),
        );
        batch.push(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            &rule(&table, NAT_CHAIN, &masquerade_expressions(bridge, subnet)),
        );
    }
    for expressions in rules {
        batch.push(
            NFT_MSG_NEWRULE,
            NLM_F_CREATE | NLM_F_APPEND,
            &rule(&table, FILTER_CHAIN, &expressions),
        );
    }
    batch.send().map_err(|source| match source {
        BatchError::Socket(e) => FirewallError::Socket(e),
        BatchError::Kernel(source) => FirewallError::Kernel {
            op: "table setup",
            table,
            source,
        },
    })
}

/// Delete the network's table (and so its chains and rules); fine when it does not exist.
pub fn remove_table(bridge: &str) -> Result<()> {
    let table = table_name(bridge);
    let mut batch = Batch::default();
    batch.push(NFT_MSG_DELTABLE, 0, &attr_str(NFTA_TABLE_NAME, &table));
    match batch.send() {
        Ok(()) => Ok(()),
        Err(BatchError::Kernel(e)) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(BatchError::Socket(e)) => Err(FirewallError::Socket(e)),
        Err(BatchError::Kernel(source)) => Err(FirewallError::Kernel {
            op: "table delete",
            table,
            source,
        }),
    }
}

fn base_chain(table: &str, name: &str, kind: &str, hook: u32, priority: i32) -> Vec<u8> {
    let mut hook_attrs = attr_u32(NFTA_HOOK_HOOKNUM, hook);
    hook_attrs.extend(attr_u32(NFTA_HOOK_PRIORITY, priority as u32));
    let mut chain = attr_str(NFTA_CHAIN_TABLE, table);
    chain.extend(attr_str(NFTA_CHAIN_NAME, name));
    chain.extend(nested(NFTA_CHAIN_HOOK, &hook_attrs));
    chain.extend(attr_str(NFTA_CHAIN_TYPE, kind));
    chain
}

fn rule(table: &str, chain: &str, expressions: &[u8]) -> Vec<u8> {
    let mut r = attr_str(NFTA_RULE_TABLE, table);
    r.extend(attr_str(NFTA_RULE_CHAIN, chain));
    r.extend(nested(NFTA_RULE_EXPRESSIONS, expressions));
    r
}

/// `oifname <bridge> iifname != <bridge> ct state & (established|related) == 0 drop`: nothing
/// from another interface (another berth or Docker network, the LAN) opens a connection into
/// the network; replies to its own connections pass. Docker's `DOCKER ! -i br -o br -j DROP`
/// after its conntrack accept. Published ports need no hole: the proxy connects from the host.
fn unsolicited_inbound_drop(bridge: &str) -> Vec<u8> {
    let mut list = ifname_match(NFT_META_OIFNAME, NFT_CMP_EQ, bridge);
    list.extend(ifname_match(NFT_META_IIFNAME, NFT_CMP_NEQ, bridge));
    let mut ct = attr_u32(NFTA_CT_DREG, NFT_REG_1);
    ct.extend(attr_u32(NFTA_CT_KEY, NFT_CT_STATE));
    list.extend(expression("ct", &ct));
    // The conntrack state bits are in host byte order in the register.
    list.extend(expression(
        "bitwise",
        &bitwise(&CT_STATE_ESTABLISHED_RELATED.to_ne_bytes()),
    ));
    list.extend(expression("cmp", &cmp(NFT_CMP_EQ, &[0; 4])));
    list.extend(verdict(NF_DROP));
    list
}

/// `iifname <bridge> oifname != <bridge> drop`: an internal network reaches nothing outside.
fn outbound_drop(bridge: &str) -> Vec<u8> {
    let mut list = ifname_match(NFT_META_IIFNAME, NFT_CMP_EQ, bridge);
    list.extend(ifname_match(NFT_META_OIFNAME, NFT_CMP_NEQ, bridge));
    list.extend(verdict(NF_DROP));
    list
}

fn ifname_match(key: u32, op: u32, name: &str) -> Vec<u8> {
    let mut meta = attr_u32(NFTA_META_DREG, NFT_REG_1);
    meta.extend(attr_u32(NFTA_META_KEY, key));
    let mut list = expression("meta", &meta);
    let mut ifname = [0u8; IFNAMSIZ];
    let n = name.len().min(IFNAMSIZ - 1);
    ifname[..n].copy_from_slice(&name.as_bytes()[..n]);
    list.extend(expression("cmp", &cmp(op, &ifname)));
    list
}

fn bitwise(mask: &[u8]) -> Vec<u8> {
    let mut b = attr_u32(NFTA_BITWISE_SREG, NFT_REG_1);
    b.extend(attr_u32(NFTA_BITWISE_DREG, NFT_REG_1));
    b.extend(attr_u32(NFTA_BITWISE_LEN, mask.len() as u32));
    b.extend(nested(NFTA_BITWISE_MASK, &attr(NFTA_DATA_VALUE, mask)));
    b.extend(nested(
        NFTA_BITWISE_XOR,
        &attr(NFTA_DATA_VALUE, &vec![0; mask.len()]),
    ));
    b
}

fn verdict(code: u32) -> Vec<u8> {
    let mut imm = attr_u32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
    imm.extend(nested(
        NFTA_IMMEDIATE_DATA,
        &nested(NFTA_DATA_VERDICT, &attr_u32(NFTA_VERDICT_CODE, code)),
    ));
    expression("immediate", &imm)
}

/// `ip saddr <subnet> oifname != <bridge> masquerade`
fn masquerade_expressions(bridge: &str, subnet: Subnet) -> Vec<u8> {
    let mask = if subnet.prefix_len() == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(subnet.prefix_len()))
    };
    let mut payload = attr_u32(NFTA_PAYLOAD_DREG, NFT_REG_1);
    payload.extend(attr_u32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_NETWORK_HEADER));
    payload.extend(attr_u32(NFTA_PAYLOAD_OFFSET, 12)); // IPv4 source address
    payload.extend(attr_u32(NFTA_PAYLOAD_LEN, 4));
    let mut list = expression("payload", &payload);
    list.extend(expression("bitwise", &bitwise(&mask.to_be_bytes())));
    list.extend(expression(
        "cmp",
        &cmp(NFT_CMP_EQ, &subnet.network().octets()),
    ));
    list.extend(ifname_match(NFT_META_OIFNAME, NFT_CMP_NEQ, bridge));
    list.extend(expression("masq", &[]));
    list
}

fn cmp(op: u32, data: &[u8]) -> Vec<u8> {
    let mut c = attr_u32(NFTA_CMP_SREG, NFT_REG_1);
    c.extend(attr_u32(NFTA_CMP_OP, op));
    c.extend(nested(NFTA_CMP_DATA, &attr(NFTA_DATA_VALUE, data)));
    c
}

fn expression(name: &str, data: &[u8]) -> Vec<u8> {
    let mut e = attr_str(NFTA_EXPR_NAME, name);
    if !data.is_empty() {
        e.extend(nested(NFTA_EXPR_DATA, data));
    }
    nested(NFTA_LIST_ELEM, &e)
}

pub(super) fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut a = Vec::with_capacity((len + 3) & !3);
    a.extend_from_slice(&(len as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    a.resize((len + 3) & !3, 0);
    a
}

pub(super) fn nested(kind: u16, payload: &[u8]) -> Vec<u8> {
    attr(kind | NLA_F_NESTED, payload)
}

pub(super) fn attr_str(kind: u16, s: &str) -> Vec<u8> {
    let mut bytes = s.as_bytes().to_vec();
    bytes.push(0);
    attr(kind, &bytes)
}

/// nf_tables integers are big-endian.
pub(super) fn attr_u32(kind: u16, v: u32) -> Vec<u8> {
    attr(kind, &v.to_be_bytes())
}

/// The nf_tables ruleset generation: the kernel bumps it on every committed transaction, by
/// anyone (`nft`, iptables-nft, firewalld, another berth), so an unchanged number means nothing
/// in any nf_tables table changed. One request, no process.
pub fn generation() -> std::io::Result<u32> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    set_receive_timeout(&socket, Duration::from_secs(5))?;
    let request = message(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
        NLM_F_REQUEST,
        libc::AF_UNSPEC as u8,
        0,
        &[],
    );
    socket.send(&request, 0)?;
    let (data, _) = socket.recv_from_full()?;
    parse_generation(&data).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no generation in the nf_tables answer",
        )
    })
}

/// The `NFTA_GEN_ID` of a `NFT_MSG_NEWGEN` answer; `None` for anything else (an error message
/// when the kernel has no nf_tables, a truncated answer).
fn parse_generation(data: &[u8]) -> Option<u32> {
    let word = |at: usize| -> Option<[u8; 4]> { data.get(at..at + 4)?.try_into().ok() };
    let kind = u16::from_ne_bytes(data.get(4..6)?.try_into().ok()?);
    if kind != (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
        return None;
    }
    let len = (u32::from_ne_bytes(word(0)?) as usize).min(data.len());
    // nlmsghdr (16) + nfgenmsg (4), then the attributes.
    let mut at = 20;
    while at + 4 <= len {
        let header = word(at)?;
        let attr_len = u16::from_ne_bytes([header[0], header[1]]) as usize;
        let attr_kind = u16::from_ne_bytes([header[2], header[3]]) & !NLA_F_NESTED;
        if attr_len < 4 {
            return None;
        }
        if attr_kind == NFTA_GEN_ID && attr_len >= 8 {
            return Some(u32::from_be_bytes(word(at + 4)?));
        }
        at += (attr_len + 3) & !3;
    }
    None
}

enum BatchError {
    Socket(std::io::Error),
    Kernel(std::io::Error),
}

/// One nfnetlink transaction: everything in it applies, or nothing does.
#[derive(Default)]
struct Batch {
    messages: Vec<Vec<u8>>,
}

impl Batch {
    fn push(&mut self, msg: u16, flags: u16, attrs: &[u8]) {
        self.messages.push(message(
            (NFNL_SUBSYS_NFTABLES << 8) | msg,
            NLM_F_REQUEST | NLM_F_ACK | flags,
            NFPROTO_IPV4,
            0,
            attrs,
        ));
    }

    fn send(self) -> std::result::Result<(), BatchError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(BatchError::Socket)?;
        socket.bind_auto().map_err(BatchError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(BatchError::Socket)?;
        set_receive_timeout(&socket, Duration::from_secs(5)).map_err(BatchError::Socket)?;

        let expected = self.messages.len();
        let mut buf = message(
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        );
        for m in &self.messages {
            buf.extend_from_slice(m);
        }
        buf.extend(message(
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            0,
            NFNL_SUBSYS_NFTABLES,
            &[],
        ));
        // Sequence numbers: the begin message is 0, the others count from 1.
        let mut seq = 0u32;
        let mut offset = 0;
        while offset < buf.len() {
            let len = u32::from_ne_bytes([
                buf[offset],
                buf[offset + 1],
                buf[offset + 2],
                buf[offset + 3],
            ]) as usize;
            buf[offset + 8..offset + 12].copy_from_slice(&seq.to_ne_bytes());
            seq += 1;
            offset += len;
        }
        socket.send(&buf, 0).map_err(BatchError::Socket)?;

        let mut acked = 0;
        while acked < expected {
            let (data, _) = socket.recv_from_full().map_err(BatchError::Socket)?;
            let mut off = 0;
            while off + 16 <= data.len() {
                let len =
                    u32::from_ne_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]])
                        as usize;
                let kind = u16::from_ne_bytes([data[off + 4], data[off + 5]]);
                if len < 16 {
                    break;
                }
                if kind == NLMSG_ERROR && off + 20 <= data.len() {
                    let code = i32::from_ne_bytes([
                        data[off + 16],
                        data[off + 17],
                        data[off + 18],
                        data[off + 19],
                    ]);
                    if code != 0 {
                        return Err(BatchError::Kernel(std::io::Error::from_raw_os_error(-code)));
                    }
                    acked += 1;
                }
                off += (len + 3) & !3;
            }
        }
        Ok(())
    }
}

pub(super) fn message(kind: u16, flags: u16, family: u8, res_id: u16, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // sequence, set when batched
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    m.push(family);
    m.push(0); // NFNETLINK_V0
    m.extend_from_slice(&res_id.to_be_bytes());
    m.extend_from_slice(attrs);
    m
}

pub(super) fn set_receive_timeout(socket: &Socket, timeout: Duration) -> std::io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: 0,
    };
    // SAFETY: a valid timeval for SO_RCVTIMEO on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generation_is_read_from_a_newgen_answer_only() {
        let mut attrs = attr(3, b"nft\0");
        attrs.extend(attr_u32(NFTA_GEN_ID, 0x0102_0304));
        let answer = message(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN,
            0,
            0,
            0,
            &attrs,
        );
        assert_eq!(parse_generation(&answer), Some(0x0102_0304));

        let error = message(NLMSG_ERROR, 0, 0, 0, &[0; 20]);
        assert_eq!(parse_generation(&error), None);
        assert_eq!(parse_generation(&answer[..22]), None, "truncated");
    }
}
