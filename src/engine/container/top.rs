//! Top (`GET /containers/{id}/top`): the processes of a container's cgroups in Docker's shape
//! (`Titles`, `Processes`). Without `ps_args` (or with `-ef`, Docker's default) the table is
//! built from `/proc` with `ps -ef`'s columns; other `ps_args` run the host's `ps` with them and
//! keep the rows whose PID is the container's, as Docker does.

use std::collections::HashMap;

use chrono::{DateTime, Local, TimeZone};
use serde::{Deserialize, Serialize};

use super::state::Status;
use super::{ContainerError, ContainerStore, Result};
use crate::engine::runtime::cgroup;
use crate::engine::Engine;

/// `ps -ef`'s columns.
pub const PS_EF_TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

/// Docker's `ContainerTopOKBody`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct TopResponse {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// What `/proc/<pid>` says about one process (the fields `ps -ef` shows).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessInfo {
    pub pid: i32,
    pub ppid: i32,
    pub uid: u32,
    /// `tty_nr` of `/proc/<pid>/stat` (0: none).
    pub tty_nr: u64,
    /// User plus system time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start, in clock ticks after boot.
    pub start_ticks: u64,
    /// The command line's arguments; empty for a kernel thread or a zombie.
    pub args: Vec<String>,
    /// `comm`, shown in brackets when there are no arguments.
    pub comm: String,
}

/// The clock the `/proc` times are read against.
#[derive(Debug, Clone, Copy)]
pub struct ProcClock {
    /// Boot time (Unix seconds, `btime` of `/proc/stat`).
    pub boot_time: i64,
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    pub hz: u64,
    /// Now (Unix seconds).
    pub now: i64,
}

/// Parse `/proc/<pid>/stat` (the command name in parentheses may hold spaces and parentheses).
pub fn parse_stat(pid: i32, text: &str) -> Option<ProcessInfo> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // Fields after the name, starting with field 3 (`state`).
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcessInfo {
        pid,
        ppid: field(4)? as i32,
        tty_nr: field(7)?,
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        comm,
        ..Default::default()
    })
}

/// The real UID of a `/proc/<pid>/status` text.
pub fn parse_status_uid(text: &str) -> Option<u32> {
    let line = text.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `ps`'s TTY column for a `tty_nr` (device number of the controlling terminal).
pub fn tty_name(tty_nr: u64) -> String {
    if tty_nr == 0 {
        return "?".into();
    }
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        _ => "?".into(),
    }
}

/// `ps`'s cumulative TIME: `HH:MM:SS`, with `D-` in front past a day.
pub fn cpu_time(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let hms = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days > 0 {
        format!("{days}-{hms}")
    } else {
        hms
    }
}

/// `ps`'s STIME: `HH:MM` for a process started today, `MonDD` this year, else the year.
pub fn start_time<Tz: TimeZone>(started: DateTime<Tz>, now: DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if started.date_naive() == now.date_naive() {
        started.format("%H:%M").to_string()
    } else if started.format("%Y").to_string() == now.format("%Y").to_string() {
        started.format("%b%d").to_string()
    } else {
        started.format("%Y").to_string()
    }
}

/// One `ps -ef` row.
pub fn ps_ef_row(p: &ProcessInfo, clock: ProcClock, users: &HashMap<u32, String>) -> Vec<String> {
    let hz = clock.hz.max(1);
    let started = clock.boot_time + (p.start_ticks / hz) as i64;
    let elapsed = (clock.now - started).max(1) as u64;
    let cpu_seconds = p.cpu_ticks / hz;
    // ps's C: CPU time over elapsed time, in percent, truncated.
    let c = p.cpu_ticks * 100 / hz / elapsed;
    let local = |t: i64| {
        Local
            .timestamp_opt(t, 0)
            .single()
            .unwrap_or_else(Local::now)
    };
    let cmd = if p.args.is_empty() {
        format!("[{}]", p.comm)
    } else {
        p.args.join(" ")
    };
    vec![
        users
            .get(&p.uid)
            .cloned()
            .unwrap_or_else(|| p.uid.to_string()),
        p.pid.to_string(),
        p.ppid.to_string(),
        c.to_string(),
        start_time(local(started), local(clock.now)),
        tty_name(p.tty_nr),
        cpu_time(cpu_seconds),
        cmd,
    ]
}

