//! `berth ps`: the project's containers as docker compose shows them.

use std::process::ExitCode;

use super::containers::display_name;
use super::output::{human_ago, table};
use super::project::{engine, project_or_name, ProjectArgs};
use crate::compose::plan::{LABEL_PROJECT, LABEL_SERVICE};
use crate::engine::wire::ContainerSummary;

#[derive(Debug, Clone, clap::Args)]
pub struct PsArgs {
    /// Show all stopped containers too
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Display services
    #[arg(long)]
    pub services: bool,
    /// Format the output: "table" or "json"
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Show only these services
    #[arg(value_name = "SERVICE")]
    pub service_names: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &PsArgs) -> anyhow::Result<ExitCode> {
    let (_, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let mut containers: Vec<ContainerSummary> = client
        .list_containers(
            args.all,
            &[("label", format!("{LABEL_PROJECT}={name}").as_str())],
        )
        .await?
        .into_iter()
        // One-off (`run`) containers only with -a, as docker compose lists them.
        .filter(|c| args.all || !super::containers::is_one_off(c))
        .filter(|c| {
            args.service_names.is_empty()
                || c.labels
                    .get(LABEL_SERVICE)
                    .is_some_and(|s| args.service_names.contains(s))
        })
        .collect();
    containers.sort_by_key(display_name);

    if args.quiet {
        for c in &containers {
            println!("{}", c.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.services {
        let mut seen = Vec::new();
        for c in &containers {
            if let Some(s) = c.labels.get(LABEL_SERVICE) {
                if !seen.contains(s) {
                    println!("{s}");
                    seen.push(s.clone());
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.format == "json" {
        let rows: Vec<serde_json::Value> = containers.iter().map(json_row).collect();
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = chrono::Utc::now().timestamp();
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            vec![
                display_name(c),
                c.image.clone(),
                format!("\"{}\"", truncate(&c.command, 20)),
                c.labels.get(LABEL_SERVICE).cloned().unwrap_or_default(),
                human_ago(now - c.created),
                c.status.clone(),
                ports(c),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"],
            &rows
        )
    );
    Ok(ExitCode::SUCCESS)
}

fn truncate(text: &str, max: usize) -> String {
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

fn json_row(c: &ContainerSummary) -> serde_json::Value {
    serde_json::json!({
        "ID": c.id,
        "Name": display_name(c),
        "Image": c.image,
        "Command": c.command,
        "Project": c.labels.get(LABEL_PROJECT),
        "Service": c.labels.get(LABEL_SERVICE),
        "Created": c.created,
        "State": c.state,
        "Status": c.status,
        "Labels": c.labels,
        "Publishers": c.ports,
    })
}
