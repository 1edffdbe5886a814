//! IPv4 address management: subnets from Docker's local address pools, and container addresses
//! within a subnet.
//!
//! Pools follow moby's `ipamutils` defaults: 172.17–19.0.0/16, then 172.20.0.0/14, 172.24.0.0/14
//! and 172.28.0.0/14 split into /16s, then 192.168.0.0/16 split into /20s. A candidate is skipped
//! when it overlaps an address or a (non-default) route of the host, or another berth network.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum IpamError {
    #[error("invalid subnet {0:?}: expected an IPv4 CIDR such as 172.30.0.0/16")]
    BadSubnet(String),
    #[error("invalid address {0:?}: expected an IPv4 address")]
    BadAddress(String),
    #[error("address {address} is not in subnet {subnet}")]
    OutsideSubnet { address: Ipv4Addr, subnet: Subnet },
    #[error("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")]
    PoolsExhausted,
    #[error("no available IPv4 address left in subnet {0}")]
    SubnetFull(Subnet),
    #[error("address {0} is already in use")]
    AddressInUse(Ipv4Addr),
}

/// An IPv4 network in CIDR form, always stored with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix_len: u8,
}

impl Subnet {
    pub fn new(address: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        if prefix_len > 32 {
            return None;
        }
        Some(Self {
            network: Ipv4Addr::from(u32::from(address) & mask(prefix_len)),
            prefix_len,
        })
    }
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }
    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }
    fn first(&self) -> u32 {
        u32::from(self.network)
    }
    fn last(&self) -> u32 {
        self.first() | !mask(self.prefix_len)
    }
    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix_len) == self.first()
    }
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }
    /// The conventional gateway: the first host address.
    pub fn default_gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first().saturating_add(1))
    }
    /// Split into subnets of `prefix_len` (which must be at least this one's).
    fn split(&self, prefix_len: u8) -> impl Iterator<Item = Subnet> {
        let base = self.first();
        let count = 1u64 << (prefix_len.saturating_sub(self.prefix_len));
        let step = 1u64 << (32 - u32::from(prefix_len));
        (0..count).map(move |i| Subnet {
            network: Ipv4Addr::from(base.wrapping_add((i * step) as u32)),
            prefix_len,
        })
    }

    /// First address of the subnet (within `range` when the network has an `IPRange`) usable
    /// for a container: not the network or broadcast address, not the gateway, not in `used`.
    pub fn first_free(
        &self,
        range: Option<Subnet>,
        gateway: Ipv4Addr,
        used: &[Ipv4Addr],
    ) -> Result<Ipv4Addr, IpamError> {
        let (mut lo, mut hi) = if self.prefix_len >= 31 {
            (self.first(), self.last())
        } else {
            (self.first() + 1, self.last() - 1)
        };
        if let Some(r) = range {
            lo = lo.max(r.first());
            hi = hi.min(r.last());
        }
        (lo..=hi)
            .map(Ipv4Addr::from)
            .find(|a| *a != gateway && !used.contains(a))
            .ok_or(IpamError::SubnetFull(*self))
    }

    /// Check a requested static address.
    pub fn check_static(
        &self,
        address: Ipv4Addr,
        gateway: Ipv4Addr,
        used: &[Ipv4Addr],
    ) -> Result<(), IpamError> {
        if !self.contains(address) {
            return Err(IpamError::OutsideSubnet {
                address,
                subnet: *self,
            });
        }
        if address == gateway || used.contains(&address) {
            return Err(IpamError::AddressInUse(address));
        }
        Ok(())
    }
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Subnet {
    type Err = IpamError;
    fn from_str(s: &str) -> Result<Self, IpamError> {
        let bad = || IpamError::BadSubnet(s.to_string());
        let (addr, len) = s.trim().split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        Subnet::new(addr, len).ok_or_else(bad)
    }
}

pub fn parse_address(s: &str) -> Result<Ipv4Addr, IpamError> {
    s.trim()
        .parse()
        .map_err(|_| IpamError::BadAddress(s.to_string()))
}

