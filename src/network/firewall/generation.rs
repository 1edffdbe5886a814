//! When the host firewall must be looked at again. A full [`ensure`](super::ensure) costs a
//! table rewrite and processes (one `iptables-save` per backend in use, `firewall-cmd` where
//! firewalld runs; once it cost three to five), which on every container start doubled the time
//! of `up`. Instead
//! the host's packet filter is fingerprinted after each ensure — the nf_tables generation (bumped
//! by any change to any nf_tables table: `nft`, iptables-nft, firewalld) and the legacy
//! `filter` table's shape — and a container start re-ensures only when the fingerprint moved
//! (someone flushed or reloaded the firewall, `dockerd` restarted) or a network was never
//! ensured under it.

use std::collections::HashSet;

use super::{nft, xtables};

/// A fingerprint of the host's packet filter; equal fingerprints mean nothing was edited in
/// between (see the module doc for what each part covers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Generation {
    nf_tables: Option<u32>,
    legacy_filter: Option<xtables::FilterShape>,
}

impl Generation {
    /// Read the current fingerprint: one netlink request and one `getsockopt`, no process.
    pub fn read() -> Self {
        Generation {
            nf_tables: nft::generation().ok(),
            legacy_filter: xtables::filter_shape(),
        }
    }

    /// Whether anything could be read: a host where neither can be read gives no way to see a
    /// change, so nothing is ever taken as unchanged there.
    fn known(&self) -> bool {
        self.nf_tables.is_some() || self.legacy_filter.is_some()
    }

    #[cfg(test)]
    pub(crate) fn of(nf_tables: Option<u32>) -> Self {
        Generation {
            nf_tables,
            legacy_filter: None,
        }
    }
}

/// The bridges whose firewall was ensured, and the fingerprint right after.
#[derive(Debug, Default)]
pub struct FirewallWatch {
    generation: Option<Generation>,
    ensured: HashSet<String>,
}

impl FirewallWatch {
    /// Of `bridges`, those to ensure now: all of them when the host's filter changed since the
    /// last ensure (or it cannot be fingerprinted), else those never ensured.
    pub fn stale<'a>(&self, now: Generation, bridges: &'a [String]) -> Vec<&'a String> {
        let unchanged = self.generation == Some(now) && now.known();
        bridges
            .iter()
            .filter(|b| !unchanged || !self.ensured.contains(*b))
            .collect()
    }

    /// `bridges` were just ensured: `before` was read before the ensure began, `after` at its
    /// end under the firewall lock (so no other berth edit came in between). What was ensured
    /// earlier still holds only if nothing else moved the fingerprint before this ensure. A
    /// bridge whose ensure failed is left out, so the next start tries it again.
    pub fn ensured<'a>(
        &mut self,
        before: Generation,
        after: Generation,
        bridges: impl IntoIterator<Item = &'a str>,
    ) {
        if self.generation != Some(before) || !before.known() {
            self.ensured.clear();
        }
        self.ensured.extend(bridges.into_iter().map(str::to_string));
        self.generation = Some(after);
    }

    /// The network is gone: a network made later with the same bridge name needs its own ensure.
    pub fn forget(&mut self, bridge: &str) {
        self.ensured.remove(bridge);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn an_unchanged_filter_needs_no_second_ensure() {
        let mut watch = FirewallWatch::default();
        let bridges = names(&["br-a"]);
        assert_eq!(
            watch.stale(Generation::of(Some(1)), &bridges),
            [&bridges[0]]
        );
        watch.ensured(Generation::of(Some(1)), Generation::of(Some(2)), ["br-a"]);
        assert!(watch.stale(Generation::of(Some(2)), &bridges).is_empty());
    }

    #[test]
    fn a_changed_filter_makes_every_network_stale() {
        let mut watch = FirewallWatch::default();
        watch.ensured(
            Generation::of(Some(1)),
            Generation::of(Some(2)),
            ["br-a", "br-b"],
        );
        // Someone flushed the rules (a firewall reload): generation 3.
        let bridges = names(&["br-a", "br-b"]);
        assert_eq!(watch.stale(Generation::of(Some(3)), &bridges).len(), 2);
    }

    #[test]
    fn a_new_network_is_ensured_and_the_others_stay_trusted() {
        let mut watch = FirewallWatch::default();
        watch.ensured(Generation::of(Some(1)), Generation::of(Some(2)), ["br-a"]);
        let both = names(&["br-a", "br-b"]);
        assert_eq!(watch.stale(Generation::of(Some(2)), &both), [&both[1]]);
        watch.ensured(Generation::of(Some(2)), Generation::of(Some(3)), ["br-b"]);
        assert!(watch.stale(Generation::of(Some(3)), &both).is_empty());
    }

    #[test]
    fn a_failed_ensure_is_tried_again_and_a_removed_network_forgotten() {
        let mut watch = FirewallWatch::default();
        let bridges = names(&["br-a", "br-b"]);
        // br-b's ensure failed: only br-a is recorded.
        watch.ensured(Generation::of(Some(1)), Generation::of(Some(2)), ["br-a"]);
        assert_eq!(
            watch.stale(Generation::of(Some(2)), &bridges),
            [&bridges[1]]
        );
        watch.forget("br-a");
        assert_eq!(watch.stale(Generation::of(Some(2)), &bridges).len(), 2);
    }

    #[test]
    fn a_change_before_an_ensure_drops_what_was_trusted_earlier() {
        let mut watch = FirewallWatch::default();
        watch.ensured(Generation::of(Some(1)), Generation::of(Some(2)), ["br-a"]);
        // A reload (3), then br-b is made (its ensure ends at 4): br-a was not looked at.
        watch.ensured(Generation::of(Some(3)), Generation::of(Some(4)), ["br-b"]);
        let both = names(&["br-a", "br-b"]);
        assert_eq!(watch.stale(Generation::of(Some(4)), &both), [&both[0]]);
    }

    #[test]
    fn a_host_without_a_readable_fingerprint_is_always_ensured() {
        let mut watch = FirewallWatch::default();
        let bridges = names(&["br-a"]);
        watch.ensured(Generation::of(None), Generation::of(None), ["br-a"]);
        assert_eq!(watch.stale(Generation::of(None), &bridges).len(), 1);
    }
}
