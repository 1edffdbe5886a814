//! Resource limits: Docker's validation of `HostConfig`'s `Memory`, `MemorySwap`,
//! `MemoryReservation`, `NanoCpus`, `CpuShares`, `CpuQuota`, `CpuPeriod`, `CpusetCpus` and
//! `PidsLimit` (with its error messages), its defaults, and the conversions to cgroup values.
//! Which cgroup files receive them is `cgroup`'s business.

use thiserror::Error;

use crate::engine::runtime::limits::{Limits, DEFAULT_CFS_PERIOD_US};
use crate::engine::runtime::rlimits::{self, RlimitError};
use crate::engine::runtime::spec::RlimitSpec;
use crate::engine::wire::{HostConfig, Ulimit};

/// Docker's `linuxMinMemory`.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;
/// The CFS period Docker uses for `NanoCpus`: the kernel's default period.
pub const NANO_CPUS_PERIOD: i64 = DEFAULT_CFS_PERIOD_US;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ResourceError {
    /// Docker's wording, so scripts matching Docker's errors keep working.
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, ResourceError>;

fn invalid(msg: impl Into<String>) -> ResourceError {
    ResourceError::Invalid(msg.into())
}

/// What this host offers the checks: Docker compares against the CPUs the daemon may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCpus {
    /// CPUs in the daemon's affinity mask (Go's `runtime.NumCPU`).
    pub count: usize,
    /// CPU numbers a cpuset may name (the root cpuset, else the online CPUs).
    pub available: Vec<u32>,
    /// `available` as the kernel spells it, for the error message.
    pub available_text: String,
}

impl HostCpus {
    pub fn detect(cpuset_root: Option<&std::path::Path>) -> Self {
        let count = affinity_cpu_count().unwrap_or(1);
        let candidates = [
            cpuset_root.map(|r| r.join("cpuset.cpus.effective")),
            cpuset_root.map(|r| r.join("cpuset.cpus")),
            Some("/sys/devices/system/cpu/online".into()),
        ];
        for file in candidates.into_iter().flatten() {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let text = text.trim().to_string();
            if let Ok(available) = parse_cpu_list(&text) {
                if !available.is_empty() {
                    return Self {
                        count,
                        available,
                        available_text: text,
                    };
                }
            }
        }
        Self {
            count,
            available: (0..count as u32).collect(),
            available_text: format!("0-{}", count.saturating_sub(1)),
        }
    }
}

fn affinity_cpu_count() -> Option<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        Some(libc::CPU_COUNT(&set) as usize).filter(|n| *n > 0)
    }
}

