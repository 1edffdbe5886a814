//! `berth down`: stop and remove the project's containers (dependents first) and networks; named
//! volumes only with `-v`. Works from labels alone, so it also cleans up after a crash or after
//! the compose file changed.

use std::process::ExitCode;

use super::output::status_line;
use super::project::{engine, project_or_name, ProjectArgs};
use crate::compose::graph::ServiceGraph;
use crate::compose::plan::{LABEL_PROJECT, LABEL_SERVICE};
use crate::engine::api::types::ContainerSummary;

#[derive(Debug, Clone, clap::Args)]
pub struct DownArgs {
    /// Remove named volumes declared in the "volumes" section and anonymous volumes
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Seconds to wait for each container to stop before killing it
    #[arg(short = 't', long)]
    pub timeout: Option<i64>,
    /// Remove containers for services not defined in the compose file
    #[arg(long)]
    pub remove_orphans: bool,
}

pub async fn run(project_args: &ProjectArgs, args: &DownArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let label = format!("{LABEL_PROJECT}={name}");

    let mut containers = client
        .list_containers(true, &[("label", label.as_str())])
        .await?;
    // Dependents stop first: the reverse of the start order when we have the model, else by name.
    let stop_order = project
        .as_ref()
        .and_then(|p| ServiceGraph::new(p).ok())
        .map(|g| g.stop_order())
        .unwrap_or_default();
    containers.sort_by_key(|c| {
        let service = c.labels.get(LABEL_SERVICE).cloned().unwrap_or_default();
        stop_order
            .iter()
            .position(|s| *s == service)
            .unwrap_or(usize::MAX)
    });
    let known = |c: &ContainerSummary| {
        project.as_ref().is_none_or(|p| {
            c.labels
                .get(LABEL_SERVICE)
                .is_some_and(|s| p.services.contains_key(s))
        })
    };
    let mut orphans = Vec::new();
    for c in &containers {
        let display = c
            .names
            .first()
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| c.id.clone());
        if !known(c) && !args.remove_orphans {
            orphans.push(display);
            continue;
        }
        if c.state == "running" || c.state == "restarting" {
            client.stop_container(&c.id, args.timeout).await?;
            status_line("Container", &display, "Stopped");
        }
        client.remove_container(&c.id, true, args.volumes).await?;
        status_line("Container", &display, "Removed");
    }
    if !orphans.is_empty() {
        eprintln!(
            "WARN Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            orphans.join(", ")
        );
    }

    for network in client.list_networks(&[("label", label.as_str())]).await? {
        match client.remove_network(&network.id).await {
            Ok(()) => status_line("Network", &network.name, "Removed"),
            Err(e) => eprintln!("warning: network {} not removed: {e}", network.name),
        }
    }

    if args.volumes {
        for volume in client.list_volumes(&[("label", label.as_str())]).await? {
            client.remove_volume(&volume.name, false).await?;
            status_line("Volume", &volume.name, "Removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
