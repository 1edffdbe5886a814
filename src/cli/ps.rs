//! `berth ps`: the project's containers as docker compose shows them — a table for people,
//! and for scripts one JSON object per line (`--format json`) or a Go template (`--format
//! '{{.Name}}'`), with docker compose v2's field names.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde_json::{Map, Value};

use super::containers::display_name;
use super::output::{human_ago, table};
use super::project::{engine, project_or_name, ProjectArgs};
use super::template::{align_tabs, Template};
use crate::compose::plan::{LABEL_PROJECT, LABEL_SERVICE};
use crate::engine::api::client::EngineClient;
use crate::engine::wire::ContainerSummary;

#[derive(Debug, Clone, clap::Args)]
pub struct PsArgs {
    /// Show all stopped containers (including those created by the run command)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Display services
    #[arg(long)]
    pub services: bool,
    /// Format the output: "table", "json" (one object per line) or a Go template
    /// ('{{.Name}}\t{{.State}}', 'table {{.Name}}', '{{json .}}')
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Filter services by a property (KEY=VALUE; supported: status)
    #[arg(long, value_name = "KEY=VALUE")]
    pub filter: Option<String>,
    /// Filter services by status (repeatable): paused, restarting, removing, running, dead,
    /// created, exited
    #[arg(long, value_name = "STATUS")]
    pub status: Vec<String>,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Include orphaned services (not declared by the project)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub orphans: bool,
    /// Show only these services
    #[arg(value_name = "SERVICE")]
    pub service_names: Vec<String>,
}

/// docker's column titles for the fields whose title is not their name in capitals.
const HEADERS: [(&str, &str); 3] = [
    ("ID", "CONTAINER ID"),
    ("RunningFor", "CREATED"),
    ("CreatedAt", "CREATED AT"),
];

