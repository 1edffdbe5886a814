//! `berth down`: stop and remove the project's containers (dependents first) and networks; named
//! volumes only with `-v`. Works from labels alone, so it also cleans up after a crash or after
//! the compose file changed.

use std::process::ExitCode;

use super::containers::{display_name, for_each_level, is_running, stop_levels};
use super::image::ServiceImage;
use super::output::status_line;
use super::project::{engine, project_or_name, ProjectArgs};
use crate::compose::plan::{self, LABEL_PROJECT, LABEL_SERVICE};
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
    /// Remove images used by services: "local" removes only images that don't have a custom
    /// tag ("local"|"all")
    #[arg(long, value_parser = ["local", "all"])]
    pub rmi: Option<String>,
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
    let (to_remove, orphans): (Vec<&ContainerSummary>, Vec<&ContainerSummary>) = containers
        .iter()
        .partition(|c| known(c) || args.remove_orphans);
    let orphans: Vec<String> = orphans.into_iter().map(display_name).collect();

    // Dependents go first; containers of one dependency level go together, in parallel.
    let client = &client;
    for_each_level(stop_levels(&to_remove), |c| async move {
        let name = display_name(c);
        if is_running(c) {
            client.stop_container(&c.id, args.timeout).await?;
            status_line("Container", &name, "Stopped");
        }
        client.remove_container(&c.id, true, args.volumes).await?;
        status_line("Container", &name, "Removed");
        Ok(())
    })
    .await?;
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

    if let Some(rmi) = &args.rmi {
        let services: Vec<ServiceImage> = match &project {
            Some(p) => p
                .services
                .iter()
                .map(|(n, s)| ServiceImage {
                    name: plan::service_image(p, n, s),
                    named_in_file: s.image.is_some(),
                })
                .collect(),
            // No compose file: the images the project's containers were made from.
            None => containers
                .iter()
                .map(|c| ServiceImage {
                    name: c.image.clone(),
                    named_in_file: true,
                })
                .collect(),
        };
        super::image::remove_service_images(client, rmi, &services).await;
    }

    if args.volumes {
        for volume in client.list_volumes(&[("label", label.as_str())]).await? {
            client.remove_volume(&volume.name, false).await?;
            status_line("Volume", &volume.name, "Removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
