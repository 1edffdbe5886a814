//! `berth pull`: pull the services' images, with docker-style progress.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::output::status_line;
use super::project::{engine, load_project, selected_start_order, ProjectArgs};
use crate::compose::pull_policy::PullPolicy;
use crate::engine::api::client::{ClientError, EngineClient};

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
                if super::up::exists(client.inspect_image(&image).await)? =>
            {
                skipped("Skipped - Image is already present locally");
                continue;
            }
            _ => {}
        }
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

/// Pull one image through the engine. On a terminal each layer gets a progress bar (indicatif),
/// as docker compose shows them; otherwise only the final line is printed.
pub async fn pull_image(
    client: &EngineClient,
    service: &str,
    image: &str,
    quiet: bool,
) -> anyhow::Result<()> {
    let auth = super::login::credentials_for(image)?;
    let stream = client
        .pull_with_auth(image, auth.as_ref())
        .await
        .context("the engine refused the pull")?;
    follow_progress(stream, quiet, &[]).await?;
    if !quiet {
        status_line(service, "", "Pulled");
    }
    Ok(())
}

/// Follows an engine progress stream (pull or push) to its end: per-layer bars on a terminal;
/// otherwise a line for each layer reaching one of the `plain` states. The stream's error (or
/// an in-band `error`) is returned.
pub async fn follow_progress(
    mut stream: futures_util::stream::BoxStream<
        'static,
        Result<crate::engine::wire::ProgressMessage, ClientError>,
    >,
    quiet: bool,
    plain: &[&str],
) -> anyhow::Result<()> {
    let bars = (!quiet && std::io::stderr().is_terminal()).then(MultiProgress::new);
    let mut layers: HashMap<String, ProgressBar> = HashMap::new();
    let style =
        ProgressStyle::with_template("   {prefix} {msg:<16} {wide_bar} {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    while let Some(message) = stream.next().await {
        let message = message?;
        if let Some(error) = message.error.or(message.error_detail.map(|d| d.message)) {
            anyhow::bail!(error);
        }
        let Some(status) = &message.status else {
            continue;
        };
        let shown = !quiet && plain.iter().any(|p| status.contains(p));
        let Some(id) = &message.id else {
            // A line of its own (a push's final `tag: digest: … size: …`).
            if shown {
                eprintln!("   {status}");
            }
            continue;
        };
        let Some(bars) = &bars else {
            // Not a terminal: the layer states worth a line of their own, as plain progress.
            if shown {
                eprintln!("   {id} {status}");
            }
            continue;
        };
        // Lines without a layer ID ("Pulling from …", "Digest: …") carry no bar.
        if id.contains(':') || id.contains('/') {
            continue;
        }
        let bar = layers.entry(id.clone()).or_insert_with(|| {
            let bar = bars.add(ProgressBar::new(0));
            bar.set_style(style.clone());
            bar.set_prefix(id.clone());
            bar
        });
        bar.set_message(status.clone());
        if let Some(detail) = &message.progress_detail {
            if let Some(total) = detail.total {
                bar.set_length(total);
            }
            if let Some(current) = detail.current {
                bar.set_position(current);
            }
        }
    }
    for bar in layers.values() {
        bar.finish_and_clear();
    }
    Ok(())
}
