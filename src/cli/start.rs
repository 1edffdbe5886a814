//! `berth start`: start the project's existing containers again, dependencies first. Creates
//! nothing: a service without a container is an error, as in docker compose (`berth up` makes
//! them).

use std::process::ExitCode;

use anyhow::{bail, Context};

use super::containers::{
    check_services, display_name, for_each_level, is_running, of_project, of_services, service_of,
    start_levels, with_dependencies,
};
use super::output::{progress_line, status_line};
use super::project::{engine, project_or_name, ProjectArgs};
use crate::engine::api::client::EngineClient;
use crate::engine::wire::ContainerSummary;

#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
    /// Wait for the services to be running (and healthy, when they have a healthcheck)
    #[arg(long)]
    pub wait: bool,
    /// Maximum duration in seconds to wait for the project to be running|healthy
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    pub wait_timeout: Option<u64>,
    /// Services to start (default: all), with the services they depend on
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &StartArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let containers = of_project(&client, &name, true).await?;
    check_services(project.as_ref(), &containers, &args.services)?;

    let wanted = if args.services.is_empty() {
        match &project {
            Some(p) => p.services.keys().cloned().collect(),
            None => Vec::new(),
        }
    } else {
        with_dependencies(&containers, &args.services)
    };
    if containers.is_empty() && project.is_none() {
        bail!("no containers to start for project \"{name}\"; create them with `berth up`");
    }
    // Checked before anything starts, so a missing container leaves the project as it was.
    for service in &wanted {
        if !containers.iter().any(|c| service_of(c) == service) {
            bail!(
                "service \"{service}\" has no container to start; create it with `berth up {service}`"
            );
        }
    }

    // Without a compose file `wanted` is empty: every container of the project.
    let targets = of_services(&containers, &wanted);
    let client = &client;
    for_each_level(start_levels(&targets), |c| async move {
        let name = display_name(c);
        // A paused one is asked to start all the same, as docker compose does: the engine's
        // refusal ("try unpause instead") is what the user needs to read.
        if is_running(c) && c.state != "paused" {
            status_line("Container", &name, "Running");
            return Ok(());
        }
        progress_line("Container", &name, "Starting");
        client
            .start_container(&c.id)
            .await
            .with_context(|| format!("cannot start container {name}"))?;
        status_line("Container", &name, "Started");
        Ok(())
    })
    .await?;
    if args.wait {
        wait_all_ready(client, &targets, args.wait_timeout).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How often `--wait` reads a container's state.
const READY_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// `--wait`: every container running, and healthy when it has a healthcheck, within
/// `--wait-timeout` seconds (no limit without one, as docker compose).
async fn wait_all_ready(
    client: &EngineClient,
    containers: &[&ContainerSummary],
    timeout_seconds: Option<u64>,
) -> anyhow::Result<()> {
    let all = futures_util::future::try_join_all(containers.iter().map(|c| async move {
        let name = display_name(c);
        status_line("Container", &name, "Waiting");
        loop {
            let state = client.inspect_container(&c.id).await?.state;
            let health = state.health.as_ref().map(|h| h.status.as_str());
            match readiness(&state.status, health) {
                Readiness::Ready => break,
                Readiness::Failed(why) => bail!("container {name} {why}"),
                Readiness::NotYet => tokio::time::sleep(READY_POLL).await,
            }
        }
        status_line("Container", &name, "Healthy");
        anyhow::Ok(())
    }));
    match timeout_seconds.filter(|s| *s > 0) {
        None => all.await.map(|_| ()),
        Some(seconds) => tokio::time::timeout(std::time::Duration::from_secs(seconds), all)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "timeout waiting for the services to be running|healthy after {seconds}s"
                )
            })?
            .map(|_| ()),
    }
}

#[derive(Debug, PartialEq)]
enum Readiness {
    Ready,
    NotYet,
    Failed(String),
}

/// Whether a container with this state and health (`None`: no healthcheck) is what `--wait`
/// waits for.
fn readiness(status: &str, health: Option<&str>) -> Readiness {
    match (status, health) {
        ("exited" | "dead", _) => Readiness::Failed(format!("is {status}")),
        (_, Some("unhealthy")) => Readiness::Failed("is unhealthy".to_string()),
        ("running", None | Some("healthy")) => Readiness::Ready,
        _ => Readiness::NotYet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_wants_running_and_healthy_when_checked() {
        assert_eq!(readiness("running", None), Readiness::Ready);
        assert_eq!(readiness("running", Some("healthy")), Readiness::Ready);
        assert_eq!(readiness("running", Some("starting")), Readiness::NotYet);
        assert_eq!(readiness("created", None), Readiness::NotYet);
        assert_eq!(
            readiness("running", Some("unhealthy")),
            Readiness::Failed("is unhealthy".into())
        );
        assert_eq!(
            readiness("exited", None),
            Readiness::Failed("is exited".into())
        );
    }
}