/// The rows of the host's `ps` output whose PID column names one of `pids`, split into the
/// header's columns (the last one keeps its spaces: it is the command). Docker's
/// `parsePSOutput`.
pub fn filter_ps_output(output: &str, pids: &[i32]) -> std::result::Result<TopResponse, String> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let pid_column = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| "Couldn't find PID field in ps output".to_string())?;
    let mut processes = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_column).and_then(|p| p.parse::<i32>().ok()) else {
            return Err(format!("Unexpected pid in ps output: {line:?}"));
        };
        if !pids.contains(&pid) {
            continue;
        }
        let last = titles.len().saturating_sub(1).min(fields.len());
        let mut row: Vec<String> = fields[..last].iter().map(|f| f.to_string()).collect();
        row.push(fields[last..].join(" "));
        processes.push(row);
    }
    Ok(TopResponse { titles, processes })
}

/// User names of the host's `/etc/passwd` by UID (`ps` on the host shows those).
fn host_users() -> HashMap<u32, String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

fn read_process(pid: i32) -> Option<ProcessInfo> {
    let dir = format!("/proc/{pid}");
    let mut info = parse_stat(pid, &std::fs::read_to_string(format!("{dir}/stat")).ok()?)?;
    info.uid = parse_status_uid(&std::fs::read_to_string(format!("{dir}/status")).ok()?)?;
    let cmdline = std::fs::read(format!("{dir}/cmdline")).unwrap_or_default();
    info.args = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(info)
}

fn proc_clock() -> ProcClock {
    let boot_time = std::fs::read_to_string("/proc/stat")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ProcClock {
        boot_time,
        hz: if hz > 0 { hz as u64 } else { 100 },
        now: chrono::Utc::now().timestamp(),
    }
}

/// `ps -ef` of the given host PIDs, read from `/proc` (a process gone meanwhile is left out).
fn ps_ef(pids: &[i32]) -> TopResponse {
    let (clock, users) = (proc_clock(), host_users());
    TopResponse {
        titles: PS_EF_TITLES.iter().map(|t| t.to_string()).collect(),
        processes: pids
            .iter()
            .filter_map(|&pid| read_process(pid))
            .map(|p| ps_ef_row(&p, clock, &users))
            .collect(),
    }
}

