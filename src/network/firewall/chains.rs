//! The nftables base chains the kernel has, in every table and family, listed with one
//! nf_tables netlink dump (`NFT_MSG_GETCHAIN`) instead of an `nft -j list chains` process.

use std::time::Duration;

use rtnetlink::sys::{Socket, SocketAddr};

use super::nft::{message, set_receive_timeout, NETLINK_NETFILTER, NFNL_SUBSYS_NFTABLES};

const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_GETCHAIN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_HOOK_HOOKNUM: u16 = 1;
/// `NF_INET_FORWARD`, also `NF_BR_FORWARD` and `NF_ARP_FORWARD`: `nft` names all `forward`.
pub const HOOK_FORWARD: u32 = 2;
/// `NF_DROP`.
pub const POLICY_DROP: u32 = 0;

/// A base chain (one on a hook) as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    /// As `nft` names the family: `ip`, `ip6`, `inet`, `arp`, `bridge`, `netdev`.
    pub family: String,
    pub table: String,
    pub name: String,
    pub hook: u32,
    /// `None` when the kernel gives none.
    pub policy: Option<u32>,
}

/// Every base chain of this network namespace's nf_tables.
pub fn base_chains() -> std::io::Result<Vec<BaseChain>> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    set_receive_timeout(&socket, Duration::from_secs(5))?;
    let request = message(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN,
        NLM_F_REQUEST | NLM_F_DUMP,
        libc::AF_UNSPEC as u8,
        0,
        &[],
    );
    socket.send(&request, 0)?;
    let mut chains = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full()?;
        if parse_dump(&data, &mut chains)? {
            return Ok(chains);
        }
    }
}

/// Adds the base chains of one answer datagram to `chains`; true once the dump is done.
fn parse_dump(data: &[u8], chains: &mut Vec<BaseChain>) -> std::io::Result<bool> {
    let mut off = 0;
    while off + 16 <= data.len() {
        let len = u32::from_ne_bytes(data[off..off + 4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes([data[off + 4], data[off + 5]]);
        if len < 16 || off + len > data.len() {
            break;
        }
        let body = &data[off + 16..off + len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = body
                    .get(..4)
                    .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                if code != 0 {
                    return Err(std::io::Error::from_raw_os_error(-code));
                }
            }
            k if k == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN => {
                chains.extend(parse_chain(body));
            }
            _ => {}
        }
        off += (len + 3) & !3;
    }
    Ok(false)
}

/// One `NFT_MSG_NEWCHAIN` after its netlink header: `nfgenmsg`, then attributes. `None` for a
/// regular chain (no hook) or a malformed message.
fn parse_chain(body: &[u8]) -> Option<BaseChain> {
    let family = family_name(*body.first()?)?;
    let (mut table, mut name, mut hook, mut policy) = (None, None, None, None);
    for (kind, payload) in attributes(body.get(4..)?) {
        match kind {
            NFTA_CHAIN_TABLE => table = c_string(payload),
            NFTA_CHAIN_NAME => name = c_string(payload),
            NFTA_CHAIN_POLICY => policy = be_u32(payload),
            NFTA_CHAIN_HOOK => {
                hook = attributes(payload)
                    .find(|(k, _)| *k == NFTA_HOOK_HOOKNUM)
                    .and_then(|(_, p)| be_u32(p));
            }
            _ => {}
        }
    }
    Some(BaseChain {
        family: family.to_string(),
        table: table?,
        name: name?,
        hook: hook?,
        policy,
    })
}

/// `nfproto` numbers as `nft` names them; `None` for families `nft` does not list.
fn family_name(nfproto: u8) -> Option<&'static str> {
    Some(match nfproto {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => return None,
    })
}

/// (kind without the nested flag, payload) of each attribute; stops at a malformed one.
fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16::from_ne_bytes([*data.first()?, *data.get(1)?]) as usize;
        let kind = u16::from_ne_bytes([*data.get(2)?, *data.get(3)?]) & !NLA_F_NESTED;
        if len < 4 || len > data.len() {
            return None;
        }
        let payload = &data[4..len];
        data = &data[((len + 3) & !3).min(data.len())..];
        Some((kind, payload))
    })
}

fn c_string(payload: &[u8]) -> Option<String> {
    let end = payload
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(payload.len());
    String::from_utf8(payload[..end].to_vec()).ok()
}

fn be_u32(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(..4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::super::nft::{attr, attr_str, attr_u32, nested};
    use super::*;

    fn chain_message(
        family: u8,
        table: &str,
        name: &str,
        hook: Option<u32>,
        policy: u32,
    ) -> Vec<u8> {
        let mut attrs = attr_str(NFTA_CHAIN_TABLE, table);
        attrs.extend(attr_str(NFTA_CHAIN_NAME, name));
        if let Some(h) = hook {
            attrs.extend(nested(NFTA_CHAIN_HOOK, &attr_u32(NFTA_HOOK_HOOKNUM, h)));
            attrs.extend(attr_u32(NFTA_CHAIN_POLICY, policy));
        }
        message(
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWCHAIN,
            0,
            family,
            0,
            &attrs,
        )
    }

    #[test]
    fn a_dump_yields_base_chains_with_family_hook_and_policy_until_done() {
        let mut data = chain_message(1, "filter", "forward", Some(HOOK_FORWARD), POLICY_DROP);
        data.extend(chain_message(2, "filter", "DOCKER", None, 0));
        data.extend(chain_message(10, "t6", "fwd", Some(HOOK_FORWARD), 1));
        let mut chains = Vec::new();
        assert!(!parse_dump(&data, &mut chains).unwrap());
        assert_eq!(
            chains,
            [
                BaseChain {
                    family: "inet".into(),
                    table: "filter".into(),
                    name: "forward".into(),
                    hook: HOOK_FORWARD,
                    policy: Some(POLICY_DROP),
                },
                BaseChain {
                    family: "ip6".into(),
                    table: "t6".into(),
                    name: "fwd".into(),
                    hook: HOOK_FORWARD,
                    policy: Some(1),
                },
            ]
        );
        let done = message(NLMSG_DONE, 0, 0, 0, &[]);
        assert!(parse_dump(&done, &mut chains).unwrap());
    }

    #[test]
    fn an_error_answer_is_the_kernels_error() {
        let mut error = message(NLMSG_ERROR, 0, 0, 0, &[]);
        error.truncate(16);
        error.extend_from_slice(&(-libc::EPROTONOSUPPORT).to_ne_bytes());
        error[..4].copy_from_slice(&20u32.to_ne_bytes());
        let e = parse_dump(&error, &mut Vec::new()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPROTONOSUPPORT));
        assert!(attributes(&attr(1, b"x")[..3]).next().is_none());
    }
}
