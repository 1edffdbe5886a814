//! `berth stats`: a live table of the project's running containers' resource use (CPU %,
//! memory, network and block I/O, PIDs) with docker's columns and units; `--no-stream` prints
//! one table, `--format json` one object per container and line, a template what it names.
//!
//! The figures are computed from the engine's Docker-shaped samples exactly as the docker CLI
//! computes them (`calculateCPUPercentUnix`, usage minus inactive file cache, go-units sizes).

use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Map, Value};

use super::containers::{check_services, display_name, is_running, of_project, of_services};
use super::project::{engine, project_or_name, ProjectArgs};
use super::template::{align_tabs, Template};
use crate::engine::api::client::EngineClient;
use crate::engine::container::stats::ContainerStats;
use crate::engine::wire::ContainerSummary;

#[derive(Debug, Clone, clap::Args)]
pub struct StatsArgs {
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Format output using a custom template: 'table', 'table TEMPLATE', 'json' or a Go template
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Services to show (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// docker stats' default table.
const DEFAULT_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";
/// docker's column titles.
const HEADERS: [(&str, &str); 9] = [
    ("ID", "CONTAINER ID"),
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// Docker CLI's `calculateCPUPercentUnix`: the container's CPU time over the host's in the
/// interval between `precpu_stats` and `cpu_stats`, times the online CPUs.
pub fn cpu_percent(s: &ContainerStats) -> f64 {
    let cpu_delta =
        s.cpu_stats.cpu_usage.total_usage as f64 - s.precpu_stats.cpu_usage.total_usage as f64;
    let system_delta = s.cpu_stats.system_cpu_usage.unwrap_or(0) as f64
        - s.precpu_stats.system_cpu_usage.unwrap_or(0) as f64;
    let cpus = s.cpu_stats.online_cpus.max(1) as f64;
    if system_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / system_delta * cpus * 100.0
    } else {
        0.0
    }
}

/// Memory in use without the inactive file cache (v1's `total_inactive_file`, v2's
/// `inactive_file`), as docker shows it.
pub fn memory_usage(s: &ContainerStats) -> u64 {
    let m = &s.memory_stats;
    let cache = m
        .stats
        .get("total_inactive_file")
        .or_else(|| m.stats.get("inactive_file"))
        .copied()
        .unwrap_or(0);
    if cache < m.usage {
        m.usage - cache
    } else {
        m.usage
    }
}

/// Go's `%.<precision>g`.
pub fn go_g(value: f64, precision: usize) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let sci = format!("{:.*e}", precision.saturating_sub(1), value);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if exp < -4 || exp >= precision as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim(mantissa), exp.abs());
    }
    let decimals = (precision as i32 - 1 - exp).max(0) as usize;
    trim(&format!("{value:.decimals$}"))
}

fn custom_size(size: f64, precision: usize, base: f64, units: &[&str]) -> String {
    let mut size = size;
    let mut unit = 0;
    while size >= base && unit < units.len() - 1 {
        size /= base;
        unit += 1;
    }
    format!("{}{}", go_g(size, precision), units[unit])
}

/// go-units' `BytesSize` (binary units, 4 significant digits): `1.5MiB`.
pub fn bytes_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    custom_size(bytes as f64, 4, 1024.0, &UNITS)
}

/// go-units' `HumanSizeWithPrecision(size, 3)` (decimal units): `1.23kB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    custom_size(bytes as f64, 3, 1000.0, &UNITS)
}

/// One container's row, keyed by docker's field names (`--format json` prints it as is).
pub fn stats_row(name: &str, s: &ContainerStats, truncate: bool) -> Map<String, Value> {
    let (rx, tx) = s
        .networks
        .iter()
        .flatten()
        .fold((0, 0), |(rx, tx), (_, n)| {
            (rx + n.rx_bytes, tx + n.tx_bytes)
        });
    let (read, write) = s
        .blkio_stats
        .io_service_bytes_recursive
        .iter()
        .flatten()
        .fold((0, 0), |(r, w), e| {
            match e.op.to_ascii_lowercase().as_str() {
                "read" => (r + e.value, w),
                "write" => (r, w + e.value),
                _ => (r, w),
            }
        });
    let memory = memory_usage(s);
    let limit = s.memory_stats.limit;
    let mem_percent = if limit > 0 {
        memory as f64 / limit as f64 * 100.0
    } else {
        0.0
    };
    let id = if truncate {
        s.id.chars().take(12).collect()
    } else {
        s.id.clone()
    };
    let text = |s: String| Value::String(s);
    Map::from_iter([
        (
            "BlockIO".into(),
            text(format!("{} / {}", human_size(read), human_size(write))),
        ),
        ("CPUPerc".into(), text(format!("{:.2}%", cpu_percent(s)))),
        ("Container".into(), text(name.to_string())),
        ("ID".into(), text(id)),
        ("MemPerc".into(), text(format!("{mem_percent:.2}%"))),
        (
            "MemUsage".into(),
            text(format!("{} / {}", bytes_size(memory), bytes_size(limit))),
        ),
        ("Name".into(), text(name.to_string())),
        (
            "NetIO".into(),
            text(format!("{} / {}", human_size(rx), human_size(tx))),
        ),
        ("PIDs".into(), text(s.pids_stats.current.to_string())),
    ])
}

