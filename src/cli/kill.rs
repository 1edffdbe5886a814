//! `berth kill`: send a signal (default SIGKILL) to the project's running containers.

use std::process::ExitCode;

use anyhow::Context;

use super::containers::{
    check_services, display_name, for_each_level, is_running, of_project, of_services,
};
use super::output::{progress_line, status_line};
use super::project::{engine, project_or_name, ProjectArgs};
use crate::engine::container::parse_signal;

#[derive(Debug, Clone, clap::Args)]
pub struct KillArgs {
    /// Signal to send: a name (SIGTERM, TERM, usr1) or a number
    #[arg(short = 's', long, default_value = "SIGKILL")]
    pub signal: String,
    /// Services to signal (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &KillArgs) -> anyhow::Result<ExitCode> {
    // Checked here, so a bad signal fails before any container was signalled.
    parse_signal(&args.signal).with_context(|| {
        format!(
            "bad --signal {:?}: give a signal name like SIGTERM or a number from 1 to 64",
            args.signal
        )
    })?;
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let containers = of_project(&client, &name, true).await?;
    check_services(project.as_ref(), &containers, &args.services)?;
    let targets: Vec<_> = of_services(&containers, &args.services)
        .into_iter()
        .filter(|c| is_running(c))
        .collect();
    if targets.is_empty() {
        eprintln!("no container to kill");
        return Ok(ExitCode::SUCCESS);
    }
    // One level: docker compose signals all the containers at once, in no particular order.
    let client = &client;
    let signal = args.signal.as_str();
    for_each_level(vec![targets], |c| async move {
        let name = display_name(c);
        progress_line("Container", &name, "Killing");
        client
            .kill_container(&c.id, Some(signal))
            .await
            .with_context(|| format!("cannot kill container {name}"))?;
        status_line("Container", &name, "Killed");
        Ok(())
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
