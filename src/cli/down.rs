//! `berth down`: stop and remove the project's containers (dependents first) and networks; named
//! volumes only with `-v`. Works from labels alone, so it also cleans up after a crash or after
//! the compose file changed.

use std::process::ExitCode;

use super::containers::{
    check_services, display_name, for_each_level, is_running, service_of, stop_levels,
};
use super::image::ServiceImage;
use futures_util::StreamExt;

use super::output::status_line;
use super::project::{engine, project_or_name, ProjectArgs};
use crate::compose::model::Project;
use crate::compose::plan::{self, LABEL_PROJECT};
use crate::engine::api::client::EngineClient;
use crate::engine::wire::{ContainerSummary, NetworkResource};

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
    /// Only these services' containers (and the networks and volumes nothing else uses)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// What `down` removes, decided from the project's containers before anything changes.
#[derive(Debug)]
struct DownPlan<'a> {
    containers: Vec<&'a ContainerSummary>,
    orphans: Vec<String>,
    /// Networks and volumes (by name) that may go: with SERVICE arguments, only those the
    /// removed containers use and no remaining container does; else `None`, all of the project's.
    networks: Option<Vec<String>>,
    volumes: Option<Vec<String>>,
}

impl<'a> DownPlan<'a> {
    fn new(
        project: Option<&Project>,
        containers: &'a [ContainerSummary],
        services: &[String],
        remove_orphans: bool,
    ) -> Self {
        let known =
            |c: &ContainerSummary| project.is_none_or(|p| p.services.contains_key(service_of(c)));
        let named = |c: &ContainerSummary| services.iter().any(|s| s == service_of(c));
        if !services.is_empty() {
            let (chosen, staying): (Vec<_>, Vec<_>) = containers.iter().partition(|c| named(c));
            return Self {
                networks: Some(unused_by(&chosen, &staying, networks_of)),
                volumes: Some(unused_by(&chosen, &staying, volumes_of)),
                containers: chosen,
                orphans: Vec::new(),
            };
        }
        let (chosen, orphans): (Vec<_>, Vec<_>) =
            containers.iter().partition(|c| known(c) || remove_orphans);
        Self {
            containers: chosen,
            orphans: orphans.into_iter().map(display_name).collect(),
            networks: None,
            volumes: None,
        }
    }

    fn takes(selection: &Option<Vec<String>>, name: &str) -> bool {
        selection
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == name))
    }
}

