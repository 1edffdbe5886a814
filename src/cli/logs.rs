//! `berth logs`: the project's container output, prefixed and coloured per container.

use std::process::ExitCode;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::output::{colours_enabled, LogPrefixer};
use super::project::{engine, project_or_name, ProjectArgs};
use crate::compose::plan::{LABEL_PROJECT, LABEL_SERVICE};
use crate::engine::api::client::{EngineClient, LogsOptions};
use crate::engine::wire::ContainerSummary;

#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Number of lines to show from the end of the logs for each container ("all" by default)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show logs since a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long, value_parser = parse_log_time)]
    pub since: Option<String>,
    /// Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long, value_parser = parse_log_time)]
    pub until: Option<String>,
    /// Produce monochrome output
    #[arg(long)]
    pub no_color: bool,
    /// Don't print the prefix in logs
    #[arg(long)]
    pub no_log_prefix: bool,
    /// Services to show (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    if let Some(project) = &project {
        for s in &args.services {
            if !project.services.contains_key(s) {
                anyhow::bail!("no such service: {s}");
            }
        }
    }
    let client = engine(project_args).await?;
    let mut containers = client
        .list_containers(
            true,
            &[("label", format!("{LABEL_PROJECT}={name}").as_str())],
        )
        .await?;
    containers.retain(|c| {
        args.services.is_empty()
            || c.labels
                .get(LABEL_SERVICE)
                .is_some_and(|s| args.services.contains(s))
    });
    containers.sort_by(|a, b| a.names.cmp(&b.names));

    let short = |full: &str| -> String {
        let full = full.trim_start_matches('/');
        full.strip_prefix(&format!("{name}-"))
            .unwrap_or(full)
            .to_string()
    };
    let names: Vec<String> = containers
        .iter()
        .filter_map(|c| c.names.first())
        .map(|n| short(n))
        .collect();
    let mut prefixer =
        LogPrefixer::new(&names, colours_enabled(args.no_color), !args.no_log_prefix);

    let mut rx = follow_all(&client, &containers, args, short);
    let mut stdout = std::io::stdout();
    while let Some((display, text)) = rx.recv().await {
        prefixer.write_lines(&mut stdout, &display, &text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// One task per container streaming its logs (as `args` select them) as `(prefix name, text)`.
fn follow_all(
    client: &EngineClient,
    containers: &[ContainerSummary],
    args: &LogsArgs,
    short: impl Fn(&str) -> String,
) -> mpsc::Receiver<(String, String)> {
    let (tx, rx) = mpsc::channel::<(String, String)>(256);
    for c in containers {
        let client = client.clone();
        let display = c
            .names
            .first()
            .map(|n| short(n))
            .unwrap_or_else(|| c.id.clone());
        let options = LogsOptions {
            follow: args.follow,
            stdout: true,
            stderr: true,
            timestamps: args.timestamps,
            tail: Some(args.tail.clone()),
            since: args.since.clone(),
            until: args.until.clone(),
        };
        let (id, tx) = (c.id.clone(), tx.clone());
        tokio::spawn(async move {
            match client.logs(&id, &options).await {
                Ok(mut stream) => {
                    while let Some(Ok(chunk)) = stream.next().await {
                        let text = String::from_utf8_lossy(&chunk.bytes).into_owned();
                        if tx.send((display.clone(), text)).await.is_err() {
                            break;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx
                        .send((display, format!("error reading logs: {e}\n")))
                        .await;
                }
            }
        });
    }
    rx
}

/// `--since`/`--until` as the Docker CLI reads them, turned into the API's Unix seconds
/// (`secs.nanos`): a Go duration back from now (`42m`, `1h30m`), Unix seconds, RFC 3339, or a
/// date/time without a zone (`2013-01-02`, `2013-01-02T13:23`, `2013-01-02T13:23:37`) read in
/// local time.
fn parse_log_time(value: &str) -> Result<String, String> {
    let time = log_time(value, chrono::Utc::now()).ok_or_else(|| {
        format!(
            "invalid time {value:?}: use a duration back from now (42m, 1h30m), Unix seconds, \
             or a timestamp like 2013-01-02T13:23:37Z"
        )
    })?;
    Ok(format!(
        "{}.{:09}",
        time.timestamp(),
        time.timestamp_subsec_nanos()
    ))
}

fn log_time(
    value: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
    if let Some((secs, frac)) = value
        .split_once('.')
        .or(Some((value, "")))
        .filter(|(s, f)| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && f.len() <= 9
                && f.bytes().all(|b| b.is_ascii_digit())
        })
    {
        let nanos = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().ok()?
        };
        return DateTime::from_timestamp(secs.parse().ok()?, nanos);
    }
    // Durations need a unit (Go's rule), so bare numbers above are never durations.
    if let Some(back) = crate::compose::normalize::parse_duration(value) {
        return Some(now - chrono::Duration::from_std(back).ok()?);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_times_read_like_the_docker_cli() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let at = |v: &str| log_time(v, now).map(|t| t.to_rfc3339());
        assert_eq!(at("42m").as_deref(), Some("2026-11-26T11:18:00+00:00"));
        assert_eq!(at("1h30m").as_deref(), Some("2026-11-26T10:30:00+00:00"));
        assert_eq!(
            at("1700000000").as_deref(),
            Some("2023-11-14T22:13:20+00:00")
        );
        assert_eq!(
            at("1700000000.5").as_deref(),
            Some("2023-11-14T22:13:20.500+00:00")
        );
        assert_eq!(
            at("2013-01-02T13:23:37+01:00").as_deref(),
            Some("2013-01-02T12:23:37+00:00")
        );
        for local in ["2013-01-02", "2013-01-02T13:23", "2013-01-02T13:23:37"] {
            assert!(at(local).is_some(), "{local}");
        }
        for bad in ["", "yesterday", "12x", "2013-13-45", "1.2.3"] {
            assert!(at(bad).is_none(), "{bad:?}");
        }
        assert_eq!(
            parse_log_time("1700000000.25").unwrap(),
            "1700000000.250000000"
        );
        assert!(parse_log_time("soon")
            .unwrap_err()
            .contains("invalid time \"soon\""));
    }
}
