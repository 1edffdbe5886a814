//! `berth push`: push the services' images to their registries, with docker-style progress.
//!
//! Every service whose `image` is present locally is pushed: the ones berth built (`build` and
//! `image`, as docker compose pushes), and also `image`-only ones that were imported, committed
//! or tagged, since those are other ways an image gets into berth; a service without `image`, or
//! whose image is not present locally, is skipped with a note.

use std::process::ExitCode;

use anyhow::Context;

use super::output::{progress_line, status_line};
use super::project::{engine, load_project, selected_start_order, ProjectArgs};
use crate::engine::api::client::EngineClient;

#[derive(Debug, Clone, clap::Args)]
pub struct PushArgs {
    /// Push without printing progress information
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Push what it can and ignore images with push failures
    #[arg(long)]
    pub ignore_push_failures: bool,
    /// Services to push (default: all)
    pub services: Vec<String>,
}

/// Why a service's image is not pushed, if it is not: the decision of `berth push`.
pub fn skip_reason(image: Option<&str>, present_locally: bool) -> Option<&'static str> {
    match (image, present_locally) {
        (None, _) => Some("Skipped - No image to be pushed"),
        (Some(_), false) => Some("Skipped - Image is not present locally"),
        (Some(_), true) => None,
    }
}

pub async fn run(project_args: &ProjectArgs, args: &PushArgs) -> anyhow::Result<ExitCode> {
    let project = load_project(project_args, &args.services)?;
    let order = selected_start_order(&project, &args.services)?;
    let client = engine(project_args).await?;
    for name in &order {
        let image = project.services[name].image.clone();
        let present = match &image {
            Some(i) => super::project::exists(client.inspect_image(i).await)?,
            None => false,
        };
        if let Some(why) = skip_reason(image.as_deref(), present) {
            if !args.quiet {
                status_line(name, "", why);
            }
            continue;
        }
        let image = image.unwrap_or_default();
        match push_image(&client, name, &image, args.quiet).await {
            Ok(()) => {}
            Err(e) if args.ignore_push_failures => eprintln!("warning: {name}: {e:#}"),
            Err(e) => {
                return Err(e.context(format!("service \"{name}\": cannot push image {image}")))
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn push_image(
    client: &EngineClient,
    service: &str,
    image: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let auth = super::login::credentials_for(image)?;
    if !quiet {
        progress_line(service, "", &format!("Pushing {image}"));
    }
    let stream = client
        .push(image, auth.as_ref())
        .await
        .context("the engine refused the push")?;
    let plain = [
        "Pushed",
        "Layer already exists",
        "Mounted from",
        ": digest: ",
    ];
    super::progress::follow_progress(stream, quiet, &plain).await?;
    if !quiet {
        status_line(service, "", "Pushed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_without_a_local_image_are_skipped_with_the_reason() {
        assert_eq!(
            skip_reason(None, false),
            Some("Skipped - No image to be pushed")
        );
        assert_eq!(
            skip_reason(Some("127.0.0.1:5000/app:1"), false),
            Some("Skipped - Image is not present locally")
        );
        assert_eq!(skip_reason(Some("127.0.0.1:5000/app:1"), true), None);
    }
}