/// Names `uses` gives for the `chosen` containers that none of the `staying` ones uses.
fn unused_by(
    chosen: &[&ContainerSummary],
    staying: &[&ContainerSummary],
    uses: fn(&ContainerSummary) -> Vec<String>,
) -> Vec<String> {
    let kept: Vec<String> = staying.iter().flat_map(|c| uses(c)).collect();
    let mut names: Vec<String> = chosen
        .iter()
        .flat_map(|c| uses(c))
        .filter(|n| !kept.contains(n))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn networks_of(c: &ContainerSummary) -> Vec<String> {
    c.network_settings.networks.keys().cloned().collect()
}

fn volumes_of(c: &ContainerSummary) -> Vec<String> {
    c.mounts
        .iter()
        .filter(|m| m.kind == "volume" && !m.name.is_empty())
        .map(|m| m.name.clone())
        .collect()
}

pub async fn run(project_args: &ProjectArgs, args: &DownArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let label = format!("{LABEL_PROJECT}={name}");
    let containers = client
        .list_containers(true, &[("label", label.as_str())])
        .await?;
    check_services(project.as_ref(), &containers, &args.services)?;
    let plan = DownPlan::new(
        project.as_ref(),
        &containers,
        &args.services,
        args.remove_orphans,
    );
    let client = &client;
    let networks: Vec<NetworkResource> = client
        .list_networks(&[("label", label.as_str())])
        .await?
        .into_iter()
        .filter(|n| DownPlan::takes(&plan.networks, &n.name))
        .collect();
    let volumes: Vec<String> = match args.volumes {
        true => client.list_volumes(&[("label", label.as_str())]).await?,
        false => Vec::new(),
    }
    .into_iter()
    .map(|v| v.name)
    .filter(|v| DownPlan::takes(&plan.volumes, v))
    .collect();
    if super::globals().dry_run {
        print!("{}", dry_run_report(&plan, &networks, &volumes));
        return Ok(ExitCode::SUCCESS);
    }

    stop_and_remove(client, &plan.containers, args).await?;
    if !plan.orphans.is_empty() {
        eprintln!(
            "WARN Found orphan containers ({}) for this project. If you removed or renamed this service in your compose file, you can run this command with the --remove-orphans flag to clean it up.",
            plan.orphans.join(", ")
        );
    }
    for network in networks {
        match client.remove_network(&network.id).await {
            Ok(()) => status_line("Network", &network.name, "Removed"),
            Err(e) => eprintln!("warning: network {} not removed: {e}", network.name),
        }
    }
    if let Some(rmi) = &args.rmi {
        let services = service_images(project.as_ref(), &containers);
        super::image::remove_service_images(client, rmi, &services).await;
    }
    for volume in volumes {
        client.remove_volume(&volume, false).await?;
        status_line("Volume", &volume, "Removed");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--dry-run`: what `down` would stop and remove, one line each, changing nothing.
fn dry_run_report(plan: &DownPlan, networks: &[NetworkResource], volumes: &[String]) -> String {
    let mut lines = String::new();
    for c in &plan.containers {
        let doing = if is_running(c) {
            "stop and remove"
        } else {
            "remove"
        };
        lines.push_str(&format!(
            "DRY-RUN MODE - would {doing} container {}\n",
            display_name(c)
        ));
    }
    for n in networks {
        lines.push_str(&format!("DRY-RUN MODE - would remove network {}\n", n.name));
    }
    for v in volumes {
        lines.push_str(&format!("DRY-RUN MODE - would remove volume {v}\n"));
    }
    lines
}

/// The images `--rmi` considers: the compose file's, or without one those the containers use.
fn service_images(project: Option<&Project>, containers: &[ContainerSummary]) -> Vec<ServiceImage> {
    match project {
        Some(p) => p
            .services
            .iter()
            .map(|(n, s)| ServiceImage {
                name: plan::service_image(p, n, s),
                named_in_file: s.image.is_some(),
            })
            .collect(),
        None => containers
            .iter()
            .map(|c| ServiceImage {
                name: c.image.clone(),
                named_in_file: true,
            })
            .collect(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::plan::LABEL_SERVICE;
    use crate::engine::wire::{EndpointSettings, MountPoint};

    fn container(service: &str, networks: &[&str], volumes: &[&str]) -> ContainerSummary {
        let mut c = ContainerSummary {
            id: format!("id-{service}"),
            names: vec![format!("/demo-{service}-1")],
            ..Default::default()
        };
        c.labels.insert(LABEL_SERVICE.into(), service.into());
        for n in networks {
            c.network_settings
                .networks
                .insert(n.to_string(), EndpointSettings::default());
        }
        c.mounts = volumes
            .iter()
            .map(|v| MountPoint {
                kind: "volume".into(),
                name: v.to_string(),
                ..Default::default()
            })
            .collect();
        c
    }

    #[test]
    fn named_services_take_only_what_nothing_else_uses() {
        let all = [
            container("web", &["demo_default", "demo_front"], &["demo_cache"]),
            container("db", &["demo_default"], &["demo_data"]),
        ];
        let plan = DownPlan::new(None, &all, &["web".to_string()], false);
        let removed: Vec<String> = plan.containers.iter().map(|c| display_name(c)).collect();
        assert_eq!(removed, ["demo-web-1"]);
        assert_eq!(plan.networks, Some(vec!["demo_front".to_string()]));
        assert_eq!(plan.volumes, Some(vec!["demo_cache".to_string()]));
        assert!(!DownPlan::takes(&plan.networks, "demo_default"));

        let everything = DownPlan::new(None, &all, &[], false);
        assert_eq!(everything.containers.len(), 2);
        assert!(DownPlan::takes(&everything.networks, "demo_default"));
        let report = dry_run_report(&everything, &[], &["demo_data".to_string()]);
        assert_eq!(
            report,
            "DRY-RUN MODE - would remove container demo-web-1\n\
             DRY-RUN MODE - would remove container demo-db-1\n\
             DRY-RUN MODE - would remove volume demo_data\n"
        );
    }
}
