//! `berth watch [SERVICES]`: `up -d` for the services that have `develop.watch` rules (unless
//! `--no-up`), then the watch session (`watch_session`) until Ctrl-C.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::project::{engine, load_project, ProjectArgs};
use super::watch_actions::{Recreate, WatchOptions, DEFAULT_DEBOUNCE_MS};
use super::watch_session::{rules_for, start};

#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Do not build & start services before watching
    #[arg(long)]
    pub no_up: bool,
    /// Prune dangling images on rebuild
    #[arg(long)]
    pub prune: bool,
    /// Hide build output
    #[arg(long)]
    pub quiet: bool,
    /// Quiet period before a batch of changes is acted on, in milliseconds
    #[arg(long, env = "BERTH_WATCH_DEBOUNCE_MS", default_value_t = DEFAULT_DEBOUNCE_MS)]
    pub debounce: u64,
    /// Services to watch (default: all that have develop.watch rules)
    pub services: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &WatchArgs) -> anyhow::Result<ExitCode> {
    let project = load_project(project_args, &args.services)?;
    let rules = rules_for(project_args, &project, &args.services)?;
    if !args.no_up {
        let services: Vec<String> = rules.iter().map(|w| w.service.clone()).collect();
        super::up::start_detached(project_args, services).await?;
    }
    let client = engine(project_args).await?;
    let options = WatchOptions {
        prune: args.prune,
        quiet: args.quiet,
        debounce: Duration::from_millis(args.debounce),
    };
    let watching = start(
        project_args.clone(),
        project,
        client,
        rules,
        options,
        recreate(),
    )?;
    tokio::signal::ctrl_c().await?;
    // A rebuild or sync being carried out finishes; nothing new starts.
    watching.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// How a rebuilt service is recreated: `up -d --no-deps --no-build SERVICE` (see `up`).
pub fn recreate() -> Recreate {
    Arc::new(|project_args, service| {
        Box::pin(async move { super::up::recreate_service(&project_args, &service).await })
    })
}
