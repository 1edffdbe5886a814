//! The Linux bridge behind a berth network: `br-<12 hex of the network ID>` carrying the
//! gateway address, and the host ends of container veth pairs plugged into it.

use std::net::Ipv4Addr;
use std::path::Path;

use super::netlink::{Netlink, NetlinkError};
use super::netns;
use super::NetworkError;

/// Bridge name for a network ID, as Docker names it.
pub fn bridge_name(network_id: &str) -> String {
    format!("br-{}", &network_id[..12.min(network_id.len())])
}

/// A stable locally administered unicast MAC derived from the bridge name.
fn bridge_mac(name: &str) -> [u8; 6] {
    use sha2::Digest;
    let d = sha2::Sha256::digest(name.as_bytes());
    [0x02, d[0], d[1], d[2], d[3], d[4]]
}

/// Create the bridge (or adopt an existing one of that name), give it the gateway address and
/// bring it up. Undoes its own creation when a later step fails.
pub fn ensure(
    nl: &mut Netlink,
    name: &str,
    gateway: Ipv4Addr,
    prefix_len: u8,
) -> Result<(), NetworkError> {
    let created = if nl.link_index(name).map_err(kernel(name))?.is_none() {
        nl.create_bridge(name, bridge_mac(name))
            .map_err(kernel(name))?;
        true
    } else {
        false
    };
    let configured = nl
        .add_address(name, gateway, prefix_len)
        .and_then(|()| nl.set_up(name));
    if let Err(e) = configured {
        if created {
            let _ = nl.delete_link(name);
        }
        return Err(kernel(name)(e));
    }
    Ok(())
}

/// Plug a container into the bridge: a veth pair whose peer is born inside the container's
/// namespace as `ifname` with `mac`, host end `host_veth` enslaved to `bridge` and up, then
/// inside the namespace the address, the link up and (for the first network) the default route.
#[allow(clippy::too_many_arguments)]
pub fn plug(
    host: &mut Netlink,
    netns_path: &Path,
    inside: &mut Netlink,
    bridge: &str,
    host_veth: &str,
    ifname: &str,
    mac: [u8; 6],
    address: Ipv4Addr,
    prefix_len: u8,
    default_via: Option<Ipv4Addr>,
) -> Result<(), NetworkError> {
    let ns = netns::open(netns_path)?;
    use std::os::fd::AsRawFd;
    host.create_veth_into(host_veth, ifname, mac, ns.as_raw_fd())
        .map_err(kernel(host_veth))?;
    let result = (|| -> Result<(), NetlinkError> {
        host.set_master(host_veth, bridge)?;
        host.set_up(host_veth)?;
        inside.add_address(ifname, address, prefix_len)?;
        inside.set_up(ifname)?;
        if let Some(gw) = default_via {
            inside.add_default_route(gw)?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = host.delete_link(host_veth);
        return Err(kernel(host_veth)(e));
    }
    Ok(())
}

fn kernel(object: &str) -> impl Fn(NetlinkError) -> NetworkError + '_ {
    move |e| NetworkError::Kernel {
        object: object.to_string(),
        source: e,
    }
}
