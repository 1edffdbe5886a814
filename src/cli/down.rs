//! `berth down`: stop and remove the project's containers (dependents first) and networks; named
//! volumes only with `-v`. Works from labels alone, so it also cleans up after a crash or after
//! the compose file changed.

use std::process::ExitCode;

use super::output::status_line;
use super::project::{engine, project_or_name, ProjectArgs};
use crate::compose::plan::{LABEL_DEPENDS_ON, LABEL_PROJECT, LABEL_SERVICE};
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

    let containers = client
        .list_containers(true, &[("label", label.as_str())])
        .await?;
    let known = |c: &ContainerSummary| {
        project.as_ref().is_none_or(|p| {
            c.labels
                .get(LABEL_SERVICE)
                .is_some_and(|s| p.services.contains_key(s))
        })
    };
    let display = |c: &ContainerSummary| {
        c.names
            .first()
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| c.id.clone())
    };
    let (to_remove, orphans): (Vec<&ContainerSummary>, Vec<&ContainerSummary>) = containers
        .iter()
        .partition(|c| known(c) || args.remove_orphans);
    let orphans: Vec<String> = orphans.into_iter().map(display).collect();

    // Dependents go first; containers of one dependency level go together, in parallel.
    let client = &client;
    let display = &display;
    for level in stop_levels(&to_remove) {
        let results = futures_util::future::join_all(level.into_iter().map(|c| async move {
            let name = display(c);
            if c.state == "running" || c.state == "restarting" {
                client.stop_container(&c.id, args.timeout).await?;
                status_line("Container", &name, "Stopped");
            }
            client.remove_container(&c.id, true, args.volumes).await?;
            status_line("Container", &name, "Removed");
            anyhow::Ok(())
        }))
        .await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
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

/// Containers grouped for stopping, dependents first. Dependencies come from the
/// `com.docker.compose.depends_on` labels, so this works without the compose file.
fn stop_levels<'a>(containers: &[&'a ContainerSummary]) -> Vec<Vec<&'a ContainerSummary>> {
    use std::collections::HashMap;
    let service = |c: &ContainerSummary| c.labels.get(LABEL_SERVICE).cloned().unwrap_or_default();
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    for c in containers {
        let list = c
            .labels
            .get(LABEL_DEPENDS_ON)
            .map(String::as_str)
            .unwrap_or("");
        let names = list
            .split(',')
            .filter_map(|d| d.split(':').next())
            .filter(|d| !d.is_empty())
            .map(str::to_string);
        deps.entry(service(c)).or_default().extend(names);
    }
    // Level = length of the longest dependency chain below a service (cycles are cut).
    fn level(s: &str, deps: &HashMap<String, Vec<String>>, seen: &mut Vec<String>) -> usize {
        if seen.iter().any(|v| v == s) {
            return 0;
        }
        seen.push(s.to_string());
        let l = deps
            .get(s)
            .into_iter()
            .flatten()
            .filter(|d| deps.contains_key(*d))
            .map(|d| level(d, deps, seen) + 1)
            .max()
            .unwrap_or(0);
        seen.pop();
        l
    }
    let mut levels: Vec<Vec<&ContainerSummary>> = Vec::new();
    for c in containers {
        let l = level(&service(c), &deps, &mut Vec::new());
        if levels.len() <= l {
            levels.resize(l + 1, Vec::new());
        }
        levels[l].push(c);
    }
    levels.reverse();
    levels
}
