//! Stats (`GET /containers/{id}/stats`): a running container's resource use in Docker's JSON,
//! read from its cgroups (v2 files where its cgroup2 directory has them, else v1's) and its
//! network namespace (`/proc/<init>/net/dev`).
//!
//! A figure no cgroup of the container accounts for (on a hybrid host a container joins the v1
//! memory or blkio hierarchy only when it has a limit there) is summed over its processes from
//! `/proc` instead — resident memory, storage bytes read and written — so a user sees what the
//! container uses rather than a zero.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::Status;
use super::{ContainerStore, Result};
use crate::engine::runtime::cgroup;
use crate::engine::Engine;

/// Docker's `StatsJSON` (the fields its CLI and docker compose read).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerStats {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub id: String,
    pub read: String,
    pub preread: String,
    pub pids_stats: PidsStats,
    pub blkio_stats: BlkioStats,
    pub num_procs: u32,
    pub storage_stats: serde_json::Value,
    pub cpu_stats: CpuStats,
    pub precpu_stats: CpuStats,
    pub memory_stats: MemoryStats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<BTreeMap<String, NetworkStats>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PidsStats {
    #[serde(default)]
    pub current: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BlkioStats {
    #[serde(default)]
    pub io_service_bytes_recursive: Option<Vec<BlkioEntry>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_cpu_usage: Option<u64>,
    #[serde(default)]
    pub online_cpus: u32,
    pub throttling_data: ThrottlingData,
}

/// Nanoseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuUsage {
    pub total_usage: u64,
    #[serde(default)]
    pub usage_in_kernelmode: u64,
    #[serde(default)]
    pub usage_in_usermode: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ThrottlingData {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryStats {
    #[serde(default)]
    pub usage: u64,
    #[serde(default)]
    pub stats: BTreeMap<String, u64>,
    #[serde(default)]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NetworkStats {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// `key value` lines (`memory.stat`, `cpu.stat`, `memory.events`).
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// `/proc/<pid>/net/dev`: per interface, loopback left out (Docker reports the container's
/// network interfaces).
pub fn parse_net_dev(text: &str) -> BTreeMap<String, NetworkStats> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|n| n.parse().unwrap_or(0))
                .collect();
            if name == "lo" || v.len() < 12 {
                return None;
            }
            let stats = NetworkStats {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            };
            Some((name.to_string(), stats))
        })
        .collect()
}

/// cgroup v2's `io.stat` (`8:0 rbytes=1 wbytes=2 …`) as Docker's read/write entries.
pub fn parse_io_stat(text: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(parse_dev) else {
            continue;
        };
        for field in fields {
            let op = match field.split_once('=') {
                Some(("rbytes", v)) => ("read", v),
                Some(("wbytes", v)) => ("write", v),
                _ => continue,
            };
            out.push(BlkioEntry {
                major,
                minor,
                op: op.0.into(),
                value: op.1.parse().unwrap_or(0),
            });
        }
    }
    out
}

/// cgroup v1's `blkio.throttle.io_service_bytes` (`8:0 Read 123`), the `Total` lines left out.
pub fn parse_v1_blkio(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (major, minor) = parse_dev(f.next()?)?;
            let op = f.next()?;
            let value = f.next()?.parse().ok()?;
            (op != "Total").then(|| BlkioEntry {
                major,
                minor,
                op: op.to_ascii_lowercase(),
                value,
            })
        })
        .collect()
}

fn parse_dev(dev: &str) -> Option<(u64, u64)> {
    let (a, b) = dev.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// A cgroup limit file's value: `max` or v1's "unlimited" (a page-rounded `i64::MAX`) is none.
pub fn parse_limit(text: &str) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    (v < 1 << 62).then_some(v)
}

/// The host facts a sample needs.
#[derive(Debug, Clone, Copy)]
struct Host {
    /// `MemTotal` in bytes.
    memory: u64,
    cpus: u32,
    /// Clock ticks per second.
    hz: u64,
}

impl Host {
    fn read() -> Host {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        // The CPUs the host's `/proc/stat` total counts (not the engine's affinity), as Docker's
        // `online_cpus` is what the CPU % is scaled by.
        // SAFETY: sysconf has no memory effects.
        let (online, hz) = unsafe {
            (
                libc::sysconf(libc::_SC_NPROCESSORS_ONLN),
                libc::sysconf(libc::_SC_CLK_TCK),
            )
        };
        let cpus = u32::try_from(online).ok().filter(|n| *n > 0).unwrap_or(1);
        Host {
            memory,
            cpus,
            hz: if hz > 0 { hz as u64 } else { 100 },
        }
    }
}

