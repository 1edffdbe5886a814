//! `berth wait SERVICE...`: block until the services' containers have stopped, and exit with the
//! status of the first one to stop, as `docker compose wait` does. `--down-project` then takes
//! the project down.

use std::process::ExitCode;

use anyhow::bail;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::containers::{check_services, display_name, of_project, of_services};
use super::project::{engine, project_or_name, ProjectArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Take the project down once the first container has stopped
    #[arg(long)]
    pub down_project: bool,
    /// The services to wait for
    #[arg(value_name = "SERVICE", required = true)]
    pub services: Vec<String>,
}

pub async fn run(project_args: &ProjectArgs, args: &WaitArgs) -> anyhow::Result<ExitCode> {
    let (project, name) = project_or_name(project_args)?;
    let client = engine(project_args).await?;
    let containers = of_project(&client, &name, true).await?;
    check_services(project.as_ref(), &containers, &args.services)?;
    let targets = of_services(&containers, &args.services);
    if targets.is_empty() {
        bail!(
            "no containers for {}; create them with `berth up`",
            args.services.join(", ")
        );
    }
    let mut waits: FuturesUnordered<_> = targets
        .iter()
        .map(|c| {
            let client = client.clone();
            let (id, shown) = (c.id.clone(), display_name(c));
            async move { (shown, client.wait_container(&id).await) }
        })
        .collect();
    let (shown, first) = waits.next().await.expect("at least one container");
    let code = first.map_err(|e| anyhow::anyhow!("cannot wait for {shown}: {e}"))?;
    drop(waits);
    if args.down_project {
        let down = super::down::DownArgs {
            volumes: false,
            timeout: None,
            remove_orphans: false,
            rmi: None,
            services: Vec::new(),
        };
        super::down::run(project_args, &down).await?;
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
