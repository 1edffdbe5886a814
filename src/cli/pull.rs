//! `berth pull`: pull the services' images, all at once, with docker-style progress.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use futures_util::StreamExt;

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
    /// Also pull the images of the services the named ones depend on
    #[arg(long)]
    pub include_deps: bool,
    /// Apply pull policy ("missing"|"always"), over the services' own pull_policy
    #[arg(long, value_parser = ["missing", "always"])]
    pub policy: Option<String>,
    /// Services to pull (default: all)
    pub services: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &PullArgs) -> anyhow::Result<ExitCode> {
    let project = load_project(project_args, &args.services)?;
    let order = selected_start_order(&project, &args.services)?;
    let client = engine(project_args).await?;
    let mut wanted = Vec::new();
    for name in pull_targets(&order, &args.services, args.include_deps) {
        let service = &project.services[&name];
        let skipped = |why: &str| {
            if !args.quiet {
                status_line(&name, "", why);
            }
        };
        let Some(image) = service.image.clone() else {
            skipped("Skipped - No image to be pulled");
            continue;
        };
        let chosen = args.policy.as_deref().or(service.pull_policy.as_deref());
        let policy = PullPolicy::of_service(chosen)
            .map_err(|e| anyhow::anyhow!("service \"{name}\": {e}"))?;
        let present = match (policy, chosen.is_some()) {
            (PullPolicy::Missing, true) => {
                Some(super::project::exists(client.inspect_image(&image).await)?)
            }
            _ => None,
        };
        match skip_reason(policy, present) {
            Some(why) => skipped(why),
            None => wanted.push((name.clone(), image)),
        }
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

/// The services whose images `pull` considers, in start order: the named ones only (their
/// dependencies too with `--include-deps`), or all when none is named.
fn pull_targets(start_order: &[String], named: &[String], include_deps: bool) -> Vec<String> {
    start_order
        .iter()
        .filter(|s| named.is_empty() || include_deps || named.contains(s))
        .cloned()
        .collect()
}

/// Why a service's image is not pulled, as docker compose words it. `never` and `build` images
/// are not pulled, and an explicit `missing` one (`present` known) only when absent; the refresh
/// policies pull (that is their point).
fn skip_reason(policy: PullPolicy, present: Option<bool>) -> Option<&'static str> {
    match (policy, present) {
        (PullPolicy::Never | PullPolicy::Build, _) => Some("Skipped"),
        (PullPolicy::Missing, Some(true)) => Some("Skipped - Image is already present locally"),
        _ => None,
    }
}

/// Pulls the `(service, image)` pairs at once, as docker compose does, each image once however
/// many services use it and at most `--parallel`/`COMPOSE_PARALLEL_LIMIT` at a time; the
/// results are in the order of `wanted`.
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
    let limit = super::globals().parallel_limit().min(distinct.len().max(1));
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(distinct)
        .buffered(limit)
        .collect()
        .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_named_services_are_pulled_unless_deps_are_included() {
        let order = names(&["db", "cache", "web"]);
        assert_eq!(pull_targets(&order, &[], false), order);
        assert_eq!(pull_targets(&order, &names(&["web"]), false), ["web"]);
        assert_eq!(pull_targets(&order, &names(&["web"]), true), order);
    }

    #[test]
    fn policies_skip_with_docker_compose_reasons() {
        assert_eq!(skip_reason(PullPolicy::Never, None), Some("Skipped"));
        assert_eq!(
            skip_reason(PullPolicy::Missing, Some(true)),
            Some("Skipped - Image is already present locally")
        );
        assert_eq!(skip_reason(PullPolicy::Missing, Some(false)), None);
        assert_eq!(skip_reason(PullPolicy::Missing, None), None);
        assert_eq!(skip_reason(PullPolicy::Always, None), None);
    }
}