fn read(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

/// The first of the container's cgroup directories that has `file`, and its text.
fn first_with(paths: &[PathBuf], file: &str) -> Option<String> {
    paths.iter().find_map(|dir| read(dir, file))
}

/// The host's total CPU time in nanoseconds (the `cpu` line of `/proc/stat`), Docker's
/// `system_cpu_usage`.
fn system_cpu_ns(hz: u64) -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: u64 = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    Some(ticks * 1_000_000_000 / hz)
}

/// Sum of a per-process figure over the container's processes.
fn sum_over(pids: &[i32], figure: impl Fn(i32) -> Option<u64>) -> u64 {
    pids.iter().filter_map(|&p| figure(p)).sum()
}

fn cpu_stats(paths: &[PathBuf], pids: &[i32], host: Host) -> CpuStats {
    let mut cpu = CpuStats {
        system_cpu_usage: system_cpu_ns(host.hz),
        online_cpus: host.cpus,
        ..Default::default()
    };
    if let Some(stat) = first_with(paths, "cpu.stat").map(|t| parse_flat_keyed(&t)) {
        if let Some(usage) = stat.get("usage_usec") {
            let us = |k: &str| stat.get(k).copied().unwrap_or(0) * 1000;
            cpu.cpu_usage = CpuUsage {
                total_usage: usage * 1000,
                usage_in_kernelmode: us("system_usec"),
                usage_in_usermode: us("user_usec"),
            };
            cpu.throttling_data = ThrottlingData {
                periods: stat.get("nr_periods").copied().unwrap_or(0),
                throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
                throttled_time: us("throttled_usec"),
            };
            return cpu;
        }
    }
    if let Some(total) = first_with(paths, "cpuacct.usage").and_then(|t| t.trim().parse().ok()) {
        cpu.cpu_usage.total_usage = total;
        return cpu;
    }
    let ticks = sum_over(pids, |p| {
        let text = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        super::top::parse_stat(p, &text).map(|i| i.cpu_ticks)
    });
    cpu.cpu_usage.total_usage = ticks * 1_000_000_000 / host.hz;
    cpu
}

fn memory_stats(paths: &[PathBuf], pids: &[i32], host: Host) -> MemoryStats {
    let host_limit = |limit: Option<u64>| limit.unwrap_or(host.memory).min(host.memory.max(1));
    if let Some(usage) = first_with(paths, "memory.current").and_then(|t| t.trim().parse().ok()) {
        return MemoryStats {
            usage,
            stats: parse_flat_keyed(&first_with(paths, "memory.stat").unwrap_or_default()),
            limit: host_limit(first_with(paths, "memory.max").and_then(|t| parse_limit(&t))),
        };
    }
    if let Some(usage) =
        first_with(paths, "memory.usage_in_bytes").and_then(|t| t.trim().parse().ok())
    {
        let limit = first_with(paths, "memory.limit_in_bytes").and_then(|t| parse_limit(&t));
        return MemoryStats {
            usage,
            stats: parse_flat_keyed(&first_with(paths, "memory.stat").unwrap_or_default()),
            limit: host_limit(limit),
        };
    }
    let rss = sum_over(pids, |p| {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
        let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
        kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
    });
    MemoryStats {
        usage: rss * 1024,
        stats: BTreeMap::new(),
        limit: host.memory,
    }
}

fn blkio_stats(paths: &[PathBuf], pids: &[i32]) -> BlkioStats {
    let entries = if let Some(text) = first_with(paths, "io.stat") {
        parse_io_stat(&text)
    } else if let Some(text) = first_with(paths, "blkio.throttle.io_service_bytes") {
        parse_v1_blkio(&text)
    } else {
        let io = |p: i32, key: &str| {
            let text = std::fs::read_to_string(format!("/proc/{p}/io")).ok()?;
            parse_flat_keyed(&text.replace(": ", " ")).get(key).copied()
        };
        ["read", "write"]
            .into_iter()
            .map(|op| BlkioEntry {
                major: 0,
                minor: 0,
                op: op.into(),
                value: sum_over(pids, |p| io(p, &format!("{op}_bytes"))),
            })
            .collect()
    };
    BlkioStats {
        io_service_bytes_recursive: Some(entries),
    }
}

fn pids_stats(paths: &[PathBuf], pids: &[i32]) -> PidsStats {
    let current = first_with(paths, "pids.current")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(pids.len() as u64);
    PidsStats {
        current,
        limit: first_with(paths, "pids.max").and_then(|t| parse_limit(&t)),
    }
}

/// One sample of a running container (blocking: it reads many small files).
fn sample(paths: &[PathBuf], init_pid: Option<i32>, host: Host) -> ContainerStats {
    let pids = cgroup::pids(paths);
    let networks = init_pid.map(|pid| {
        parse_net_dev(&std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default())
    });
    ContainerStats {
        read: super::now_rfc3339(),
        pids_stats: pids_stats(paths, &pids),
        blkio_stats: blkio_stats(paths, &pids),
        cpu_stats: cpu_stats(paths, &pids, host),
        memory_stats: memory_stats(paths, &pids, host),
        networks,
        storage_stats: serde_json::json!({}),
        ..Default::default()
    }
}

