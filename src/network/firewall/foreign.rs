//! nftables `forward` base chains of other programs whose policy drops: berth does not edit
//! them (see the parent module) but names each one, with the rules that would let the network
//! through, so the admin can decide.

use super::Runner;

/// Tables berth handles itself: its own, iptables-nft's `filter` (through iptables) and
/// firewalld's (through `firewall-cmd`).
fn handled(family: &str, table: &str, chain: &str) -> bool {
    table.starts_with("berth-")
        || (matches!(family, "ip" | "ip6") && table == "filter" && chain == "FORWARD")
        || (family == "inet" && table == "firewalld")
}

/// `(family, table, chain)` of every unhandled `forward` base chain with policy drop in the
/// output of `nft -j list chains`. IPv6-only chains do not see berth's IPv4 traffic.
pub fn dropping_chains(json: &str) -> Vec<(String, String, String)> {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let items = value["nftables"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .filter_map(|item| item.get("chain"))
        .filter(|c| c["hook"] == "forward" && c["policy"] == "drop")
        .filter_map(|c| {
            let field = |k: &str| c[k].as_str().map(str::to_string);
            Some((field("family")?, field("table")?, field("name")?))
        })
        .filter(|(f, t, c)| f != "ip6" && !handled(f, t, c))
        .collect()
}

/// One warning per dropping chain, with the two rules to add.
pub fn warning(bridge: &str, (family, table, chain): &(String, String, String)) -> String {
    format!(
        "nftables chain `{family} {table} {chain}` drops forwarded traffic by policy and berth \
         does not edit other programs' tables: containers on {bridge} cannot reach each other or \
         the outside until you add `nft insert rule {family} {table} {chain} iifname \"{bridge}\" \
         accept` and `nft insert rule {family} {table} {chain} oifname \"{bridge}\" ct state \
         established,related accept`"
    )
}

/// Warnings for `bridge`; none when `nft` is not installed or cannot list (then no such chain
/// can be named, and nftables without `nft` is rare enough not to guess further).
pub fn warnings(runner: &mut dyn Runner, bridge: &str) -> Vec<String> {
    if !runner.installed("nft") {
        return Vec::new();
    }
    let args = ["-j", "list", "chains"].map(String::from);
    match runner.run("nft", &args) {
        Ok(out) if out.success => dropping_chains(&out.stdout)
            .iter()
            .map(|c| warning(bridge, c))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped as `nft -j list chains` (nftables 1.0.6) prints it.
    const CHAINS: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
 {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
 {"chain": {"family": "ip", "table": "berth-br-1", "name": "forward", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
 {"chain": {"family": "inet", "table": "firewalld", "name": "filter_FORWARD", "handle": 3, "type": "filter", "hook": "forward", "prio": 10, "policy": "drop"}},
 {"chain": {"family": "inet", "table": "filter", "name": "forward", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
 {"chain": {"family": "inet", "table": "filter", "name": "input", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
 {"chain": {"family": "ip6", "table": "v6", "name": "fw", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}},
 {"chain": {"family": "inet", "table": "filter", "name": "DOCKER-USER", "handle": 4}}]}"#;

    #[test]
    fn only_unhandled_ipv4_forward_chains_with_drop_policy_are_named() {
        assert_eq!(
            dropping_chains(CHAINS),
            [("inet".into(), "filter".into(), "forward".into())]
        );
        assert!(dropping_chains("not json").is_empty());
    }

    #[test]
    fn the_warning_gives_the_rules_to_add() {
        let w = warning("br-x", &("inet".into(), "filter".into(), "forward".into()));
        assert!(
            w.contains("nft insert rule inet filter forward iifname \"br-x\" accept"),
            "{w}"
        );
        assert!(
            w.contains("oifname \"br-x\" ct state established,related accept"),
            "{w}"
        );
    }
}