/// Docker's default local pools, in the order Docker tries them.
pub fn default_pools() -> impl Iterator<Item = Subnet> {
    let bases: [(Ipv4Addr, u8, u8); 7] = [
        (Ipv4Addr::new(172, 17, 0, 0), 16, 16),
        (Ipv4Addr::new(172, 18, 0, 0), 16, 16),
        (Ipv4Addr::new(172, 19, 0, 0), 16, 16),
        (Ipv4Addr::new(172, 20, 0, 0), 14, 16),
        (Ipv4Addr::new(172, 24, 0, 0), 14, 16),
        (Ipv4Addr::new(172, 28, 0, 0), 14, 16),
        (Ipv4Addr::new(192, 168, 0, 0), 16, 20),
    ];
    bases.into_iter().flat_map(|(addr, len, split)| {
        Subnet::new(addr, len)
            .into_iter()
            .flat_map(move |s| s.split(split))
    })
}

/// The first default pool that overlaps nothing in `taken`.
pub fn pick_subnet(taken: &[Subnet]) -> Result<Subnet, IpamError> {
    default_pools()
        .find(|candidate| !taken.iter().any(|t| t.overlaps(candidate)))
        .ok_or(IpamError::PoolsExhausted)
}

/// Docker's container MAC: 02:42 followed by the four bytes of the IPv4 address.
pub fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let o = address.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_follow_docker_order_and_count() {
        let pools: Vec<String> = default_pools().map(|s| s.to_string()).collect();
        assert_eq!(pools[0], "172.17.0.0/16");
        assert_eq!(pools[3], "172.20.0.0/16");
        assert_eq!(pools[14], "172.31.0.0/16");
        assert_eq!(pools[15], "192.168.0.0/20");
        assert_eq!(pools[16], "192.168.16.0/20");
        assert_eq!(pools.len(), 31);
    }

    #[test]
    fn pick_skips_overlapping_subnets() {
        let taken: Vec<Subnet> = ["172.17.0.1/16", "172.18.5.0/24", "10.0.0.0/8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(pick_subnet(&taken).unwrap().to_string(), "172.19.0.0/16");
        // A host route covering all of 172.16/12 pushes us to 192.168.
        let wide: Vec<Subnet> = vec!["172.16.0.0/12".parse().unwrap()];
        assert_eq!(pick_subnet(&wide).unwrap().to_string(), "192.168.0.0/20");
        let all: Vec<Subnet> = vec![
            "172.16.0.0/12".parse().unwrap(),
            "192.168.0.0/16".parse().unwrap(),
        ];
        assert_eq!(pick_subnet(&all), Err(IpamError::PoolsExhausted));
    }

    #[test]
    fn addresses_skip_network_gateway_and_used() {
        let s: Subnet = "10.9.0.0/29".parse().unwrap();
        let gw = s.default_gateway();
        assert_eq!(gw, Ipv4Addr::new(10, 9, 0, 1));
        let a = s.first_free(None, gw, &[]).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 9, 0, 2));
        let used: Vec<Ipv4Addr> = (2..=6).map(|i| Ipv4Addr::new(10, 9, 0, i)).collect();
        assert_eq!(s.first_free(None, gw, &used), Err(IpamError::SubnetFull(s)));
        let range: Subnet = "10.9.0.4/30".parse().unwrap();
        assert_eq!(
            s.first_free(Some(range), gw, &[Ipv4Addr::new(10, 9, 0, 4)]),
            Ok(Ipv4Addr::new(10, 9, 0, 5))
        );
        assert_eq!(
            s.check_static(Ipv4Addr::new(10, 9, 1, 3), gw, &[])
                .unwrap_err()
                .to_string(),
            "address 10.9.1.3 is not in subnet 10.9.0.0/29"
        );
        assert!(s.check_static(gw, gw, &[]).is_err());
    }

    #[test]
    fn bad_subnet_text_is_named() {
        assert_eq!(
            "172.30.0.0".parse::<Subnet>().unwrap_err().to_string(),
            "invalid subnet \"172.30.0.0\": expected an IPv4 CIDR such as 172.30.0.0/16"
        );
        assert_eq!(
            format_mac(mac_for(Ipv4Addr::new(172, 18, 0, 2))),
            "02:42:ac:12:00:02"
        );
    }
}