pub async fn run(project_args: &ProjectArgs, args: &PsArgs) -> anyhow::Result<ExitCode> {
    let statuses = wanted_statuses(args)?;
    let template = match args.format.as_str() {
        "table" | "" | "json" => None,
        other => Some(Template::parse(other)?),
    };
    let (project, name) = project_or_name(project_args)?;
    if let Some(p) = &project {
        if let Some(unknown) = args
            .service_names
            .iter()
            .find(|s| !p.services.contains_key(*s))
        {
            anyhow::bail!("no such service: {unknown}");
        }
    }
    let declared: Option<Vec<String>> = match (&project, args.orphans) {
        (Some(p), false) => Some(p.services.keys().cloned().collect()),
        _ => None,
    };
    let client = engine(project_args).await?;
    let mut containers = listed(&client, &name, args, &statuses).await?;
    containers.retain(|c| {
        let service = c.labels.get(LABEL_SERVICE);
        let named = |list: &[String]| service.is_some_and(|s| list.contains(s));
        (args.service_names.is_empty() || named(&args.service_names))
            && declared.as_deref().is_none_or(named)
    });
    containers.sort_by_key(display_name);

    if args.quiet {
        containers.iter().for_each(|c| println!("{}", c.id));
    } else if args.services {
        let mut seen: Vec<&String> = Vec::new();
        for s in containers
            .iter()
            .filter_map(|c| c.labels.get(LABEL_SERVICE))
        {
            if !seen.contains(&s) {
                println!("{s}");
                seen.push(s);
            }
        }
    } else if args.format == "table" || args.format.is_empty() {
        print!("{}", default_table(&containers, !args.no_trunc));
    } else {
        let rows = rows(&client, &containers, !args.no_trunc).await?;
        print!("{}", render(&rows, template.as_ref())?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The statuses of `--status` and `--filter status=…`; docker compose knows no other filter.
fn wanted_statuses(args: &PsArgs) -> anyhow::Result<Vec<String>> {
    let mut statuses = args.status.clone();
    if let Some(filter) = &args.filter {
        let (key, value) = filter
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("arguments to --filter should be in form KEY=VAL"))?;
        match key {
            "status" => statuses.push(value.to_string()),
            "source" => anyhow::bail!(
                "the \"source\" filter is not implemented (nor is it in docker compose)"
            ),
            other => anyhow::bail!("unknown filter {other}"),
        }
    }
    Ok(statuses)
}

/// The project's containers: running ones, or all with `-a` or a status filter (which lists
/// stopped containers by its nature); one-off (`run`) containers only with `-a`, as docker
/// compose lists them.
async fn listed(
    client: &EngineClient,
    project: &str,
    args: &PsArgs,
    statuses: &[String],
) -> anyhow::Result<Vec<ContainerSummary>> {
    let all = args.all || !statuses.is_empty();
    let label = format!("{LABEL_PROJECT}={project}");
    let mut containers = client
        .list_containers(all, &[("label", label.as_str())])
        .await?;
    containers.retain(|c| args.all || !super::containers::is_one_off(c));
    containers.retain(|c| statuses.is_empty() || statuses.contains(&c.state));
    Ok(containers)
}

/// docker compose's default table.
fn default_table(containers: &[ContainerSummary], trunc: bool) -> String {
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            vec![
                display_name(c),
                c.image.clone(),
                quoted_command(&c.command, trunc),
                c.labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
                human_ago(now - c.created),
                c.status.clone(),
                ports(c),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS",
        ],
        &rows,
    )
}

/// The rows of `--format json` and of templates: each container's summary with what only its
/// inspect knows (exit code, health).
async fn rows(
    client: &EngineClient,
    containers: &[ContainerSummary],
    trunc: bool,
) -> anyhow::Result<Vec<Map<String, Value>>> {
    let inspected =
        futures_util::future::join_all(containers.iter().map(|c| client.inspect_container(&c.id)))
            .await;
    let now = chrono::Utc::now().timestamp();
    let mut rows = Vec::new();
    for (c, inspect) in containers.iter().zip(inspected) {
        // A container removed between the list and the inspect is left out, not an error.
        let Ok(inspect) = inspect else { continue };
        let state = RunState {
            exit_code: inspect.state.exit_code,
            health: inspect.state.health.map(|h| h.status).unwrap_or_default(),
        };
        rows.push(json_row(c, &state, trunc, now));
    }
    Ok(rows)
}

/// One line per row: its JSON (`--format json`) or the template applied to it.
fn render(rows: &[Map<String, Value>], template: Option<&Template>) -> anyhow::Result<String> {
    let Some(template) = template else {
        let lines: Vec<String> = rows
            .iter()
            .map(|r| Value::Object(r.clone()).to_string() + "\n")
            .collect();
        return Ok(lines.concat());
    };
    let mut lines = Vec::new();
    if template.table {
        lines.push(template.header(&HEADERS));
    }
    for row in rows {
        lines.push(template.render(row)?);
    }
    Ok(match template.table {
        true => align_tabs(&lines),
        false => lines.iter().map(|l| format!("{l}\n")).collect(),
    })
}

/// What the container list does not carry.
struct RunState {
    exit_code: i64,
    /// `starting`, `healthy`, `unhealthy`, or empty without a healthcheck.
    health: String,
}

/// The fields docker compose v2 prints for a container, in its (alphabetical) order, with its
/// value shapes: labels, mounts and networks as comma-joined text, `LocalVolumes` as text, and
/// `ID`/`Command`/`Mounts` shortened unless `--no-trunc`.
fn json_row(c: &ContainerSummary, state: &RunState, trunc: bool, now: i64) -> Map<String, Value> {
    let mounts: Vec<String> = c
        .mounts
        .iter()
        .map(|m| {
            if m.name.is_empty() {
                &m.source
            } else {
                &m.name
            }
        })
        .map(|m| if trunc { ellipsis(m, 15) } else { m.clone() })
        .collect();
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let created_at = chrono::DateTime::from_timestamp(c.created, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string())
        .unwrap_or_default();
    let id = match trunc {
        true => c.id.chars().take(12).collect(),
        false => c.id.clone(),
    };
    let fields: BTreeMap<&str, Value> = BTreeMap::from([
        ("Command", quoted_command(&c.command, trunc).into()),
        ("Created", c.created.into()),
        ("CreatedAt", created_at.into()),
        ("ExitCode", state.exit_code.into()),
        ("Health", state.health.clone().into()),
        ("ID", id.into()),
        ("Image", c.image.clone().into()),
        ("Labels", labels.join(",").into()),
        ("LocalVolumes", local_volumes(c).to_string().into()),
        ("Mounts", mounts.join(",").into()),
        ("Name", display_name(c).into()),
        ("Names", display_name(c).into()),
        ("Networks", networks(c).into()),
        ("Ports", ports(c).into()),
        ("Project", label_of(c, LABEL_PROJECT).into()),
        ("Publishers", publishers(c)),
        ("RunningFor", human_ago(now - c.created).into()),
        ("Service", label_of(c, LABEL_SERVICE).into()),
        ("Size", "0B".into()),
        ("State", c.state.clone().into()),
        ("Status", c.status.clone().into()),
    ]);
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn label_of(c: &ContainerSummary, key: &str) -> String {
    c.labels.get(key).cloned().unwrap_or_default()
}

fn local_volumes(c: &ContainerSummary) -> usize {
    c.mounts.iter().filter(|m| m.kind == "volume").count()
}

fn networks(c: &ContainerSummary) -> String {
    let names: Vec<&str> = c
        .network_settings
        .networks
        .keys()
        .map(String::as_str)
        .collect();
    names.join(",")
}

/// `[{URL, TargetPort, PublishedPort, Protocol}]`, an exposed-only port with `PublishedPort` 0
/// and an empty `URL`, as docker compose lists them.
fn publishers(c: &ContainerSummary) -> Value {
    c.ports
        .iter()
        .map(|p| {
            serde_json::json!({
                "URL": p.ip,
                "TargetPort": p.private_port,
                "PublishedPort": p.public_port.unwrap_or(0),
                "Protocol": p.kind,
            })
        })
        .collect()
}

/// `"sleep 300"`: the command quoted as Go's `strconv.Quote` does, shortened to 20 characters.
fn quoted_command(command: &str, trunc: bool) -> String {
    let shown = if trunc {
        ellipsis(command, 20)
    } else {
        command.to_string()
    };
    serde_json::to_string(&shown).unwrap_or_default()
}

/// docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
fn ellipsis(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(max - 1).collect::<String>())
    }
}

