//! What the network manager takes and gives back, in its own types. The engine translates
//! Docker's API shapes (`engine::wire`) to and from these, so `network/` does not depend on the
//! engine and a change of the wire format stays on the engine's side.
//!
//! Plain data: no serde, no defaults beyond empty. An empty string means "not given" wherever
//! Docker's API means the same by an empty field.

use std::collections::HashMap;

use indexmap::IndexMap;

/// A network to create.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkSpec {
    pub name: String,
    /// Refuse the name when a network already has it (otherwise a second one is made, as
    /// Docker does).
    pub check_duplicate: bool,
    /// Only `bridge` (or empty, meaning `bridge`) for now.
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub ipam: Option<IpamSpec>,
    pub options: IndexMap<String, String>,
    pub labels: IndexMap<String, String>,
}

/// Address management of a network: as asked for at create, and as chosen in [`NetworkInfo`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IpamSpec {
    pub driver: String,
    pub config: Vec<AddressPool>,
}

/// One subnet of a network; empty fields are chosen by the manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPool {
    pub subnet: String,
    pub gateway: String,
    pub ip_range: String,
}

/// The answer to a create.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Created {
    pub id: String,
    pub warning: String,
}

/// A network as listed and inspected.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkInfo {
    pub name: String,
    pub id: String,
    /// RFC 3339.
    pub created: String,
    pub scope: String,
    pub driver: String,
    pub enable_ipv6: bool,
    pub ipam: IpamSpec,
    pub internal: bool,
    pub attachable: bool,
    /// Container ID → its endpoint on this network.
    pub containers: IndexMap<String, Member>,
    pub options: IndexMap<String, String>,
    pub labels: IndexMap<String, String>,
}

/// A container's endpoint as its network lists it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Member {
    pub name: String,
    pub endpoint_id: String,
    pub mac_address: String,
    /// `address/prefix`.
    pub ipv4_address: String,
}

/// A container's endpoint on one network: what is asked for (aliases, a fixed address) on the
/// way in, everything the manager chose on the way out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Endpoint {
    pub aliases: Option<Vec<String>>,
    /// The address asked for, when one is (`Some` with an empty address is kept as given, so a
    /// request reads back the way it was written).
    pub requested: Option<RequestedAddress>,
    pub network_id: String,
    pub endpoint_id: String,
    pub gateway: String,
    pub ip_address: String,
    pub ip_prefix_len: u8,
    pub mac_address: String,
    pub dns_names: Option<Vec<String>>,
}

/// A fixed address asked for an endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestedAddress {
    pub ipv4_address: String,
}

/// Where a container port is published on the host; empty fields mean "any address" and "a
/// free port".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPort {
    pub host_ip: String,
    pub host_port: String,
}

/// Container port (`80/tcp`) → where it is published (`None`: exposed, not published).
pub type PortMap = HashMap<String, Option<Vec<HostPort>>>;
