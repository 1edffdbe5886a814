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

#[derive(Debug, Clone, clap::Args)]
pub struct StartArgs {
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
        if is_running(c) {
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
    Ok(ExitCode::SUCCESS)
}
