//! `berth restart`: restart the project's containers (running or stopped), dependencies first;
//! services that declare `depends_on: {x: {restart: true}}` are restarted along with `x`.

use std::process::ExitCode;

use anyhow::Context;

use super::containers::{
    check_services, display_name, for_each_level, of_project, of_services, start_levels,
    with_restart_dependents,
};
use super::output::{progress_line, status_line};
use super::project::{engine, project_or_name, ProjectArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct RestartArgs {
    /// Seconds to wait for each container to stop before killing it (default: the service's
    /// stop_grace_period, else 10)
    #[arg(short = 't', long)]
    pub timeout: Option<i64>,
    /// Don't restart the services that depend on the named ones with `restart: true`
    #[arg(long)]
    pub no_deps: bool,
    /// Services to restart (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &RestartArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let containers = of_project(&client, &name, true).await?;
    check_services(project.as_ref(), &containers, &args.services)?;
    let wanted = if args.services.is_empty() || args.no_deps {
        args.services.clone()
    } else {
        with_restart_dependents(&containers, &args.services)
    };
    let targets = of_services(&containers, &wanted);
    let client = &client;
    for_each_level(start_levels(&targets), |c| async move {
        let name = display_name(c);
        progress_line("Container", &name, "Restarting");
        client
            .restart_container(&c.id, args.timeout)
            .await
            .with_context(|| format!("cannot restart container {name}"))?;
        status_line("Container", &name, "Started");
        Ok(())
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
