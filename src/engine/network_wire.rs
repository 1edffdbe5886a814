//! Docker's network shapes (`wire`) to and from the network manager's own types
//! (`crate::network::spec`). Every field maps one to one, so what a client sends reads back the
//! same; the translation lives here so neither side depends on the other.

use std::collections::HashMap;

use indexmap::IndexMap;

use super::wire;
use crate::network::spec;

impl From<wire::NetworkCreateRequest> for spec::NetworkSpec {
    fn from(req: wire::NetworkCreateRequest) -> Self {
        spec::NetworkSpec {
            name: req.name,
            check_duplicate: req.check_duplicate,
            driver: req.driver,
            internal: req.internal,
            attachable: req.attachable,
            enable_ipv6: req.enable_ipv6,
            ipam: req.ipam.map(Into::into),
            options: req.options,
            labels: req.labels,
        }
    }
}

impl From<wire::Ipam> for spec::IpamSpec {
    fn from(ipam: wire::Ipam) -> Self {
        spec::IpamSpec {
            driver: ipam.driver,
            config: ipam.config.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<spec::IpamSpec> for wire::Ipam {
    fn from(ipam: spec::IpamSpec) -> Self {
        wire::Ipam {
            driver: ipam.driver,
            config: ipam.config.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<wire::IpamConfig> for spec::AddressPool {
    fn from(c: wire::IpamConfig) -> Self {
        spec::AddressPool {
            subnet: c.subnet,
            gateway: c.gateway,
            ip_range: c.ip_range,
        }
    }
}

impl From<spec::AddressPool> for wire::IpamConfig {
    fn from(c: spec::AddressPool) -> Self {
        wire::IpamConfig {
            subnet: c.subnet,
            gateway: c.gateway,
            ip_range: c.ip_range,
        }
    }
}

impl From<spec::Created> for wire::NetworkCreateResponse {
    fn from(c: spec::Created) -> Self {
        wire::NetworkCreateResponse {
            id: c.id,
            warning: c.warning,
        }
    }
}

impl From<spec::NetworkInfo> for wire::NetworkResource {
    fn from(n: spec::NetworkInfo) -> Self {
        wire::NetworkResource {
            name: n.name,
            id: n.id,
            created: n.created,
            scope: n.scope,
            driver: n.driver,
            enable_ipv6: n.enable_ipv6,
            ipam: n.ipam.into(),
            internal: n.internal,
            attachable: n.attachable,
            containers: n
                .containers
                .into_iter()
                .map(|(id, m)| (id, m.into()))
                .collect(),
            options: n.options,
            labels: n.labels,
        }
    }
}

impl From<spec::Member> for wire::NetworkContainer {
    fn from(m: spec::Member) -> Self {
        wire::NetworkContainer {
            name: m.name,
            endpoint_id: m.endpoint_id,
            mac_address: m.mac_address,
            ipv4_address: m.ipv4_address,
        }
    }
}

impl From<wire::EndpointSettings> for spec::Endpoint {
    fn from(e: wire::EndpointSettings) -> Self {
        spec::Endpoint {
            aliases: e.aliases,
            requested: e.ipam_config.map(|c| spec::RequestedAddress {
                ipv4_address: c.ipv4_address,
            }),
            network_id: e.network_id,
            endpoint_id: e.endpoint_id,
            gateway: e.gateway,
            ip_address: e.ip_address,
            ip_prefix_len: e.ip_prefix_len,
            mac_address: e.mac_address,
            dns_names: e.dns_names,
        }
    }
}

impl From<spec::Endpoint> for wire::EndpointSettings {
    fn from(e: spec::Endpoint) -> Self {
        wire::EndpointSettings {
            aliases: e.aliases,
            ipam_config: e.requested.map(|r| wire::EndpointIpamConfig {
                ipv4_address: r.ipv4_address,
            }),
            network_id: e.network_id,
            endpoint_id: e.endpoint_id,
            gateway: e.gateway,
            ip_address: e.ip_address,
            ip_prefix_len: e.ip_prefix_len,
            mac_address: e.mac_address,
            dns_names: e.dns_names,
        }
    }
}

/// `EndpointsConfig` / `NetworkSettings.Networks` (network name → endpoint), either way.
pub fn endpoints<A, B: From<A>>(map: IndexMap<String, A>) -> IndexMap<String, B> {
    map.into_iter().map(|(k, v)| (k, v.into())).collect()
}

/// Docker's `PortBindings` map to the manager's.
pub fn port_map(bindings: HashMap<String, Option<Vec<wire::PortBinding>>>) -> spec::PortMap {
    bindings
        .into_iter()
        .map(|(port, hosts)| {
            let hosts = hosts.map(|list| {
                list.into_iter()
                    .map(|b| spec::HostPort {
                        host_ip: b.host_ip,
                        host_port: b.host_port,
                    })
                    .collect()
            });
            (port, hosts)
        })
        .collect()
}

/// The manager's bound ports as Docker's `NetworkSettings.Ports`.
pub fn port_bindings(ports: spec::PortMap) -> HashMap<String, Option<Vec<wire::PortBinding>>> {
    ports
        .into_iter()
        .map(|(port, hosts)| {
            let hosts = hosts.map(|list| {
                list.into_iter()
                    .map(|h| wire::PortBinding {
                        host_ip: h.host_ip,
                        host_port: h.host_port,
                    })
                    .collect()
            });
            (port, hosts)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request with every field set comes back from the manager's types as it went in: the
    /// translation loses nothing a client would see in inspect.
    #[test]
    fn endpoint_settings_survive_the_round_trip() {
        let asked = wire::EndpointSettings {
            aliases: Some(vec!["db".into()]),
            ipam_config: Some(wire::EndpointIpamConfig {
                ipv4_address: "172.30.0.9".into(),
            }),
            network_id: "n1".into(),
            endpoint_id: "e1".into(),
            gateway: "172.30.0.1".into(),
            ip_address: "172.30.0.9".into(),
            ip_prefix_len: 16,
            mac_address: "02:42:ac:1e:00:09".into(),
            dns_names: Some(vec!["db".into(), "c1".into()]),
        };
        let back = wire::EndpointSettings::from(spec::Endpoint::from(asked.clone()));
        assert_eq!(back, asked);
        let empty_ipam = wire::EndpointSettings {
            ipam_config: Some(Default::default()),
            ..Default::default()
        };
        let back = wire::EndpointSettings::from(spec::Endpoint::from(empty_ipam.clone()));
        assert_eq!(back, empty_ipam);
    }

    #[test]
    fn port_bindings_survive_the_round_trip() {
        let asked: HashMap<String, Option<Vec<wire::PortBinding>>> = HashMap::from([
            (
                "80/tcp".to_string(),
                Some(vec![wire::PortBinding {
                    host_ip: "127.0.0.1".into(),
                    host_port: "8080".into(),
                }]),
            ),
            ("53/udp".to_string(), None),
        ]);
        assert_eq!(port_bindings(port_map(asked.clone())), asked);
    }

    #[test]
    fn ipam_pools_survive_the_round_trip() {
        let ipam = wire::Ipam {
            driver: "default".into(),
            config: vec![wire::IpamConfig {
                subnet: "10.9.0.0/24".into(),
                gateway: "10.9.0.1".into(),
                ip_range: "10.9.0.128/25".into(),
            }],
        };
        assert_eq!(wire::Ipam::from(spec::IpamSpec::from(ipam.clone())), ipam);
    }
}
