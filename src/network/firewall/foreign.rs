//! nftables `forward` base chains of other programs whose policy drops: berth does not edit
//! them (see the parent module) but names each one, with the rules that would let the network
//! through, so the admin can decide.

use super::chains::{base_chains, BaseChain, HOOK_FORWARD, POLICY_DROP};
use super::Runner;

/// Tables berth handles itself: its own, iptables-nft's `filter` (through iptables) and
/// firewalld's (through `firewall-cmd`).
fn handled(family: &str, table: &str, chain: &str) -> bool {
    table.starts_with("berth-")
        || (matches!(family, "ip" | "ip6") && table == "filter" && chain == "FORWARD")
        || (family == "inet" && table == "firewalld")
}

/// `(family, table, chain)` of every unhandled `forward` base chain with policy drop.
/// IPv6-only chains do not see berth's IPv4 traffic.
pub fn dropping_chains(chains: &[BaseChain]) -> Vec<(String, String, String)> {
    chains
        .iter()
        .filter(|c| c.hook == HOOK_FORWARD && c.policy == Some(POLICY_DROP))
        .filter(|c| c.family != "ip6" && !handled(&c.family, &c.table, &c.name))
        .map(|c| (c.family.clone(), c.table.clone(), c.name.clone()))
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

/// Warnings for `bridge`; none when `nft` is not installed (as before the chains were read
/// over netlink: such a host gets no advice in `nft` syntax) or the kernel cannot list them.
pub fn warnings(runner: &mut dyn Runner, bridge: &str) -> Vec<String> {
    if !runner.installed("nft") {
        return Vec::new();
    }
    match base_chains() {
        Ok(chains) => dropping_chains(&chains)
            .iter()
            .map(|c| warning(bridge, c))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(family: &str, table: &str, name: &str, hook: u32, policy: Option<u32>) -> BaseChain {
        BaseChain {
            family: family.into(),
            table: table.into(),
            name: name.into(),
            hook,
            policy,
        }
    }

    #[test]
    fn only_unhandled_ipv4_forward_chains_with_drop_policy_are_named() {
        const INPUT: u32 = 1;
        let chains = [
            chain("ip", "filter", "FORWARD", HOOK_FORWARD, Some(POLICY_DROP)),
            chain("ip", "berth-br-1", "forward", HOOK_FORWARD, Some(1)),
            chain(
                "inet",
                "firewalld",
                "filter_FORWARD",
                HOOK_FORWARD,
                Some(POLICY_DROP),
            ),
            chain("inet", "filter", "forward", HOOK_FORWARD, Some(POLICY_DROP)),
            chain("inet", "filter", "input", INPUT, Some(POLICY_DROP)),
            chain("ip6", "v6", "fw", HOOK_FORWARD, Some(POLICY_DROP)),
            chain("inet", "filter", "nopolicy", HOOK_FORWARD, None),
        ];
        assert_eq!(
            dropping_chains(&chains),
            [("inet".into(), "filter".into(), "forward".into())]
        );
        assert!(dropping_chains(&[]).is_empty());
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
