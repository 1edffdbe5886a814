//! `berth pull`: pull the services' images, with docker-style progress.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use futures_util::StreamExt;

use super::output::status_line;
use super::project::{engine, load_project, selected_start_order, ProjectArgs};
use crate::engine::api::client::EngineClient;

#[derive(Debug, Clone, clap::Args)]
pub struct PullArgs {
    /// Pull without printing progress information
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Pull what it can and ignore images with pull failures
    #[arg(long)]
    pub ignore_pull_failures: bool,
    /// Services to pull (default: all)
    pub services: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &PullArgs) -> anyhow::Result<ExitCode> {
    let project = load_project(project_args, &args.services)?;
    let order = selected_start_order(&project, &args.services)?;
    let client = engine(project_args).await?;
    for name in &order {
        let service = &project.services[name];
        let Some(image) = service.image.clone() else {
            continue; // build-only services have nothing to pull
        };
        match pull_image(&client, name, &image, args.quiet).await {
            Ok(()) => {}
            Err(e) if args.ignore_pull_failures => {
                eprintln!("warning: {name}: {e:#}");
            }
            Err(e) => {
                return Err(e.context(format!("service \"{name}\": cannot pull image {image}")))
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Pull one image through the engine; progress lines go to stderr when it is a terminal.
pub async fn pull_image(
    client: &EngineClient,
    service: &str,
    image: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let show = !quiet && std::io::stderr().is_terminal();
    let mut stream = client
        .pull(image)
        .await
        .context("the engine refused the pull")?;
    while let Some(message) = stream.next().await {
        let message = message?;
        if let Some(error) = message.error.or(message.error_detail.map(|d| d.message)) {
            anyhow::bail!(error);
        }
        if show {
            if let (Some(id), Some(status)) = (&message.id, &message.status) {
                eprint!(
                    "\r   {id} {status} {}\x1b[K",
                    message.progress.as_deref().unwrap_or("")
                );
            }
        }
    }
    if show {
        eprint!("\r\x1b[K");
    }
    if !quiet {
        status_line(service, "", "Pulled");
    }
    Ok(())
}