/// `127.0.0.1:8080->80/tcp, 443/tcp`, as Docker prints published and exposed ports.
fn ports(c: &ContainerSummary) -> String {
    let mut parts: Vec<String> = c
        .ports
        .iter()
        .map(|p| match p.public_port {
            Some(public) => {
                let ip = if p.ip.is_empty() { "0.0.0.0" } else { &p.ip };
                format!("{ip}:{public}->{}/{}", p.private_port, p.kind)
            }
            None => format!("{}/{}", p.private_port, p.kind),
        })
        .collect();
    parts.dedup();
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::wire::{MountPoint, PortSummary};

    fn container() -> ContainerSummary {
        let mut c = ContainerSummary {
            id: "0123456789abcdef0123".into(),
            names: vec!["/demo-web-1".into()],
            image: "busybox".into(),
            command: "sh -c 'sleep 300 && echo done'".into(),
            created: 1_700_000_000,
            state: "running".into(),
            status: "Up 3 seconds".into(),
            ports: vec![
                PortSummary {
                    ip: "127.0.0.1".into(),
                    private_port: 80,
                    public_port: Some(8080),
                    kind: "tcp".into(),
                },
                PortSummary {
                    private_port: 9,
                    kind: "udp".into(),
                    ..Default::default()
                },
            ],
            mounts: vec![MountPoint {
                kind: "volume".into(),
                name: "demo_a_long_volume_name".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        c.labels.insert(LABEL_PROJECT.into(), "demo".into());
        c.labels.insert(LABEL_SERVICE.into(), "web".into());
        c
    }

    fn args(filter: Option<&str>, status: &[&str]) -> PsArgs {
        PsArgs {
            all: false,
            quiet: false,
            services: false,
            format: "json".into(),
            filter: filter.map(String::from),
            status: status.iter().map(|s| s.to_string()).collect(),
            no_trunc: false,
            orphans: true,
            service_names: Vec::new(),
        }
    }

    #[test]
    fn json_rows_have_docker_compose_fields_and_shapes() {
        let state = RunState {
            exit_code: 0,
            health: "healthy".into(),
        };
        let row = json_row(&container(), &state, true, 1_700_000_005);
        let keys: Vec<&str> = row.keys().map(String::as_str).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "alphabetical, as Go marshals the map");
        assert_eq!(row["ID"], "0123456789ab");
        assert_eq!(row["Name"], "demo-web-1");
        assert_eq!(row["Service"], "web");
        assert_eq!(row["Project"], "demo");
        assert_eq!(row["Health"], "healthy");
        assert_eq!(row["ExitCode"], 0);
        assert_eq!(row["Command"], "\"sh -c 'sleep 300 &&…\"");
        assert_eq!(row["RunningFor"], "5 seconds ago");
        assert_eq!(row["LocalVolumes"], "1");
        assert_eq!(row["Mounts"], "demo_a_long_vo…");
        assert_eq!(row["Ports"], "127.0.0.1:8080->80/tcp, 9/udp");
        assert_eq!(
            row["Publishers"],
            serde_json::json!([
                {"URL": "127.0.0.1", "TargetPort": 80, "PublishedPort": 8080, "Protocol": "tcp"},
                {"URL": "", "TargetPort": 9, "PublishedPort": 0, "Protocol": "udp"},
            ])
        );
        let full = json_row(&container(), &state, false, 1_700_000_005);
        assert_eq!(full["ID"], "0123456789abcdef0123");
        assert_eq!(full["Command"], "\"sh -c 'sleep 300 && echo done'\"");
    }

    #[test]
    fn json_format_is_one_object_per_line() {
        let state = RunState {
            exit_code: 3,
            health: String::new(),
        };
        let rows = vec![
            json_row(&container(), &state, true, 0),
            json_row(&container(), &state, true, 0),
        ];
        let out = render(&rows, None).expect("render");
        assert_eq!(out.lines().count(), 2);
        for line in out.lines() {
            let v: Value = serde_json::from_str(line).expect("each line is JSON");
            assert_eq!(v["ExitCode"], 3);
        }
        let t = Template::parse(r"table {{.Name}}\t{{.ID}}").expect("parse");
        assert_eq!(
            render(&rows[..1], Some(&t)).expect("render"),
            "NAME         CONTAINER ID\ndemo-web-1   0123456789ab\n"
        );
    }

    #[test]
    fn status_filters_combine_and_unknown_filters_fail() {
        assert_eq!(
            wanted_statuses(&args(Some("status=exited"), &["running"])).expect("statuses"),
            ["running", "exited"]
        );
        assert_eq!(
            wanted_statuses(&args(Some("name=x"), &[]))
                .unwrap_err()
                .to_string(),
            "unknown filter name"
        );
        assert_eq!(
            wanted_statuses(&args(Some("status"), &[]))
                .unwrap_err()
                .to_string(),
            "arguments to --filter should be in form KEY=VAL"
        );
    }
}
