//! `berth down`: stop and remove the project's containers (dependents first) and networks; named
//! volumes only with `-v`. Works from labels alone, so it also cleans up after a crash or after
//! the compose file changed.

use std::process::ExitCode;

use super::containers::{display_name, for_each_level, is_running, stop_levels};
use super::image::ServiceImage;
use futures_util::StreamExt;

use super::output::status_line;
use super::project::{engine, project_or_name, ProjectArgs};
use crate::compose::plan::{self, LABEL_PROJECT, LABEL_SERVICE};
use crate::engine::api::client::EngineClient;
use crate::engine::wire::ContainerSummary;

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

    stop_and_remove(&client, &to_remove, args).await?;
    if !orphans.is_empty() {
        eprintln!(
            "WARN Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            orphans.join(", ")
        );
    }

    let client = &client;
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

/// Stop the containers dependents first, a dependency level at a time (the containers of one
/// level together), and remove each as soon as it has stopped: removals run beside the stops
/// of the next level instead of holding it up, so a chain of N services costs N stops, not N
/// stops and N removals in a row.
async fn stop_and_remove(
    client: &EngineClient,
    containers: &[&ContainerSummary],
    args: &DownArgs,
) -> anyhow::Result<()> {
    let (stopped_tx, stopped_rx) = tokio::sync::mpsc::unbounded_channel::<&ContainerSummary>();
    let stopper = async move {
        for_each_level(stop_levels(containers), |c| {
            let stopped_tx = stopped_tx.clone();
            async move {
                if is_running(c) {
                    client.stop_container(&c.id, args.timeout).await?;
                    status_line("Container", &display_name(c), "Stopped");
                }
                let _ = stopped_tx.send(c);
                Ok(())
            }
        })
        .await
    };
    let stopped = futures_util::stream::unfold(stopped_rx, |mut rx| async move {
        rx.recv().await.map(|c| (c, rx))
    });
    let remover = stopped
        .map(|c| async move {
            client.remove_container(&c.id, true, args.volumes).await?;
            status_line("Container", &display_name(c), "Removed");
            anyhow::Ok(())
        })
        .buffer_unordered(containers.len().max(1))
        .collect::<Vec<_>>();
    let (stopped, removed) = tokio::join!(stopper, remover);
    stopped?;
    removed.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    Ok(())
}