/// The rows rendered as `format` asks: a table (aligned, with docker's titles), JSON lines, or
/// a template per row.
pub fn render(rows: &[Map<String, Value>], format: &str) -> anyhow::Result<String> {
    if format == "json" {
        return Ok(rows
            .iter()
            .map(|r| format!("{}\n", Value::Object(r.clone())))
            .collect());
    }
    let template = match format {
        "" | "table" => Template::parse(DEFAULT_TABLE)?,
        other => Template::parse(other)?,
    };
    let mut lines = Vec::new();
    if template.table {
        lines.push(template.header(&HEADERS));
    }
    for row in rows {
        lines.push(template.render(row)?);
    }
    Ok(if template.table {
        align_tabs(&lines)
    } else {
        lines.iter().map(|l| format!("{l}\n")).collect()
    })
}

/// A sample of each container (each a second's delta, taken in parallel), as rows.
async fn sample_rows(
    client: &EngineClient,
    targets: &[&ContainerSummary],
    truncate: bool,
) -> anyhow::Result<Vec<Map<String, Value>>> {
    let samples = futures_util::future::join_all(
        targets
            .iter()
            .map(|c| async { client.container_stats(&c.id, false).await }),
    )
    .await;
    targets
        .iter()
        .zip(samples)
        .map(|(c, s)| {
            let name = display_name(c);
            let s = s.with_context(|| format!("cannot read the stats of {name}"))?;
            Ok(stats_row(&name, &s, truncate))
        })
        .collect()
}

pub async fn run(project_args: &ProjectArgs, args: &StatsArgs) -> anyhow::Result<ExitCode> {
    // A bad template fails before any engine call.
    render(&[], &args.format)?;
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let containers = of_project(&client, &name, true).await?;
    check_services(project.as_ref(), &containers, &args.services)?;
    let mut targets: Vec<&ContainerSummary> = of_services(&containers, &args.services)
        .into_iter()
        .filter(|c| is_running(c))
        .collect();
    targets.sort_by_key(|c| display_name(c));
    loop {
        let rows = sample_rows(&client, &targets, !args.no_trunc).await?;
        let text = render(&rows, &args.format)?;
        if args.no_stream {
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
        // Each sample takes the engine's one-second interval: the table refreshes at that pace.
        print!("\x1b[2J\x1b[H{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::container::stats::{CpuStats, CpuUsage, MemoryStats};

    fn cpu(total: u64, system: u64) -> CpuStats {
        CpuStats {
            cpu_usage: CpuUsage {
                total_usage: total,
                ..Default::default()
            },
            system_cpu_usage: Some(system),
            online_cpus: 2,
            ..Default::default()
        }
    }

    #[test]
    fn cpu_percent_is_dockers_formula() {
        let s = ContainerStats {
            precpu_stats: cpu(1_000_000_000, 100_000_000_000),
            // 0.5 s of the container's CPU in 2 s of host time (2 CPUs × 1 s): 50 % of one CPU.
            cpu_stats: cpu(1_500_000_000, 102_000_000_000),
            ..Default::default()
        };
        assert!((cpu_percent(&s) - 50.0).abs() < 1e-9, "{}", cpu_percent(&s));
        // No previous sample's system time: no delta to divide by.
        let first = ContainerStats {
            cpu_stats: cpu(1_500_000_000, 102_000_000_000),
            precpu_stats: CpuStats {
                cpu_usage: CpuUsage::default(),
                system_cpu_usage: None,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(cpu_percent(&first) > 0.0);
        let idle = ContainerStats {
            cpu_stats: cpu(1_000, 2_000),
            precpu_stats: cpu(1_000, 1_000),
            ..Default::default()
        };
        assert_eq!(cpu_percent(&idle), 0.0);
    }

    #[test]
    fn memory_leaves_the_inactive_file_cache_out() {
        let mut s = ContainerStats {
            memory_stats: MemoryStats {
                usage: 10_000,
                stats: [("inactive_file".to_string(), 4_000)].into(),
                limit: 20_000,
            },
            ..Default::default()
        };
        assert_eq!(memory_usage(&s), 6_000);
        s.memory_stats.stats = [("total_inactive_file".to_string(), 50_000)].into();
        assert_eq!(memory_usage(&s), 10_000);
    }

    #[test]
    fn sizes_print_as_go_units_does() {
        assert_eq!(bytes_size(0), "0B");
        assert_eq!(bytes_size(1_572_864), "1.5MiB");
        assert_eq!(bytes_size(67_108_864), "64MiB");
        assert_eq!(bytes_size(8_217_669_632), "7.653GiB");
        assert_eq!(human_size(648), "648B");
        assert_eq!(human_size(1_234), "1.23kB");
        assert_eq!(human_size(999_999), "1e+03kB");
        assert_eq!(go_g(0.000012345, 3), "1.23e-05");
    }

    #[test]
    fn rows_render_as_dockers_table_and_json() {
        let s = ContainerStats {
            id: "0123456789abcdef".into(),
            memory_stats: MemoryStats {
                usage: 1_572_864,
                stats: Default::default(),
                limit: 67_108_864,
            },
            ..Default::default()
        };
        let row = stats_row("demo-web-1", &s, true);
        let table = render(std::slice::from_ref(&row), "table").unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("CONTAINER ID   NAME"), "{table}");
        assert!(lines[0].ends_with("PIDS"), "{table}");
        assert!(lines[1].starts_with("0123456789ab   demo-web-1"), "{table}");
        assert!(lines[1].contains("1.5MiB / 64MiB"), "{table}");
        assert!(lines[1].contains("2.34%"), "{table}");
        let json: Value =
            serde_json::from_str(render(std::slice::from_ref(&row), "json").unwrap().trim())
                .unwrap();
        assert_eq!(json["Name"], "demo-web-1");
        assert_eq!(json["PIDs"], "0");
        assert_eq!(
            render(&[row], "{{.Name}}: {{.MemPerc}}").unwrap(),
            "demo-web-1: 2.34%\n"
        );
    }
}