/// The host's `ps` with the caller's arguments, filtered to `pids`. As Docker does, `ps` is
/// first asked for just those PIDs (`-q1,2,3`), and run without that when the arguments cannot
/// be combined with it (`f`, for one); the rows are filtered by PID either way.
fn host_ps(ps_args: &str, pids: &[i32]) -> Result<TopResponse> {
    let run = |quick: bool| {
        let mut ps = std::process::Command::new("ps");
        ps.args(ps_args.split_whitespace());
        if quick && !pids.is_empty() {
            let list: Vec<String> = pids.iter().map(i32::to_string).collect();
            ps.arg(format!("-q{}", list.join(",")));
        }
        ps.output()
            .map_err(|e| ContainerError::Other(format!("cannot run ps: {e}")))
    };
    let mut output = run(true)?;
    if !output.status.success() {
        output = run(false)?;
    }
    if !output.status.success() {
        return Err(ContainerError::Other(format!(
            "ps: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    filter_ps_output(&String::from_utf8_lossy(&output.stdout), pids).map_err(ContainerError::Other)
}

impl ContainerStore {
    pub async fn top(&self, id: &str, ps_args: &str) -> Result<TopResponse> {
        let record = self.load_record(id)?;
        if self.state(id).status != Status::Running {
            return Err(ContainerError::Conflict(format!(
                "container {} is not running",
                record.name
            )));
        }
        let pids = cgroup::pids(&self.cgroup_paths(id));
        let ps_args = ps_args.trim().to_string();
        tokio::task::spawn_blocking(move || {
            if ps_args.is_empty() || ps_args == "-ef" {
                Ok(ps_ef(&pids))
            } else {
                host_ps(&ps_args, &pids)
            }
        })
        .await
        .map_err(|e| ContainerError::Other(format!("top task failed: {e}")))?
    }
}

impl Engine {
    pub async fn top_container(&self, id_or_name: &str, ps_args: &str) -> Result<TopResponse> {
        let id = self.containers.resolve_id(id_or_name)?;
        self.containers.top(&id, ps_args).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_command_name_holding_spaces_and_parentheses() {
        let text = "4242 (my (odd) cmd) S 4200 4242 4242 34816 4242 4194560 100 0 0 0 \
                    250 50 0 0 20 0 1 0 123456 2000000 100 18446744073709551615";
        let p = parse_stat(4242, text).unwrap();
        assert_eq!(
            (
                p.comm.as_str(),
                p.ppid,
                p.tty_nr,
                p.cpu_ticks,
                p.start_ticks
            ),
            ("my (odd) cmd", 4200, 34816, 300, 123456)
        );
        assert_eq!(parse_stat(1, "garbage"), None);
    }

    #[test]
    fn status_uid_is_the_real_uid() {
        let text = "Name:\tsleep\nUid:\t1000\t1001\t1002\t1003\nGid:\t0\t0\t0\t0\n";
        assert_eq!(parse_status_uid(text), Some(1000));
    }

    #[test]
    fn tty_names_as_ps_prints_them() {
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name((136 << 8) | 3), "pts/3");
        assert_eq!(tty_name((4 << 8) | 1), "tty1");
        assert_eq!(tty_name((4 << 8) | 64), "ttyS0");
    }

    #[test]
    fn cpu_time_as_ps_prints_it() {
        assert_eq!(cpu_time(0), "00:00:00");
        assert_eq!(cpu_time(3_725), "01:02:05");
        assert_eq!(cpu_time(2 * 86_400 + 61), "2-00:01:01");
    }

    #[test]
    fn start_time_is_clock_today_month_day_this_year_else_year() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
        let now = at("2026-12-02T22:00:00+00:00");
        assert_eq!(start_time(at("2026-12-02T08:05:00+00:00"), now), "08:05");
        assert_eq!(start_time(at("2026-03-07T08:05:00+00:00"), now), "Mar07");
        assert_eq!(start_time(at("2025-03-07T08:05:00+00:00"), now), "2025");
    }

    #[test]
    fn ps_ef_row_has_dockers_columns() {
        let p = ProcessInfo {
            pid: 4242,
            ppid: 4200,
            uid: 0,
            tty_nr: 0,
            cpu_ticks: 1_000, // 10 s at 100 Hz
            start_ticks: 100 * 1_000,
            args: vec!["sleep".into(), "300".into()],
            comm: "sleep".into(),
        };
        let clock = ProcClock {
            boot_time: 1_000_000,
            hz: 100,
            now: 1_000_000 + 1_000 + 40, // 40 s after the start
        };
        let users = HashMap::from([(0, "root".to_string())]);
        let row = ps_ef_row(&p, clock, &users);
        assert_eq!(row.len(), PS_EF_TITLES.len());
        assert_eq!(
            [&row[0], &row[1], &row[2], &row[3], &row[5], &row[6], &row[7]],
            ["root", "4242", "4200", "25", "?", "00:00:10", "sleep 300"]
        );
        let kernel_like = ProcessInfo {
            uid: 1234,
            args: vec![],
            comm: "zombie".into(),
            ..p
        };
        let row = ps_ef_row(&kernel_like, clock, &users);
        assert_eq!((row[0].as_str(), row[7].as_str()), ("1234", "[zombie]"));
    }

    #[test]
    fn host_ps_output_is_filtered_by_the_pid_column_and_keeps_the_command_whole() {
        let out = "USER PID %CPU COMMAND\n\
                   root 1 0.0 /sbin/init splash\n\
                   root 77 1.5 sleep 300\n\
                   daemon 78 0.0 nginx: worker process\n";
        let top = filter_ps_output(out, &[77, 78]).unwrap();
        assert_eq!(top.titles, ["USER", "PID", "%CPU", "COMMAND"]);
        assert_eq!(
            top.processes,
            [
                vec!["root", "77", "1.5", "sleep 300"],
                vec!["daemon", "78", "0.0", "nginx: worker process"]
            ]
        );
        assert!(filter_ps_output("USER CMD\nroot x\n", &[1]).is_err());
    }
}
