//! The resource limits of one container as the cgroup files take them: plain values the engine
//! resolved from its API request, so the runtime never sees the API.

/// The kernel's default CFS period (100 ms, in µs), used when only a quota is given.
pub const DEFAULT_CFS_PERIOD_US: i64 = 100_000;
/// The kernel's range for v1 `cpu.shares`.
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;

/// The limits of one container, resolved to what the cgroup files take. 0 = not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: i64,
    /// Memory + swap: -1 = unlimited swap.
    pub memory_swap: i64,
    /// Set when `memory_swap` is Docker's default (twice the memory), not the user's choice:
    /// a host without swap accounting then runs without a swap limit, as Docker does.
    pub memory_swap_is_default: bool,
    pub memory_reservation: i64,
    pub cpu_shares: i64,
    /// CFS quota in µs (from `CpuQuota` or `NanoCpus`).
    pub cpu_quota: i64,
    pub cpu_period: i64,
    /// The quota comes from `NanoCpus` (for messages naming what the user set).
    pub cpu_quota_from_nano_cpus: bool,
    pub cpuset_cpus: String,
    pub pids: i64,
}

impl Limits {
    pub fn wants_memory(&self) -> bool {
        self.memory > 0 || self.memory_reservation > 0
    }
    pub fn wants_cpu(&self) -> bool {
        self.cpu_shares > 0 || self.cpu_quota > 0 || self.cpu_period > 0
    }
    pub fn wants_cpuset(&self) -> bool {
        !self.cpuset_cpus.is_empty()
    }
    pub fn wants_pids(&self) -> bool {
        self.pids > 0
    }
}

/// v1 `cpu.shares` → v2 `cpu.weight` (runc's conversion: [2, 262144] onto [1, 10000]).
pub fn shares_to_weight(shares: i64) -> i64 {
    let shares = shares.clamp(MIN_SHARES, MAX_SHARES);
    1 + ((shares - 2) * 9999) / 262_142
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_map_onto_weights_as_runc_does() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(512), 20);
    }
}