/// A cpuset list (`0-2,4`), as Docker's `ParseUintList` reads it.
pub fn parse_cpu_list(text: &str) -> std::result::Result<Vec<u32>, String> {
    let mut out = Vec::new();
    if text.is_empty() {
        return Ok(out);
    }
    for part in text.split(',') {
        let bad = || format!("invalid format: {text}");
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u32 = a.parse().map_err(|_| bad())?;
                let b: u32 = b.parse().map_err(|_| bad())?;
                if b < a {
                    return Err(bad());
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().map_err(|_| bad())?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Docker's `verifyPlatformContainerResources` checks, in its order and with its messages.
pub fn validate(host: &HostConfig, cpus: &HostCpus) -> Result<()> {
    let r = &host.resources;
    if r.memory != 0 && r.memory < MIN_MEMORY {
        return Err(invalid("Minimum memory limit allowed is 6MB"));
    }
    if r.memory > 0 && r.memory_swap > 0 && r.memory_swap < r.memory {
        return Err(invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    if r.memory == 0 && r.memory_swap > 0 {
        return Err(invalid(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        ));
    }
    if r.memory_reservation > 0 && r.memory_reservation < MIN_MEMORY {
        return Err(invalid("Minimum memory reservation allowed is 6MB"));
    }
    if r.memory > 0 && r.memory_reservation > 0 && r.memory < r.memory_reservation {
        return Err(invalid(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        ));
    }
    if r.nano_cpus > 0 && r.cpu_period > 0 {
        return Err(invalid(
            "Conflicting options: Nano CPUs and CPU Period cannot both be set",
        ));
    }
    if r.nano_cpus > 0 && r.cpu_quota > 0 {
        return Err(invalid(
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
        ));
    }
    // Docker leaves values below 0.01 CPUs to the kernel, which then fails the start with a
    // runc error; berth refuses them here, with the message that names the range.
    let max_nano = cpus.count as i64 * 1_000_000_000;
    if r.nano_cpus < 0 || (r.nano_cpus > 0 && r.nano_cpus < 10_000_000) {
        return Err(cpu_range(cpus.count));
    }
    if r.nano_cpus > max_nano {
        return Err(cpu_range(cpus.count));
    }
    if r.cpu_shares < 0 {
        return Err(invalid(format!(
            "invalid CPU shares ({}): use a positive number (1024 is the default weight)",
            r.cpu_shares
        )));
    }
    if r.cpu_period != 0 && !(1000..=1_000_000).contains(&r.cpu_period) {
        return Err(invalid(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        ));
    }
    if r.cpu_quota > 0 && r.cpu_quota < 1000 {
        return Err(invalid(
            "CPU cfs quota can not be less than 1ms (i.e. 1000)",
        ));
    }
    if !r.cpuset_cpus.is_empty() {
        let wanted = parse_cpu_list(&r.cpuset_cpus).map_err(|e| {
            invalid(format!(
                "Invalid value {} for cpuset cpus: {e}",
                r.cpuset_cpus
            ))
        })?;
        if wanted.iter().any(|c| !cpus.available.contains(c)) {
            return Err(invalid(format!(
                "Requested CPUs are not available - requested {}, available: {}",
                r.cpuset_cpus, cpus.available_text
            )));
        }
    }
    Ok(())
}

fn cpu_range(n: usize) -> ResourceError {
    invalid(format!(
        "Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
    ))
}

/// Docker's `adaptContainerSettings`: the stored (and inspected) `HostConfig` says what applies.
pub fn adapt(host: &mut HostConfig) {
    let r = &mut host.resources;
    if r.memory > 0 && r.memory_swap == 0 {
        r.memory_swap = r.memory * 2;
    }
    // 0 and -1 both mean unlimited; Docker stores them as unset.
    if r.pids_limit.is_some_and(|p| p <= 0) {
        r.pids_limit = None;
    }
}

/// The limits `host` asks for, resolved to cgroup values (Docker's defaults applied).
pub fn limits_from_host_config(host: &HostConfig) -> Limits {
    let r = &host.resources;
    let memory_swap = if r.memory > 0 && r.memory_swap == 0 {
        r.memory * 2
    } else if r.memory > 0 {
        r.memory_swap
    } else {
        0
    };
    let (cpu_quota, cpu_period) = if r.nano_cpus > 0 {
        nano_cpus_to_quota(r.nano_cpus)
    } else {
        (r.cpu_quota.max(0), r.cpu_period.max(0))
    };
    Limits {
        memory: r.memory.max(0),
        memory_swap,
        memory_swap_is_default: r.memory > 0 && memory_swap == r.memory * 2,
        memory_reservation: r.memory_reservation.max(0),
        cpu_shares: r.cpu_shares.max(0),
        cpu_quota,
        cpu_period,
        cpu_quota_from_nano_cpus: r.nano_cpus > 0,
        cpuset_cpus: r.cpuset_cpus.clone(),
        pids: r.pids_limit.unwrap_or(0).max(0),
    }
}

/// `HostConfig.Ulimits` checked against Docker's names and rules and converted for `setrlimit`.
pub fn rlimits_of(ulimits: &[Ulimit]) -> std::result::Result<Vec<RlimitSpec>, RlimitError> {
    rlimits::validate(ulimits.iter().map(|u| (u.name.as_str(), u.soft, u.hard)))
}

/// `NanoCpus` → (quota, period) in µs, as Docker and runc compute it.
pub fn nano_cpus_to_quota(nano: i64) -> (i64, i64) {
    (nano * NANO_CPUS_PERIOD / 1_000_000_000, NANO_CPUS_PERIOD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_cpus() -> HostCpus {
        HostCpus {
            count: 2,
            available: vec![0, 1],
            available_text: "0-1".into(),
        }
    }

    fn check(host: HostConfig) -> std::result::Result<(), String> {
        validate(&host, &two_cpus()).map_err(|e| e.to_string())
    }

    #[test]
    fn memory_checks_use_dockers_messages() {
        let mb = 1024 * 1024;
        assert_eq!(
            check(HostConfig {
                resources: crate::engine::wire::Resources {
                    memory: 4 * mb,
                    ..Default::default()
                },
                ..Default::default()
            }),
            Err("Minimum memory limit allowed is 6MB".into())
        );
        assert_eq!(
            check(HostConfig {
                resources: crate::engine::wire::Resources {
                    memory: 64 * mb,
                    memory_swap: 32 * mb,
                    ..Default::default()
                },
                ..Default::default()
            }),
            Err("Minimum memoryswap limit should be larger than memory limit, see usage".into())
        );
        assert_eq!(
            check(HostConfig {
                resources: crate::engine::wire::Resources {
                    memory_swap: 32 * mb,
                    ..Default::default()
                },
                ..Default::default()
            }),
            Err(
                "You should always set the Memory limit when using Memoryswap limit, see usage"
                    .into()
            )
        );
        assert_eq!(
            check(HostConfig {
                resources: crate::engine::wire::Resources {
                    memory: 16 * mb,
                    memory_reservation: 32 * mb,
                    ..Default::default()
                },
                ..Default::default()
            }),
            Err(
                "Minimum memory limit can not be less than memory reservation limit, see usage"
                    .into()
            )
        );
        assert!(check(HostConfig {
            resources: crate::engine::wire::Resources {
                memory: 64 * mb,
                memory_swap: -1,
                memory_reservation: 32 * mb,
                ..Default::default()
            },
            ..Default::default()
        })
        .is_ok());
    }

    #[test]
    fn cpu_checks_use_dockers_messages() {
        assert_eq!(
            check(HostConfig {
                resources: crate::engine::wire::Resources {
                    nano_cpus: 3_000_000_000,
                    ..Default::default()
                },
                ..Default::default()
            }),
            Err("Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available".into())
        );
        assert_eq!(
            check(HostConfig {
                resources: crate::engine::wire::Resources {
                    nano_cpus: 500_000_000,
                    cpu_period: 50_000,
                    ..Default::default()
                },
                ..Default::default()
            }),
            Err("Conflicting options: Nano CPUs and CPU Period cannot both be set".into())
        );
        assert_eq!(
            check(HostConfig {
                resources: crate::engine::wire::Resources {
                    nano_cpus: 500_000_000,
                    cpu_quota: 50_000,
                    ..Default::default()
                },
                ..Default::default()
            }),
            Err("Conflicting options: Nano CPUs and CPU Quota cannot both be set".into())
        );
        assert!(check(HostConfig {
            resources: crate::engine::wire::Resources {
                cpu_quota: 500,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap_err()
        .contains("quota can not be less than 1ms"));
        assert!(check(HostConfig {
            resources: crate::engine::wire::Resources {
                cpu_period: 5_000_000,
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap_err()
        .contains("larger than 1s"));
        assert_eq!(
            check(HostConfig {
                resources: crate::engine::wire::Resources {
                    cpuset_cpus: "0-3".into(),
                    ..Default::default()
                },
                ..Default::default()
            }),
            Err("Requested CPUs are not available - requested 0-3, available: 0-1".into())
        );
        assert_eq!(
            check(HostConfig {
                resources: crate::engine::wire::Resources {
                    cpuset_cpus: "0-x".into(),
                    ..Default::default()
                },
                ..Default::default()
            }),
            Err("Invalid value 0-x for cpuset cpus: invalid format: 0-x".into())
        );
        assert!(check(HostConfig {
            resources: crate::engine::wire::Resources {
                nano_cpus: 1_500_000_000,
                cpu_shares: 512,
                cpuset_cpus: "1".into(),
                ..Default::default()
            },
            ..Default::default()
        })
        .is_ok());
    }

    #[test]
    fn conversions_match_docker_and_runc() {
        assert_eq!(nano_cpus_to_quota(1_500_000_000), (150_000, 100_000));
        assert_eq!(nano_cpus_to_quota(10_000_000), (1_000, 100_000));
        assert_eq!(parse_cpu_list("0-2,5,1"), Ok(vec![0, 1, 2, 5]));
        assert!(parse_cpu_list("3-1").is_err());
    }

    #[test]
    fn swap_defaults_to_twice_the_memory_and_pids_zero_is_unlimited() {
        let mut host = HostConfig {
            resources: crate::engine::wire::Resources {
                memory: 64 << 20,
                pids_limit: Some(0),
                ..Default::default()
            },
            ..Default::default()
        };
        let limits = limits_from_host_config(&host);
        assert_eq!(limits.memory_swap, 128 << 20);
        assert!(limits.memory_swap_is_default);
        assert_eq!(limits.pids, 0);
        adapt(&mut host);
        assert_eq!(
            (host.resources.memory_swap, host.resources.pids_limit),
            (128 << 20, None)
        );
        let unlimited = limits_from_host_config(&HostConfig {
            resources: crate::engine::wire::Resources {
                memory: 64 << 20,
                memory_swap: -1,
                ..Default::default()
            },
            ..Default::default()
        });
        assert_eq!(unlimited.memory_swap, -1);
        assert!(!unlimited.memory_swap_is_default);
        let nano = limits_from_host_config(&HostConfig {
            resources: crate::engine::wire::Resources {
                nano_cpus: 500_000_000,
                ..Default::default()
            },
            ..Default::default()
        });
        assert_eq!((nano.cpu_quota, nano.cpu_period), (50_000, 100_000));
    }
}
