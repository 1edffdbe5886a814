//! The `/etc/hosts` and `/etc/resolv.conf` a container gets, written as Docker writes them for
//! user-defined networks, except that the name server is the network's gateway, where berth's
//! embedded DNS listens (the aardvark model), instead of Docker's in-namespace 127.0.0.11.

use std::fmt::Write;
use std::net::Ipv4Addr;

/// Docker's `/etc/hosts`: loopback and IPv6 boilerplate, then `extra_hosts`, then the
/// container's own address and hostname.
///
/// `extra_hosts` entries are `name:ip` (Docker API form) or `name=ip` (compose form); the
/// special value `host-gateway` becomes `gateway`. Malformed entries are returned as errors by
/// [`parse_extra_host`] before this is called.
pub fn hosts_file(
    hostname: &str,
    own_address: Option<Ipv4Addr>,
    extra_hosts: &[(String, String)],
) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (name, ip) in extra_hosts {
        let _ = writeln!(s, "{ip}\t{name}");
    }
    if let Some(ip) = own_address {
        if !hostname.is_empty() {
            let _ = writeln!(s, "{ip}\t{hostname}");
        }
    }
    s
}

/// Split one `extra_hosts` entry into (name, address), resolving `host-gateway`.
pub fn parse_extra_host(
    entry: &str,
    gateway: Option<Ipv4Addr>,
) -> Result<(String, String), String> {
    let (name, ip) = match entry.split_once('=') {
        Some(pair) => pair,
        None => entry
            .split_once(':')
            .ok_or_else(|| format!("invalid extra host {entry:?}: expected name:address"))?,
    };
    let (name, ip) = (
        name.trim(),
        ip.trim().trim_start_matches('[').trim_end_matches(']'),
    );
    if name.is_empty() || ip.is_empty() {
        return Err(format!(
            "invalid extra host {entry:?}: expected name:address"
        ));
    }
    let ip = if ip == "host-gateway" {
        match gateway {
            Some(gw) => gw.to_string(),
            None => {
                return Err(format!(
                "extra host {entry:?} uses host-gateway but the container has no network gateway"
            ))
            }
        }
    } else if ip.parse::<std::net::IpAddr>().is_ok() {
        ip.to_string()
    } else {
        return Err(format!(
            "invalid extra host {entry:?}: {ip:?} is not an IP address"
        ));
    };
    Ok((name.to_string(), ip))
}

/// `resolv.conf` pointing at the embedded DNS on `nameserver`, keeping the host's search
/// domains; `ndots:0` so a bare service name is tried as-is first, as Docker does.
pub fn resolv_conf(nameserver: Ipv4Addr, host_resolv: &str) -> String {
    let search = search_domains(host_resolv);
    let mut s = format!("nameserver {nameserver}\n");
    if !search.is_empty() {
        let _ = writeln!(s, "search {}", search.join(" "));
    }
    s.push_str("options ndots:0\n");
    s
}

/// `resolv` with Docker's `DnsSearch` and `DnsOptions` applied: given search domains replace
/// the file's (`.` alone means none), given options replace the file's, keeping the `ndots:0`
/// the embedded DNS needs unless the user set `ndots` themselves.
pub fn with_dns_settings(
    resolv: &str,
    search: Option<&[String]>,
    options: Option<&[String]>,
) -> String {
    let search = search.filter(|s| !s.is_empty());
    let options = options.filter(|o| !o.is_empty());
    if search.is_none() && options.is_none() {
        return resolv.to_string();
    }
    let mut out = String::new();
    let mut old_options: Vec<String> = Vec::new();
    for line in resolv.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("search") | Some("domain") if search.is_some() => {}
            Some("options") if options.is_some() => old_options.extend(words.map(str::to_string)),
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if let Some(search) = search {
        let domains: Vec<&str> = search
            .iter()
            .map(String::as_str)
            .filter(|d| *d != ".")
            .collect();
        if !domains.is_empty() {
            let _ = writeln!(out, "search {}", domains.join(" "));
        }
    }
    if let Some(options) = options {
        let mut all: Vec<String> = options.to_vec();
        if !all.iter().any(|o| o.starts_with("ndots:")) {
            all.extend(old_options.into_iter().filter(|o| o == "ndots:0"));
        }
        let _ = writeln!(out, "options {}", all.join(" "));
    }
    out
}

/// For a container without a bridge network (`none`): the host's file minus loopback name
/// servers, which would point at the container's own, empty, loopback.
pub fn resolv_conf_without_network(host_resolv: &str) -> String {
    host_resolv
        .lines()
        .filter(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr
                    .parse::<std::net::IpAddr>()
                    .map(|a| !a.is_loopback())
                    .unwrap_or(false),
                _ => true,
            }
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

pub fn search_domains(host_resolv: &str) -> Vec<String> {
    host_resolv
        .lines()
        .rev()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("search") | Some("domain") => Some(words.map(str::to_string).collect()),
                _ => None,
            }
        })
        .unwrap_or_default()
}

/// Name servers listed by the host's `resolv.conf`, for forwarding names berth does not know.
pub fn nameservers(host_resolv: &str) -> Vec<std::net::IpAddr> {
    host_resolv
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("nameserver"), Some(addr)) => addr.parse().ok(),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file_has_own_name_and_extra_hosts() {
        let extra = vec![
            parse_extra_host("db:10.1.2.3", None).unwrap(),
            parse_extra_host("gw=host-gateway", Some(Ipv4Addr::new(172, 18, 0, 1))).unwrap(),
            parse_extra_host("v6:::1", None).unwrap(),
        ];
        let h = hosts_file("web1", Some(Ipv4Addr::new(172, 18, 0, 2)), &extra);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("10.1.2.3\tdb\n"));
        assert!(h.contains("172.18.0.1\tgw\n"));
        assert!(h.contains("::1\tv6\n"));
        assert!(h.ends_with("172.18.0.2\tweb1\n"));
        assert_eq!(
            parse_extra_host("nocolon", None).unwrap_err(),
            "invalid extra host \"nocolon\": expected name:address"
        );
        assert!(parse_extra_host("x:notanip", None).is_err());
    }

    #[test]
    fn dns_search_and_options_replace_the_files() {
        let base = "nameserver 172.18.0.1\nsearch corp.example\noptions ndots:0\n";
        let search = ["svc.local".to_string(), "example.org".to_string()];
        let options = ["timeout:2".to_string(), "attempts:3".to_string()];
        assert_eq!(
            with_dns_settings(base, Some(&search), Some(&options)),
            "nameserver 172.18.0.1\nsearch svc.local example.org\noptions timeout:2 attempts:3 ndots:0\n"
        );
        assert_eq!(
            with_dns_settings(base, Some(&[".".to_string()]), None),
            "nameserver 172.18.0.1\noptions ndots:0\n"
        );
        assert_eq!(with_dns_settings(base, None, None), base);
    }

    #[test]
    fn resolv_conf_points_at_gateway_and_keeps_search() {
        let host = "nameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch corp.example lan\n";
        assert_eq!(
            resolv_conf(Ipv4Addr::new(172, 18, 0, 1), host),
            "nameserver 172.18.0.1\nsearch corp.example lan\noptions ndots:0\n"
        );
        assert_eq!(
            resolv_conf_without_network(host),
            "nameserver 10.0.0.1\nsearch corp.example lan\n"
        );
        assert_eq!(nameservers(host).len(), 2);
    }
}
