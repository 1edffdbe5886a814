//! `berth pull`: pull the services' images, all at once, with docker-style progress.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;

use super::output::status_line;
use super::progress::{follow, ProgressView, PULL_STATES};
use super::project::{engine, load_project, selected_start_order, ProjectArgs};
use crate::compose::pull_policy::PullPolicy;
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
    let mut wanted = Vec::new();
    for name in &order {
        let service = &project.services[name];
        let skipped = |why: &str| {
            if !args.quiet {
                status_line(name, "", why);
            }
        };
        let Some(image) = service.image.clone() else {
            skipped("Skipped - No image to be pulled");
            continue;
        };
        // As docker compose: `never` and `build` images are not pulled, and an explicit
        // `missing` one only when absent; the refresh policies pull (that is their point).
        let policy = PullPolicy::of_service(service.pull_policy.as_deref())
            .map_err(|e| anyhow::anyhow!("service \"{name}\": {e}"))?;
        match (policy, service.pull_policy.is_some()) {
            (PullPolicy::Never | PullPolicy::Build, _) => {
                skipped("Skipped");
                continue;
            }
            (PullPolicy::Missing, true)
                if super::project::exists(client.inspect_image(&image).await)? =>
            {
                skipped("Skipped - Image is already present locally");
                continue;
            }
            _ => {}
        }
        wanted.push((name.clone(), image));
    }
    let results = pull_all(&client, &wanted, &ProgressView::new(args.quiet)).await;
    for ((name, image), result) in wanted.iter().zip(results) {
        match result {
            Ok(()) => {}
            Err(e) if args.ignore_pull_failures => eprintln!("warning: {name}: {e:#}"),
            Err(e) => {
                return Err(e.context(format!("service \"{name}\": cannot pull image {image}")))
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Pulls the `(service, image)` pairs at once, as docker compose does, each image once however
/// many services use it; the results are in the order of `wanted`.
pub async fn pull_all(
    client: &EngineClient,
    wanted: &[(String, String)],
    view: &ProgressView,
) -> Vec<anyhow::Result<()>> {
    let mut first_user: HashMap<&str, usize> = HashMap::new();
    let mut distinct = Vec::new();
    for (service, image) in wanted {
        if let std::collections::hash_map::Entry::Vacant(e) = first_user.entry(image) {
            e.insert(distinct.len());
            distinct.push(pull_one(client, service, image, view));
        }
    }
    let results = futures_util::future::join_all(distinct).await;
    wanted
        .iter()
        .map(|(_, image)| match &results[first_user[image.as_str()]] {
            Ok(()) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        })
        .collect()
}

/// One image: a header line for the service, a line per layer under it (see `progress.rs`).
async fn pull_one(
    client: &EngineClient,
    service: &str,
    image: &str,
    view: &ProgressView,
) -> anyhow::Result<()> {
    let auth = super::login::credentials_for(image)?;
    let line = view.task(service, "Pulling");
    let pulled = async {
        let stream = client
            .pull_with_auth(image, auth.as_ref())
            .await
            .context("the engine refused the pull")?;
        follow(stream, view, PULL_STATES).await
    }
    .await;
    match &pulled {
        Ok(()) => line.finish("Pulled"),
        Err(e) => line.fail(&format!("{e:#}")),
    }
    pulled
}