/// Docker's zero time, for the `preread` of a first sample.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Successive samples of one container, each carrying the previous one's CPU figures as
/// `precpu_stats`, as Docker streams them.
pub struct StatsSampler {
    store: ContainerStore,
    id: String,
    name: String,
    host: Host,
    previous: Option<ContainerStats>,
}

impl StatsSampler {
    /// The next sample; `None` once the container is not running (its last figures are gone
    /// with its cgroups).
    pub async fn next(&mut self) -> Option<ContainerStats> {
        let state = self.store.state(&self.id);
        if state.status != Status::Running {
            return None;
        }
        let paths = self.store.cgroup_paths(&self.id);
        // A container on the host's network has no interfaces of its own to report.
        let init = (!state.sandbox_key.is_empty()).then_some(state.init.pid);
        let host = self.host;
        let mut stats = tokio::task::spawn_blocking(move || sample(&paths, init, host))
            .await
            .ok()?;
        stats.name = format!("/{}", self.name);
        stats.id = self.id.clone();
        match &self.previous {
            Some(prev) => {
                stats.preread = prev.read.clone();
                stats.precpu_stats = prev.cpu_stats.clone();
            }
            None => stats.preread = ZERO_TIME.into(),
        }
        self.previous = Some(stats.clone());
        Some(stats)
    }

    /// What Docker answers for a container that is not running: names and zeroes.
    pub fn empty(&self) -> ContainerStats {
        ContainerStats {
            name: format!("/{}", self.name),
            id: self.id.clone(),
            read: ZERO_TIME.into(),
            preread: ZERO_TIME.into(),
            storage_stats: serde_json::json!({}),
            ..Default::default()
        }
    }
}

impl Engine {
    pub fn stats_sampler(&self, id_or_name: &str) -> Result<StatsSampler> {
        let id = self.containers.resolve_id(id_or_name)?;
        let record = self.containers.load_record(&id)?;
        Ok(StatsSampler {
            store: self.containers.clone(),
            id,
            name: record.name,
            host: Host::read(),
            previous: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_per_interface_without_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
eth0:    5000      40    1    2    0     0          0         0     3000      30    3    4    0     0       0          0\n";
        let nets = parse_net_dev(text);
        assert_eq!(nets.keys().collect::<Vec<_>>(), ["eth0"]);
        let eth0 = &nets["eth0"];
        assert_eq!(
            (
                eth0.rx_bytes,
                eth0.rx_packets,
                eth0.rx_errors,
                eth0.rx_dropped
            ),
            (5000, 40, 1, 2)
        );
        assert_eq!(
            (
                eth0.tx_bytes,
                eth0.tx_packets,
                eth0.tx_errors,
                eth0.tx_dropped
            ),
            (3000, 30, 3, 4)
        );
    }

    #[test]
    fn io_stat_and_v1_blkio_become_read_and_write_entries() {
        let v2 = parse_io_stat("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n");
        let ops: Vec<(&str, u64)> = v2.iter().map(|e| (e.op.as_str(), e.value)).collect();
        assert_eq!(ops, [("read", 4096), ("write", 8192)]);
        assert_eq!((v2[0].major, v2[0].minor), (8, 0));
        let v1 = parse_v1_blkio("8:0 Read 10\n8:0 Write 20\n8:0 Sync 30\n8:0 Total 60\nTotal 60\n");
        let ops: Vec<(&str, u64)> = v1.iter().map(|e| (e.op.as_str(), e.value)).collect();
        assert_eq!(ops, [("read", 10), ("write", 20), ("sync", 30)]);
    }

    #[test]
    fn limits_max_and_v1_unlimited_are_none() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("67108864\n"), Some(67_108_864));
    }

    #[test]
    fn flat_keyed_files_parse_to_numbers() {
        let stat = parse_flat_keyed("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n");
        assert_eq!(stat["usage_usec"], 1500);
        assert_eq!(stat.len(), 3);
    }

    #[test]
    fn stats_serialise_with_dockers_field_names() {
        let json = serde_json::to_value(ContainerStats::default()).unwrap();
        for key in [
            "read",
            "preread",
            "pids_stats",
            "blkio_stats",
            "cpu_stats",
            "precpu_stats",
            "memory_stats",
        ] {
            assert!(json.get(key).is_some(), "{key} missing: {json}");
        }
        assert!(json["cpu_stats"]["cpu_usage"].get("total_usage").is_some());
    }
}
