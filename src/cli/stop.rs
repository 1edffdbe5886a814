//! `berth stop`: stop the project's running containers without removing them, dependents first.

use std::process::ExitCode;

use super::containers::{check_services, of_project, of_services, stop_in_order};
use super::project::{engine, project_or_name, ProjectArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait for each container to stop before killing it (default: the service's
    /// stop_grace_period, else 10)
    #[arg(short = 't', long)]
    pub timeout: Option<i64>,
    /// Services to stop (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &StopArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let containers = of_project(&client, &name, true).await?;
    check_services(project.as_ref(), &containers, &args.services)?;
    let targets = of_services(&containers, &args.services);
    stop_in_order(&client, &targets, args.timeout).await?;
    Ok(ExitCode::SUCCESS)
}
