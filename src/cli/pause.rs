//! `berth pause` / `berth unpause`: freeze or thaw the project's running containers.

use std::process::ExitCode;

use anyhow::Context;

use super::containers::{check_services, display_name, for_each_level, of_project, of_services};
use super::output::{progress_line, status_line};
use super::project::{engine, project_or_name, ProjectArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct PauseArgs {
    /// Services to pause or unpause (default: all)
    #[arg(value_name = "SERVICE")]
    pub services: Vec<String>,
}

/// Which way the containers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Pause,
    Unpause,
}

impl Direction {
    /// The state a container must be in to be acted on, and the words of the progress lines.
    fn words(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Direction::Pause => ("running", "Pausing", "Paused"),
            Direction::Unpause => ("paused", "Unpausing", "Unpaused"),
        }
    }
}

pub async fn run(
    project_args: &ProjectArgs,
    args: &PauseArgs,
    direction: Direction,
) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let containers = of_project(&client, &name, true).await?;
    check_services(project.as_ref(), &containers, &args.services)?;
    let (wanted_state, doing, done) = direction.words();
    let targets: Vec<_> = of_services(&containers, &args.services)
        .into_iter()
        .filter(|c| c.state == wanted_state)
        .collect();
    // All at once, as docker compose does.
    let client = &client;
    for_each_level(vec![targets], |c| async move {
        let name = display_name(c);
        progress_line("Container", &name, doing);
        match direction {
            Direction::Pause => client.pause_container(&c.id).await,
            Direction::Unpause => client.unpause_container(&c.id).await,
        }
        .with_context(|| format!("cannot {} container {name}", doing.to_lowercase()))?;
        status_line("Container", &name, done);
        Ok(())
    })
    .await?;
    Ok(ExitCode::SUCCESS)
}
