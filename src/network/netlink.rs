//! A small synchronous route-netlink client: the link, address and route operations a bridge
//! network needs, sent over a `NETLINK_ROUTE` socket of the network namespace it was opened in.
//!
//! Synchronous on purpose (as netavark's `network/netlink.rs`): a netlink socket stays bound to
//! the namespace of the thread that created it, so a short-lived thread can enter a container's
//! namespace, open the socket and exit, and the socket is then used from anywhere without ever
//! moving a tokio worker into another namespace. Messages are built with the types of
//! `netlink-packet-route` (and rtnetlink's builders); every request waits for the kernel's ack.

use std::net::Ipv4Addr;
use std::os::fd::RawFd;

use rtnetlink::packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("netlink {op} failed")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink {op}: kernel answered an unparsable message: {detail}")]
    Decode { op: String, detail: String },
    #[error("network interface {0} not found")]
    NoSuchLink(String),
}

impl NetlinkError {
    /// The errno the kernel answered with, if this is a kernel refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, NetlinkError>;

/// An IPv4 address assigned to some interface of the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAddress {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
}

/// An IPv4 route destination of the namespace (any table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRoute {
    pub destination: Ipv4Addr,
    pub prefix_len: u8,
}

pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// A socket in the network namespace of the calling thread.
    pub fn open() -> Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Self { socket, seq: 1 })
    }

    /// Send one request and collect every message of the answer until the ack / done.
    fn request(
        &mut self,
        op: &str,
        payload: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        let mut msg = NetlinkMessage::new(NetlinkHeader::default(), payload.into());
        msg.header.flags = flags;
        self.seq = self.seq.wrapping_add(1);
        msg.header.sequence_number = self.seq;
        msg.finalize();
        let mut buf = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut buf);
        let io_err = |source| NetlinkError::Io {
            op: op.to_string(),
            source,
        };
        self.socket.send(&buf, 0).map_err(io_err)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full().map_err(io_err)?;
            let mut offset = 0;
            while offset < data.len() {
                let reply: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&data[offset..]).map_err(|e| {
                        NetlinkError::Decode {
                            op: op.to_string(),
                            detail: e.to_string(),
                        }
                    })?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Err(NetlinkError::Decode {
                        op: op.to_string(),
                        detail: "zero-length message".into(),
                    });
                }
                offset += (len + 3) & !3;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => match e.code {
                        Some(code) => {
                            return Err(io_err(std::io::Error::from_raw_os_error(-code.get())))
                        }
                        None => return Ok(out),
                    },
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump {
                            continue;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn ack(&mut self, op: &str, payload: RouteNetlinkMessage, create: bool) -> Result<()> {
        let mut flags = NLM_F_REQUEST | NLM_F_ACK;
        if create {
            flags |= NLM_F_CREATE | NLM_F_EXCL;
        }
        self.request(op, payload, flags).map(|_| ())
    }

    /// Index of the interface called `name`, or `None` when there is none.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let msg = LinkUnspec::new_with_name(name).build();
        match self.request(
            &format!("get link {name}"),
            RouteNetlinkMessage::GetLink(msg),
            NLM_F_REQUEST | NLM_F_ACK,
        ) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn require_index(&mut self, name: &str) -> Result<u32> {
        self.link_index(name)?
            .ok_or_else(|| NetlinkError::NoSuchLink(name.to_string()))
    }

    /// Names of every interface of the namespace.
    pub fn link_names(&mut self) -> Result<Vec<String>> {
        let replies = self.request(
            "dump links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_REQUEST | NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n),
                    _ => None,
                }),
                _ => None,
            })
            .collect())
    }

    /// Create a bridge (down; `set_up` it once it has its address) with a fixed MAC: without
    /// one the bridge takes the lowest MAC of its ports and changes it whenever a container is
    /// plugged in, leaving stale gateway entries in the other containers' ARP caches.
    pub fn create_bridge(&mut self, name: &str, mac: [u8; 6]) -> Result<()> {
        let mut msg = LinkBridge::new(name).address(mac.to_vec()).build();
        // Created down; brought up after the address is on.
        msg.header.flags.remove(LinkFlags::Up);
        self.ack(
            &format!("create bridge {name}"),
            RouteNetlinkMessage::NewLink(msg),
            true,
        )
    }

    /// Create a veth pair whose host end `host_name` stays here and whose peer is created
    /// directly inside the namespace `netns_fd` as `peer_name` with MAC `peer_mac`, so the
    /// peer never exists under a name that could clash in the host namespace.
    pub fn create_veth_into(
        &mut self,
        host_name: &str,
        peer_name: &str,
        peer_mac: [u8; 6],
        netns_fd: RawFd,
    ) -> Result<()> {
        let peer = LinkUnspec::new_with_name(peer_name)
            .address(peer_mac.to_vec())
            .setns_by_fd(netns_fd)
            .build();
        let mut msg = LinkMessageBuilder::<LinkUnspec>::default()
            .name(host_name.to_string())
            .build();
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.ack(
            &format!("create veth {host_name}"),
            RouteNetlinkMessage::NewLink(msg),
            true,
        )
    }

    /// Delete an interface; `Ok(false)` when it did not exist.
    pub fn delete_link(&mut self, name: &str) -> Result<bool> {
        let Some(index) = self.link_index(name)? else {
            return Ok(false);
        };
        let msg = LinkUnspec::new_with_index(index).build();
        match self.ack(
            &format!("delete link {name}"),
            RouteNetlinkMessage::DelLink(msg),
            false,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub fn set_up(&mut self, name: &str) -> Result<()> {
        let index = self.require_index(name)?;
        let mut msg = LinkUnspec::new_with_index(index).build();
        msg.header.flags |= LinkFlags::Up;
        msg.header.change_mask |= LinkFlags::Up;
        self.ack(
            &format!("set {name} up"),
            RouteNetlinkMessage::SetLink(msg),
            false,
        )
    }

    /// Enslave `name` to the bridge `bridge`.
    pub fn set_master(&mut self, name: &str, bridge: &str) -> Result<()> {
        let index = self.require_index(name)?;
        let master = self.require_index(bridge)?;
        let msg = LinkUnspec::new_with_index(index).controller(master).build();
        self.ack(
            &format!("attach {name} to {bridge}"),
            RouteNetlinkMessage::SetLink(msg),
            false,
        )
    }

    /// Assign `address/prefix_len` to interface `name`.
    pub fn add_address(&mut self, name: &str, address: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let index = self.require_index(name)?;
        let msg = address_message(index, address, prefix_len);
        match self.ack(
            &format!("add address {address}/{prefix_len} to {name}"),
            RouteNetlinkMessage::NewAddress(msg),
            true,
        ) {
            Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }

    /// Take `address/prefix_len` off interface `name` (and with it the prefix route); fine when
    /// the interface or the address is already gone.
    pub fn delete_address(&mut self, name: &str, address: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let Some(index) = self.link_index(name)? else {
            return Ok(());
        };
        let msg = address_message(index, address, prefix_len);
        match self.ack(
            &format!("delete address {address}/{prefix_len} from {name}"),
            RouteNetlinkMessage::DelAddress(msg),
            false,
        ) {
            Err(e) if matches!(e.errno(), Some(libc::EADDRNOTAVAIL | libc::ENODEV)) => Ok(()),
            other => other,
        }
    }

    /// Default route via `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        self.ack(
            &format!("add default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(msg),
            true,
        )
    }

    /// Every IPv4 address of the namespace.
    pub fn ipv4_addresses(&mut self) -> Result<Vec<HostAddress>> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        let replies = self.request(
            "dump addresses",
            RouteNetlinkMessage::GetAddress(req),
            NLM_F_REQUEST | NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => {
                    let prefix_len = a.header.prefix_len;
                    a.attributes.into_iter().find_map(|attr| match attr {
                        AddressAttribute::Local(std::net::IpAddr::V4(address))
                        | AddressAttribute::Address(std::net::IpAddr::V4(address)) => {
                            Some(HostAddress {
                                address,
                                prefix_len,
                            })
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Every IPv4 route destination of the namespace, in every table.
    pub fn ipv4_routes(&mut self) -> Result<Vec<HostRoute>> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
        let replies = self.request(
            "dump routes",
            RouteNetlinkMessage::GetRoute(req),
            NLM_F_REQUEST | NLM_F_DUMP,
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => {
                    let prefix_len = r.header.destination_prefix_length;
                    let destination = r
                        .attributes
                        .iter()
                        .find_map(|attr| match attr {
                            RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(*a),
                            _ => None,
                        })
                        .unwrap_or(Ipv4Addr::UNSPECIFIED);
                    Some(HostRoute {
                        destination,
                        prefix_len,
                    })
                }
                _ => None,
            })
            .collect())
    }
}

/// An IPv4 address message for interface `index` (with its broadcast, as `ip addr add` sets it).
fn address_message(index: u32, address: Ipv4Addr, prefix_len: u8) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet;
    msg.header.prefix_len = prefix_len;
    msg.header.index = index;
    msg.attributes
        .push(AddressAttribute::Address(std::net::IpAddr::V4(address)));
    msg.attributes
        .push(AddressAttribute::Local(std::net::IpAddr::V4(address)));
    if prefix_len < 31 {
        let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
        let broadcast = Ipv4Addr::from(u32::from(address) | host_bits);
        msg.attributes.push(AddressAttribute::Broadcast(broadcast));
    }
    msg
}
